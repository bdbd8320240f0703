"""The Python half of device/check-arm64.sh: pick clips, classify them, compare two runs.

``classify`` is the part that runs under qemu-aarch64: it must stay ONE process (a
subprocess of an emulated Python would run natively and fail) and import nothing but
the stdlib, numpy and edge_ser, exactly like a Raspberry Pi would. ``make-clips`` and
``compare`` run natively.

    python device/arm64_check.py make-clips --count 24 --dir CLIPS
    python device/arm64_check.py classify --model M --clips CLIPS --json OUT.json
    python device/arm64_check.py compare X86.json ARM.json --tolerance 1e-5 --report R.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RAVDESS = Path(os.environ.get("EDGE_SER_SHARED", REPO.parent / "shared")) / "datasets" / "ravdess"


def make_clips(count: int, directory: Path) -> List[Path]:
    """Corpus clips spread over actors and emotions, plus synthesized edge cases.

    The synthesized ones cover the code paths a corpus clip does not: a clip longer than
    one window (several overlapping windows), one shorter than a window (padding), and
    silence (the all-constant feature matrix).
    """
    import numpy as np

    from edge_ser.wav import write_wav

    sys.path.insert(0, str(HERE))
    from speechlike import speechlike

    directory.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    synthesized = {
        "synth-long-10s.wav": speechlike(10.0, seed=11),
        "synth-short-1s.wav": speechlike(1.0, seed=12),
        "synth-silence-2s.wav": np.zeros(32000, dtype=np.float32),
    }
    corpus = sorted(RAVDESS.glob("Actor_*/*.wav")) if RAVDESS.is_dir() else []
    n_corpus = max(0, count - len(synthesized)) if corpus else 0
    if corpus and n_corpus:
        # Round-robin over the 8 emotions (field 3 of the file name), walking through the
        # actors, so even a handful of clips covers several classes and speakers.
        by_emotion: Dict[str, List[Path]] = {}
        for path in corpus:
            by_emotion.setdefault(path.name.split("-")[2], []).append(path)
        codes = sorted(by_emotion)
        for i in range(n_corpus):
            pool = by_emotion[codes[i % len(codes)]]
            path = pool[(i * 37) % len(pool)]
            target = directory / f"{path.parent.name}-{path.name}"
            shutil.copyfile(path, target)
            written.append(target)
    else:
        for i in range(max(0, count - len(synthesized))):
            target = directory / f"synth-{i:02d}.wav"
            write_wav(target, speechlike(3.0 + (i % 3), seed=100 + i), 16000)
            written.append(target)
    for name, samples in synthesized.items():
        write_wav(directory / name, samples, 16000)
        written.append(directory / name)
    print(f"{len(written)} clips ({n_corpus} from the corpus) in {directory}")
    return written


def classify(model: Path, clips: Path, out: Path, reference_features: Optional[Path] = None) -> Dict[str, Any]:
    """Classify every WAV in ``clips`` with one Classifier; write labels and probabilities.

    Also saves each clip's features (``out`` with ``.npz``) and, given the other
    machine's features, runs the model on *those* too: when the two machines disagree,
    that tells whether the features (float rounding of FFT/BLAS kernels) or the
    interpreter (int8 kernels) differ.
    """
    import numpy as np

    from edge_ser.audio import load_audio
    from edge_ser.classify import Classifier
    from edge_ser.features import log_mel
    from edge_ser.windows import split_windows

    started = time.time()
    classifier = Classifier(model)
    meta = classifier.metadata
    reference = dict(np.load(reference_features)) if reference_features else {}
    features: Dict[str, Any] = {}
    results = []
    for path in sorted(clips.glob("*.wav")):
        prediction = classifier.classify_file(path)
        samples, _ = load_audio(path, classifier.sample_rate)
        feats = log_mel(samples, meta.feature_config)
        features[path.name] = feats
        entry: Dict[str, Any] = {
            "clip": path.name,
            "label": prediction.label,
            "probabilities": [prediction.probabilities[label] for label in classifier.labels],
            "windows": len(prediction.windows),
        }
        if path.name in reference:
            ref = reference[path.name]
            entry["features_max_abs_diff"] = float(np.abs(ref - feats).max()) if ref.shape == feats.shape else None
            quantize = getattr(classifier.model, "_quantize", None)
            if quantize is not None and ref.shape == feats.shape:
                mine, _ = split_windows(feats, meta.window_frames, meta.hop_frames)
                theirs, _ = split_windows(ref, meta.window_frames, meta.hop_frames)
                entry["int8_inputs_differing"] = int(sum(
                    int(np.count_nonzero(quantize(a) != quantize(b))) for a, b in zip(mine, theirs)))
            same_input = classifier.classify_features(ref, prediction.duration)
            entry["probabilities_on_reference_features"] = [
                same_input.probabilities[label] for label in classifier.labels]
        results.append(entry)
    np.savez(out.with_suffix(".npz"), **features)
    # Int8 windows of the first clips from the reference features (or our own): identical
    # input on both machines for the kernel comparison.
    quantize = getattr(classifier.model, "_quantize", None)
    kernels = {}
    if quantize is not None and os.environ.get("EDGE_SER_BACKEND", "") in ("tflite-runtime", "tflite_runtime"):
        source = reference if reference else features
        windows_by_clip = {}
        for name in sorted(source)[:KERNEL_CLIPS]:
            windows, _ = split_windows(source[name], meta.window_frames, meta.hop_frames)
            windows_by_clip[name] = [quantize(w) for w in windows]
        kernels = kernel_outputs(model, windows_by_clip)
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend": classifier.backend_name,
        "model": str(model),
        "model_id": classifier.model_id,
        "labels": list(classifier.labels),
        "seconds": round(time.time() - started, 2),
        "results": results,
        "kernels": kernels,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{platform.machine()}: {len(results)} clips with {classifier.backend_name} in {report['seconds']} s")
    return report


KERNEL_CLIPS = 6


def kernel_outputs(model: Path, windows_by_clip: Dict[str, Any]) -> Dict[str, Dict[str, List[List[int]]]]:
    """Raw int8 outputs of each tflite_runtime op resolver on the same int8 windows.

    AUTO is what edge_ser uses (XNNPACK delegate on top of the optimized kernels);
    BUILTIN_WITHOUT_DEFAULT_DELEGATES the optimized kernels alone; BUILTIN_REF the
    portable reference kernels. Which of them agree across machines shows where an
    x86_64/aarch64 difference is made.
    """
    try:
        from tflite_runtime.interpreter import Interpreter, OpResolverType
    except ImportError:
        return {}
    content = model.read_bytes()
    out: Dict[str, Dict[str, List[List[int]]]] = {}
    for kind in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "BUILTIN_REF"):
        interpreter = Interpreter(model_content=content, experimental_op_resolver_type=getattr(OpResolverType, kind))
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]["index"]
        outp = interpreter.get_output_details()[0]["index"]
        per_clip: Dict[str, List[List[int]]] = {}
        for clip, windows in windows_by_clip.items():
            rows = []
            for window in windows:
                interpreter.set_tensor(inp, window)
                interpreter.invoke()
                rows.append([int(v) for v in interpreter.get_tensor(outp).reshape(-1)])
            per_clip[clip] = rows
        out[kind] = per_clip
    return out


def compare(reference: Path, other: Path, tolerance: float, report_path: Path, cpu: str = "cortex-a72") -> bool:
    """Same top-1 label and probabilities within ``tolerance`` for every clip, as a report."""
    a = json.loads(reference.read_text())
    b = json.loads(other.read_text())
    lines = [
        "edge-ser arm64 check (device/check-arm64.sh): the same clips classified natively and",
        f"under qemu-aarch64-static (-cpu {cpu}) in a Debian bookworm arm64 root.",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"model: {Path(a['model']).name} (id {a.get('model_id')})",
    ]
    for run in (a, b):
        lines.append(
            f"  {run['machine']:8s} Python {run['python']}, numpy {run['numpy']}, {run['backend']}, "
            f"{len(run['results'])} clips ({run['seconds']} s, emulated timings mean nothing)"
        )
    ok = a["labels"] == b["labels"] and len(a["results"]) == len(b["results"])
    if a["labels"] != b["labels"]:
        lines.append("FAIL: the label lists differ")
    lines.append("")
    lines.append(f"{'clip':44s} {'x86_64':10s} {'aarch64':10s} {'max |dp|':>10s}")
    worst = 0.0
    mismatches = 0
    other_by_clip = {r["clip"]: r for r in b["results"]}
    for ra in a["results"]:
        rb = other_by_clip.get(ra["clip"])
        if rb is None:
            lines.append(f"{ra['clip']:44s} missing on {b['machine']}")
            ok = False
            continue
        diff = max(abs(x - y) for x, y in zip(ra["probabilities"], rb["probabilities"]))
        worst = max(worst, diff)
        same = ra["label"] == rb["label"]
        if not same or diff > tolerance:
            mismatches += 1
            ok = False
        flag = "" if same and diff <= tolerance else "  <-- MISMATCH"
        lines.append(f"{ra['clip']:44s} {ra['label']:10s} {rb['label']:10s} {diff:10.2e}{flag}")
        if not same:
            # A flipped top-1 is only interesting with its margin: show both labels on both sides.
            ia, ib = a["labels"].index(ra["label"]), a["labels"].index(rb["label"])
            lines.append(
                f"    {ra['label']} {ra['probabilities'][ia]:.4f} vs {rb['label']} {ra['probabilities'][ib]:.4f} on x86_64; "
                f"{ra['label']} {rb['probabilities'][ia]:.4f} vs {rb['label']} {rb['probabilities'][ib]:.4f} on aarch64")
    lines.append("")
    lines.append(
        f"{'PASS' if ok else 'FAIL'}: {len(a['results']) - mismatches}/{len(a['results'])} clips with the same "
        f"top-1 label and probabilities within {tolerance:g}; largest difference {worst:.3g}"
    )
    same_top1 = sum(1 for ra in a["results"] if other_by_clip.get(ra["clip"], {}).get("label") == ra["label"])
    lines.append(f"same top-1 label: {same_top1}/{len(a['results'])} clips")
    # Where a difference comes from: the other run also classified *these* features.
    diagnosed = [rb for rb in b["results"] if "probabilities_on_reference_features" in rb]
    if diagnosed:
        by_clip = {r["clip"]: r for r in a["results"]}
        feature_diff = max((rb.get("features_max_abs_diff") or 0.0) for rb in diagnosed)
        int8_diff = sum(rb.get("int8_inputs_differing", 0) for rb in diagnosed)
        model_diff = max(
            max(abs(x - y) for x, y in zip(by_clip[rb["clip"]]["probabilities"], rb["probabilities_on_reference_features"]))
            for rb in diagnosed if rb["clip"] in by_clip)
        lines += [
            "",
            "Where differences come from (the aarch64 run also classified the x86_64 features):",
            f"  features (float32 log-mel), largest |difference|: {feature_diff:.3g}",
            f"  int8 model inputs that quantize differently: {int8_diff} values over all windows",
            f"  model on identical features: largest probability difference {model_diff:.3g}"
            + ("  (interpreter bit-identical)" if model_diff == 0.0 else ""),
        ]
    if a.get("kernels") and b.get("kernels"):
        lines += ["", f"Interpreter kernels on identical int8 windows (first {KERNEL_CLIPS} clips, x86_64 features), "
                      "raw int8 outputs:"]
        for kind in a["kernels"]:
            ka, kb = a["kernels"][kind], b["kernels"].get(kind, {})
            values = differing = 0
            largest = 0
            for clip, rows in ka.items():
                for row_a, row_b in zip(rows, kb.get(clip, [])):
                    for x, y in zip(row_a, row_b):
                        values += 1
                        differing += x != y
                        largest = max(largest, abs(x - y))
            lines.append(f"  {kind:34s} {differing}/{values} outputs differ, largest by {largest} int8 step(s)"
                         + ("  (bit-identical)" if values and not differing else ""))
        lines.append("  Optimized (AUTO) vs reference kernels on the same machine:")
        arm_matches_reference = False
        for run in (a, b):
            auto, ref = run["kernels"].get("AUTO", {}), run["kernels"].get("BUILTIN_REF", {})
            pairs = [(x, y) for clip in auto for ra, rr in zip(auto[clip], ref.get(clip, [])) for x, y in zip(ra, rr)]
            differing = sum(x != y for x, y in pairs)
            largest = max((abs(x - y) for x, y in pairs), default=0)
            lines.append(f"    {run['machine']:8s} {differing}/{len(pairs)} outputs differ, largest by {largest} int8 step(s)")
            if run is b:
                arm_matches_reference = bool(pairs) and differing == 0
        ref_a, ref_b = a["kernels"].get("BUILTIN_REF", {}), b["kernels"].get("BUILTIN_REF", {})
        if ref_a and ref_a == ref_b and arm_matches_reference and not ok:
            lines += ["", "Conclusion: the portable reference kernels give bit-identical outputs on both machines, and",
                      f"the optimized kernels on the emulated {cpu} equal them; the differences above are made by",
                      "x86_64's optimized int8 kernels (a few int8 steps of 1/256). Figures measured on x86_64",
                      "(accuracy) can differ from a Pi's by such steps, and a near-tie can flip its top-1 label."]
    text = "\n".join(lines) + "\n"
    report_path.write_text(text)
    print(text, end="")
    return ok


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-clips")
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--dir", type=Path, required=True)
    p = sub.add_parser("classify")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--clips", type=Path, required=True)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--reference-features", type=Path, help="the other machine's features (.npz)")
    p = sub.add_parser("compare")
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--cpu", default="cortex-a72", help="the qemu CPU model the aarch64 run used")
    args = parser.parse_args(argv)
    if args.command == "make-clips":
        make_clips(args.count, args.dir)
        return 0
    if args.command == "classify":
        classify(args.model, args.clips, args.json, args.reference_features)
        return 0
    return 0 if compare(args.reference, args.other, args.tolerance, args.report, args.cpu) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
