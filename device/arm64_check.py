"""The Python half of device/check-arm64.sh: pick clips, classify them, compare two runs.

``classify`` is the part that runs under qemu-aarch64: it must stay ONE process (a
subprocess of an emulated Python would run natively and fail) and import nothing but
the stdlib, numpy and edge_ser, exactly like a Raspberry Pi would. ``make-clips`` and
``compare`` run natively.

    python device/arm64_check.py make-clips --count 24 --dir CLIPS
    python device/arm64_check.py classify --model M --clips CLIPS --json OUT.json [--kernels reference]
    python device/arm64_check.py compare X86_REF.json ARM.json --informative X86.json \
        --tolerance 1e-5 --report R.txt

What is compared, and why: a Pi runs the interpreter's default (optimized) kernels, and
on aarch64 those give the same int8 outputs as TFLite's portable reference kernels
(``OpResolverType.BUILTIN_REF``), which are bit-identical on every machine. x86_64's
optimized int8 kernels round differently (a few steps of 1/256). So the pass/fail
criterion is aarch64 with its default kernels (what a Pi computes) against x86_64 with
the reference kernels, end to end; the comparison with x86_64's default kernels is
reported as information, with the kernel analysis that explains it.
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

    from edge_ser.speechlike import speechlike

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


def reference_kernel_model(model: Any) -> Any:
    """The same :class:`edge_ser.model.Model` on TFLite's portable reference kernels.

    Why not ``xnnpack=False``: that selects ``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, the
    *optimized* builtin kernels, whose int8 rounding differs between x86_64 and aarch64.
    ``BUILTIN_REF`` is the portable C++ implementation, bit-identical on both. Only the
    interpreter is swapped: decoding, features, windows, quantization and averaging stay
    edge_ser's own code.
    """
    from edge_ser.model import Model

    backend = model.backend
    if backend.builtin_kernels is None:
        raise SystemExit(f"{backend.label}: no OpResolverType, cannot select the reference kernels")
    resolver = type(backend.builtin_kernels)  # the package's OpResolverType enum
    interpreter = backend.interpreter_class(
        model_content=Path(model.path).read_bytes(), experimental_op_resolver_type=resolver.BUILTIN_REF)
    interpreter.allocate_tensors()
    return Model(path=model.path, metadata=model.metadata, backend=backend, interpreter=interpreter,
                 sha256=model.sha256, size_bytes=model.size_bytes, num_threads=model.num_threads, xnnpack=False)


def classify(model: Path, clips: Path, out: Path, reference_features: Optional[Path] = None,
             kernels: str = "default") -> Dict[str, Any]:
    """Classify every WAV in ``clips`` with one Classifier; write labels and probabilities.

    ``kernels="reference"`` runs the Classifier on the reference kernels
    (:func:`reference_kernel_model`); ``"default"`` is what a device runs.

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
    if kernels == "reference":
        classifier.model = reference_kernel_model(classifier.model)
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
                if entry["int8_inputs_differing"]:
                    entry["boundary_inputs"] = boundary_inputs(mine, theirs, quantize, classifier.model.input)
            same_input = classifier.classify_features(ref, prediction.duration)
            entry["probabilities_on_reference_features"] = [
                same_input.probabilities[label] for label in classifier.labels]
        results.append(entry)
    np.savez(out.with_suffix(".npz"), **features)
    # Int8 windows of the first clips from the reference features (or our own): identical
    # input on both machines for the kernel comparison.
    quantize = getattr(classifier.model, "_quantize", None)
    kernel_outputs_by_resolver = {}
    if (kernels == "default" and quantize is not None
            and os.environ.get("EDGE_SER_BACKEND", "") in ("tflite-runtime", "tflite_runtime")):
        source = reference if reference else features
        windows_by_clip = {}
        for name in sorted(source)[:KERNEL_CLIPS]:
            windows, _ = split_windows(source[name], meta.window_frames, meta.hop_frames)
            windows_by_clip[name] = [quantize(w) for w in windows]
        kernel_outputs_by_resolver = kernel_outputs(model, windows_by_clip)
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend": classifier.backend_name,
        "kernels": "reference (BUILTIN_REF)" if kernels == "reference" else "default",
        "model": str(model),
        "model_id": classifier.model_id,
        "labels": list(classifier.labels),
        "seconds": round(time.time() - started, 2),
        "results": results,
        "kernel_outputs": kernel_outputs_by_resolver,
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{platform.machine()}: {len(results)} clips with {classifier.backend_name} ({report['kernels']} kernels) "
          f"in {report['seconds']} s")
    return report


KERNEL_CLIPS = 6


def boundary_inputs(mine: Any, theirs: Any, quantize: Any, tensor: Any) -> List[Dict[str, Any]]:
    """Each int8 input the two machines quantize differently, with where it sits.

    ``distance`` is how far the (x86_64) feature value, in quantization steps, is from
    the rounding boundary k + 0.5: a feature difference of ~1e-6 can only move an input
    across a boundary it already sits on.
    """
    import numpy as np

    found: List[Dict[str, Any]] = []
    for index, (a, b) in enumerate(zip(mine, theirs)):
        qa, qb = quantize(a).reshape(a.shape), quantize(b).reshape(b.shape)
        for frame, feature in zip(*np.nonzero(qa != qb)):
            steps = float(b[frame, feature]) / tensor.scale
            found.append({
                "window": index, "frame": int(frame), "feature": int(feature),
                "feature_diff": float(a[frame, feature]) - float(b[frame, feature]),
                "feature_diff_steps": (float(a[frame, feature]) - float(b[frame, feature])) / tensor.scale,
                "distance": abs(abs(steps - np.floor(steps)) - 0.5),
                "int8": [int(qb[frame, feature]), int(qa[frame, feature])],
            })
    return found


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


def _max_diff(p: List[float], q: List[float]) -> float:
    return max(abs(x - y) for x, y in zip(p, q))


def _flip_note(labels: List[str], ra: Dict[str, Any], rb: Dict[str, Any], name_a: str, name_b: str) -> str:
    """A flipped top-1 is only interesting with its margin: both labels on both sides."""
    ia, ib = labels.index(ra["label"]), labels.index(rb["label"])
    return (f"    {ra['label']} {ra['probabilities'][ia]:.4f} vs {rb['label']} {ra['probabilities'][ib]:.4f} on {name_a}; "
            f"{ra['label']} {rb['probabilities'][ia]:.4f} vs {rb['label']} {rb['probabilities'][ib]:.4f} on {name_b}")


def _kernel_lines(a: Dict[str, Any], b: Dict[str, Any]) -> List[str]:
    """Raw int8 outputs per op resolver on identical int8 windows, across and within machines."""
    ka_all, kb_all = a.get("kernel_outputs") or {}, b.get("kernel_outputs") or {}
    if not ka_all or not kb_all:
        return []
    lines = ["", f"Interpreter kernels on identical int8 windows (first {KERNEL_CLIPS} clips, x86_64 features), "
                 "raw int8 outputs, x86_64 vs aarch64:"]
    for kind in ka_all:
        ka, kb = ka_all[kind], kb_all.get(kind, {})
        pairs = [(x, y) for clip, rows in ka.items() for ra, rb in zip(rows, kb.get(clip, [])) for x, y in zip(ra, rb)]
        differing = sum(x != y for x, y in pairs)
        largest = max((abs(x - y) for x, y in pairs), default=0)
        lines.append(f"  {kind:34s} {differing}/{len(pairs)} outputs differ, largest by {largest} int8 step(s)"
                     + ("  (bit-identical)" if pairs and not differing else ""))
    lines.append("  Optimized (AUTO) vs reference kernels on the same machine:")
    for run in (a, b):
        auto, ref = run["kernel_outputs"].get("AUTO", {}), run["kernel_outputs"].get("BUILTIN_REF", {})
        pairs = [(x, y) for clip in auto for ra, rr in zip(auto[clip], ref.get(clip, [])) for x, y in zip(ra, rr)]
        differing = sum(x != y for x, y in pairs)
        largest = max((abs(x - y) for x, y in pairs), default=0)
        lines.append(f"    {run['machine']:8s} {differing}/{len(pairs)} outputs differ, largest by {largest} int8 step(s)"
                     + ("  (bit-identical)" if pairs and not differing else ""))
    return lines


def compare(reference: Path, other: Path, tolerance: float, report_path: Path, cpu: str = "cortex-a72",
            informative: Optional[Path] = None) -> bool:
    """The check's verdict, written as a report; True when every clip meets the criterion.

    ``reference`` is the x86_64 run on the reference kernels, ``other`` the aarch64 run on
    its default kernels: every clip must have the same top-1 label and probabilities
    within ``tolerance``. ``informative`` (x86_64 on its default kernels) is compared
    too, as information only. A clip that misses the criterion is analysed: if the
    aarch64 run, given the x86_64 features, reproduces the x86_64 result within the
    tolerance, the whole difference came from int8 inputs on a rounding boundary, and
    the report says so clip by clip instead of widening the tolerance.
    """
    a = json.loads(reference.read_text())
    b = json.loads(other.read_text())
    c = json.loads(informative.read_text()) if informative else None
    labels = a["labels"]
    lines = [
        "edge-ser arm64 check (device/check-arm64.sh): the same clips classified end to end",
        "(decode -> features -> windows -> int8 model) natively on x86_64 and under",
        f"qemu-aarch64-static (-cpu {cpu}) in a Debian bookworm arm64 root.",
        f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"model: {Path(a['model']).name} (id {a.get('model_id')})",
    ]
    for run in (a, c, b):
        if run is None:
            continue
        lines.append(
            f"  {run['machine']:8s} {run.get('kernels', 'default') + ' kernels':33s} Python {run['python']}, "
            f"numpy {run['numpy']}, {run['backend']}, {len(run['results'])} clips ({run['seconds']} s)"
        )
    lines += [
        "  (emulated timings mean nothing; only outputs are compared)",
        "",
        "Criterion: aarch64 with its default kernels (what a Pi runs) against x86_64 with TFLite's",
        "portable reference kernels (BUILTIN_REF): same top-1 label and every probability within",
        f"{tolerance:g}, for every clip. Why the reference kernels: on aarch64 the default kernels equal",
        "them bit for bit (kernel analysis below), while x86_64's optimized int8 kernels round differently.",
    ]
    if labels != b["labels"]:
        lines.append("FAIL: the label lists differ")
    lines += ["", f"{'clip':40s} {'x86_64 ref':11s} {'aarch64':10s} {'max |dp|':>9s} {'int8 in':>7s}"]
    b_by_clip = {r["clip"]: r for r in b["results"]}
    worst = 0.0
    passed: List[str] = []
    boundary_only: List[str] = []
    other_failures: List[str] = []
    notes: List[str] = []
    boundary_same_input = 0.0  # largest |dp| of the boundary clips once both machines use the same features
    for ra in a["results"]:
        name = ra["clip"]
        rb = b_by_clip.get(name)
        if rb is None:
            lines.append(f"{name:40s} missing on aarch64")
            other_failures.append(name)
            continue
        diff = _max_diff(ra["probabilities"], rb["probabilities"])
        worst = max(worst, diff)
        same = ra["label"] == rb["label"]
        differing_inputs = rb.get("int8_inputs_differing")
        ok = same and diff <= tolerance and labels == b["labels"]
        lines.append(f"{name:40s} {ra['label']:11s} {rb['label']:10s} {diff:9.2e} "
                     f"{'-' if differing_inputs is None else differing_inputs:>7}" + ("" if ok else "  <-- MISMATCH"))
        if ok:
            passed.append(name)
            if differing_inputs:
                notes.append(f"  {name}: {differing_inputs} int8 input(s) differ, the output does not change")
            continue
        if not same:
            lines.append(_flip_note(labels, ra, rb, "x86_64 ref", "aarch64"))
        on_same = rb.get("probabilities_on_reference_features")
        same_input_diff = _max_diff(ra["probabilities"], on_same) if on_same else None
        if same_input_diff is not None:
            lines.append(f"    aarch64 on the x86_64 features: max |dp| {same_input_diff:.2e} to x86_64 ref")
        if differing_inputs and same_input_diff is not None and same_input_diff <= tolerance:
            boundary_only.append(name)
            boundary_same_input = max(boundary_same_input, same_input_diff)
            for item in rb.get("boundary_inputs", []):
                notes.append(
                    f"  {name}: window {item['window']}, frame {item['frame']}, mel band {item['feature']}: "
                    f"features differ by {abs(item['feature_diff']):.1e} = {abs(item['feature_diff_steps']):.1e} "
                    f"steps, the x86_64 value sits {item['distance']:.1e} steps from k + 0.5; "
                    f"int8 {item['int8'][0]} on x86_64, {item['int8'][1]} on aarch64")
            boundary_only[-1] += (f" ({len(rb.get('boundary_inputs', []))} int8 inputs, max |dp| {diff:.2e}"
                                  f" = {diff * 256:.3g} output step(s) of 1/256, "
                                  f"{'same' if same else 'DIFFERENT'} top-1)")
        else:
            other_failures.append(name)
    n = len(a["results"])
    strict_ok = len(passed) == n and labels == b["labels"]
    lines.append("")
    if strict_ok:
        lines.append(f"PASS: {n}/{n} clips with the same top-1 label and probabilities within {tolerance:g}; "
                     f"largest difference {worst:.3g}")
    else:
        lines.append(f"FAIL (criterion not met on every clip): PASS on {len(passed)}/{n} clips (same top-1 label, "
                     f"probabilities within {tolerance:g}); largest difference {worst:.3g}")
        if boundary_only:
            lines.append(f"  the remaining {len(boundary_only)} clip(s) differ ONLY through int8 model inputs on a "
                         "quantization boundary (given the x86_64 features,")
            lines.append("  aarch64 reproduces the x86_64 reference result: largest |dp| "
                         f"{boundary_same_input:.3g}{', bit-identical' if boundary_same_input == 0.0 else ''}):")
            lines += [f"    {item}" for item in boundary_only]
        if other_failures:
            lines.append(f"  {len(other_failures)} clip(s) differ for another reason: " + ", ".join(other_failures))
    same_top1 = sum(1 for ra in a["results"] if b_by_clip.get(ra["clip"], {}).get("label") == ra["label"])
    lines.append(f"same top-1 label: {same_top1}/{n} clips")
    if notes:
        lines += ["", "Inputs that quantize differently (feature float rounding, ~1e-6, moves a value that",
                  "already sits on k + 0.5 quantization steps to the other integer):"] + notes

    # Where differences come from: the aarch64 run also classified the x86_64 features.
    diagnosed = [rb for rb in b["results"] if "probabilities_on_reference_features" in rb]
    if diagnosed:
        a_by_clip = {r["clip"]: r for r in a["results"]}
        feature_diff = max((rb.get("features_max_abs_diff") or 0.0) for rb in diagnosed)
        int8_diff = sum(rb.get("int8_inputs_differing", 0) for rb in diagnosed)
        clips_with = sum(1 for rb in diagnosed if rb.get("int8_inputs_differing"))
        model_diff = max(_max_diff(a_by_clip[rb["clip"]]["probabilities"], rb["probabilities_on_reference_features"])
                         for rb in diagnosed if rb["clip"] in a_by_clip)
        lines += [
            "",
            "Where differences come from (the aarch64 run also classified the x86_64 features):",
            f"  features (float32 log-mel), largest |difference|: {feature_diff:.3g}",
            f"  int8 model inputs that quantize differently: {int8_diff} values over all windows, in {clips_with} clip(s)",
            f"  aarch64 default kernels on identical features vs x86_64 ref: largest probability difference "
            f"{model_diff:.3g}" + ("  (bit-identical)" if model_diff == 0.0 else ""),
        ]

    if c is not None:
        c_by_clip = {r["clip"]: r for r in c["results"]}
        pairs = [(rc, b_by_clip[rc["clip"]]) for rc in c["results"] if rc["clip"] in b_by_clip]
        agree = sum(1 for rc, rb in pairs if rc["label"] == rb["label"])
        diffs = [_max_diff(rc["probabilities"], rb["probabilities"]) for rc, rb in pairs]
        within = sum(1 for (rc, rb), d in zip(pairs, diffs) if rc["label"] == rb["label"] and d <= tolerance)
        ref_vs_default = [_max_diff(c_by_clip[ra["clip"]]["probabilities"], ra["probabilities"])
                          for ra in a["results"] if ra["clip"] in c_by_clip]
        lines += [
            "",
            "For information, not the criterion: aarch64 (default kernels) vs x86_64 with its DEFAULT",
            "(optimized) kernels, i.e. what edge-ser computes on this workstation:",
            f"  same top-1 label: {agree}/{len(pairs)} clips; within {tolerance:g}: {within}/{len(pairs)}; "
            f"largest probability difference {max(diffs, default=0.0):.3g}",
            f"  x86_64 default vs x86_64 ref kernels, same machine: largest probability difference "
            f"{max(ref_vs_default, default=0.0):.3g}",
        ]
        for rc, rb in pairs:
            if rc["label"] != rb["label"]:
                lines.append(f"  {rc['clip']}: {rc['label']} on x86_64 default, {rb['label']} on aarch64")
                lines.append(_flip_note(labels, rc, rb, "x86_64 default", "aarch64"))
        lines += _kernel_lines(c, b)
        ref_c, ref_b = (c.get("kernel_outputs") or {}).get("BUILTIN_REF"), (b.get("kernel_outputs") or {}).get("BUILTIN_REF")
        arm_auto = (b.get("kernel_outputs") or {}).get("AUTO")
        if ref_c and ref_c == ref_b and arm_auto == ref_b:
            lines += ["", "So: the portable reference kernels give bit-identical outputs on both machines, and the",
                      f"optimized kernels on the emulated {cpu} equal them; x86_64's optimized int8 kernels differ",
                      "by a few int8 steps of 1/256. Figures measured on x86_64 with the default kernels (accuracy)",
                      "can differ from a Pi's by such steps, and a near-tie can flip its top-1 label."]
    text = "\n".join(lines) + "\n"
    report_path.write_text(text)
    print(text, end="")
    return strict_ok


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
    p.add_argument("--kernels", choices=("default", "reference"), default="default",
                   help="interpreter kernels: the default (optimized) ones or the portable reference ones")
    p = sub.add_parser("compare")
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--cpu", default="cortex-a72", help="the qemu CPU model the aarch64 run used")
    p.add_argument("--informative", type=Path,
                   help="x86_64 run on its default kernels, compared as information only")
    args = parser.parse_args(argv)
    if args.command == "make-clips":
        make_clips(args.count, args.dir)
        return 0
    if args.command == "classify":
        classify(args.model, args.clips, args.json, args.reference_features, args.kernels)
        return 0
    return 0 if compare(args.reference, args.other, args.tolerance, args.report, args.cpu, args.informative) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
