"""The Python half of device/check-arm64.sh: pick clips, classify them, compare the runs.

``classify`` is the part that runs under qemu-aarch64: it must stay ONE process (a
subprocess of an emulated Python would run natively and fail) and import nothing but
the stdlib, numpy and edge_ser, exactly like a Raspberry Pi would. ``make-clips`` and
``compare`` run natively.

    python device/arm64_check.py make-clips --count 24 --dir CLIPS
    python device/arm64_check.py classify --model M --clips CLIPS --json OUT.json [--kernels reference|builtin]
    python device/arm64_check.py same ARM.json ARM-OTHER-CPU.json
    python device/arm64_check.py compare --x86-default X86.json --x86-reference X86_REF.json \\
        --aarch64 ARM.json [--x86-builtin X.json --aarch64-builtin A.json] --suite bookworm \\
        --tolerance 1e-5 --report R.txt

What is compared, and why: a Pi runs the interpreter's default kernels, and which x86_64
run those equal depends on the interpreter (:data:`CRITERION`, measured under qemu 10):

* tflite-runtime 2.14 (Raspberry Pi OS Bookworm): on aarch64 its default (optimized) int8
  kernels give the same outputs as TFLite's portable reference kernels
  (``OpResolverType.BUILTIN_REF``), which are bit-identical on every machine, while its
  x86_64 optimized kernels round differently. So aarch64 default is held against
  x86_64 ``BUILTIN_REF``.
* LiteRT 2.3 (Raspberry Pi OS Trixie): its default kernels (the XNNPACK delegate) give the
  same outputs on x86_64 and aarch64, so aarch64 default is held against x86_64 default.
  Its reference kernels are bit-identical across machines too but differ from its
  XNNPACK ones (on either machine), and its builtin optimized kernels
  (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, edge-ser's ``--no-xnnpack``) differ between
  x86_64 and aarch64 by a few output steps.

Every other pairing is reported as information, with the raw int8 outputs of each op
resolver on identical int8 windows, which shows where a difference is made.
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
from typing import Any, Dict, List, Optional, Tuple

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
    *optimized* builtin kernels, whose int8 rounding differs between x86_64 and aarch64
    (in tflite-runtime and in LiteRT). ``BUILTIN_REF`` is the portable C++
    implementation, bit-identical on both. Only the
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
    (:func:`reference_kernel_model`), ``"builtin"`` on the builtin optimized kernels
    (``xnnpack=False``, what ``--no-xnnpack`` runs); ``"default"`` is what a device runs.

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
    classifier = Classifier(model, xnnpack=False if kernels == "builtin" else None)
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
            "windows": prediction.window_count,
        }
        if path.name in reference:
            ref = reference[path.name]
            entry["features_max_abs_diff"] = float(np.abs(ref - feats).max()) if ref.shape == feats.shape else None
            quantize = getattr(classifier.model, "_quantize", None)
            if quantize is not None and ref.shape == feats.shape:
                mine, _ = split_windows(feats, meta.window_frames, meta.hop_frames, meta.feature_config.n_blocks)
                theirs, _ = split_windows(ref, meta.window_frames, meta.hop_frames, meta.feature_config.n_blocks)
                entry["int8_inputs_differing"] = int(sum(
                    int(np.count_nonzero(quantize(a) != quantize(b))) for a, b in zip(mine, theirs)))
                if entry["int8_inputs_differing"]:
                    entry["boundary_inputs"] = boundary_inputs(mine, theirs, quantize, classifier.model.input)
            same_input = classifier.classify_features(ref, prediction.duration)
            entry["probabilities_on_reference_features"] = [
                same_input.probabilities[label] for label in classifier.labels]
        results.append(entry)
    np.savez(out.with_suffix(".npz"), **features)
    # Int8 windows of every clip from the reference features (or our own): identical
    # input on both machines for the kernel comparison, whatever the interpreter.
    quantize = getattr(classifier.model, "_quantize", None)
    kernel_outputs_by_resolver = {}
    if kernels == "default" and quantize is not None:
        source = reference if reference else features
        windows_by_clip = {}
        for name in sorted(source):
            windows, _ = split_windows(source[name], meta.window_frames, meta.hop_frames,
                                       meta.feature_config.n_blocks)
            windows_by_clip[name] = [quantize(w) for w in windows]
        kernel_outputs_by_resolver = kernel_outputs(classifier.model.backend, model, windows_by_clip)
    report = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "backend": classifier.backend_name,
        "backend_version": getattr(classifier.model.backend, "version", "?"),
        "kernels": KERNEL_LABELS[kernels],
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


#: Op resolvers compared on identical int8 windows: AUTO is what edge_ser uses (the XNNPACK
#: delegate on top of the builtin kernels), BUILTIN_WITHOUT_DEFAULT_DELEGATES the builtin
#: optimized kernels alone (``--no-xnnpack``), BUILTIN_REF the portable reference kernels.
RESOLVERS = ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "BUILTIN_REF")

#: How each ``classify --kernels`` choice is named in the report.
KERNEL_LABELS: Dict[str, str] = {"default": "default", "reference": "reference (BUILTIN_REF)",
                                 "builtin": "builtin (--no-xnnpack)"}

#: Which x86_64 run the aarch64 default kernels must equal, by interpreter (see the module
#: docstring): ``reference`` = x86_64 BUILTIN_REF, ``default`` = x86_64 default kernels.
CRITERION: Dict[str, str] = {"tflite-runtime": "reference", "litert": "default", "tensorflow": "reference"}

#: The Debian release under each Raspberry Pi OS generation, for the report.
GENERATIONS: Dict[str, str] = {"bookworm": "Debian 12", "trixie": "Debian 13"}


def kernel_outputs(backend: Any, model: Path, windows_by_clip: Dict[str, Any]) -> Dict[str, Dict[str, List[List[int]]]]:
    """Raw int8 outputs of each op resolver (:data:`RESOLVERS`) on the same int8 windows.

    Uses the interpreter package edge_ser loaded (``backend``), so tflite-runtime and
    LiteRT are analysed alike. Which resolvers agree across machines shows where an
    x86_64/aarch64 difference is made.
    """
    if backend.builtin_kernels is None:
        return {}
    resolver_type = type(backend.builtin_kernels)  # the package's OpResolverType enum
    content = model.read_bytes()
    out: Dict[str, Dict[str, List[List[int]]]] = {}
    for kind in RESOLVERS:
        interpreter = backend.interpreter_class(model_content=content,
                                                experimental_op_resolver_type=getattr(resolver_type, kind))
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


def _max_diff(p: List[float], q: List[float]) -> float:
    return max(abs(x - y) for x, y in zip(p, q))


def _flip_note(labels: List[str], ra: Dict[str, Any], rb: Dict[str, Any], name_a: str, name_b: str) -> str:
    """A flipped top-1 is only interesting with its margin: both labels on both sides."""
    ia, ib = labels.index(ra["label"]), labels.index(rb["label"])
    return (f"    {ra['label']} {ra['probabilities'][ia]:.4f} vs {rb['label']} {ra['probabilities'][ib]:.4f} on {name_a}; "
            f"{ra['label']} {rb['probabilities'][ia]:.4f} vs {rb['label']} {rb['probabilities'][ib]:.4f} on {name_b}")


def _argmax(row: List[int]) -> int:
    return max(range(len(row)), key=row.__getitem__)


def _kernel_diff(ka: Dict[str, List[List[int]]], kb: Dict[str, List[List[int]]]) -> Dict[str, int]:
    """How two sets of raw int8 outputs (per clip, per window) differ."""
    windows = [(ra, rb) for clip, rows in ka.items() for ra, rb in zip(rows, kb.get(clip, []))]
    pairs = [(x, y) for ra, rb in windows for x, y in zip(ra, rb)]
    return {
        "outputs": len(pairs),
        "outputs_differing": sum(x != y for x, y in pairs),
        "largest": max((abs(x - y) for x, y in pairs), default=0),
        "windows": len(windows),
        "windows_differing": sum(ra != rb for ra, rb in windows),
        "top1_differing": sum(_argmax(ra) != _argmax(rb) for ra, rb in windows),
    }


def _diff_text(d: Dict[str, int]) -> str:
    if d["windows"] and not d["outputs_differing"]:
        return f"bit-identical ({d['windows']} windows, {d['outputs']} outputs)"
    return (f"{d['windows_differing']}/{d['windows']} windows differ, {d['outputs_differing']}/{d['outputs']} outputs, "
            f"largest by {d['largest']} int8 step(s); top-1 differs in {d['top1_differing']} window(s)")


def _kernel_lines(x86: Dict[str, Any], arm: Dict[str, Any]) -> List[str]:
    """Raw int8 outputs per op resolver on identical int8 windows, across and within machines."""
    kx, ka = x86.get("kernel_outputs") or {}, arm.get("kernel_outputs") or {}
    if not kx or not ka:
        return []
    lines = ["", f"Interpreter kernels on identical int8 windows (every clip, x86_64 features), raw int8 outputs "
                 f"of {arm['backend']} {arm.get('backend_version', '')}:",
             "  x86_64 vs aarch64, same op resolver:"]
    for kind in RESOLVERS:
        if kind in kx and kind in ka:
            lines.append(f"    {kind:34s} {_diff_text(_kernel_diff(kx[kind], ka[kind]))}")
    lines.append("  AUTO (default) vs BUILTIN_REF on the same machine:")
    for run in (x86, arm):
        ko = run["kernel_outputs"]
        if "AUTO" in ko and "BUILTIN_REF" in ko:
            lines.append(f"    {run['machine']:8s} {_diff_text(_kernel_diff(ko['AUTO'], ko['BUILTIN_REF']))}")
    return lines


def _builtin_lines(x86: Dict[str, Any], arm: Dict[str, Any], tolerance: float) -> List[str]:
    """What ``--no-xnnpack`` gives on each machine, end to end, clip by clip (information)."""
    labels = x86["labels"]
    arm_by_clip = {r["clip"]: r for r in arm["results"]}
    pairs = [(rx, arm_by_clip[rx["clip"]]) for rx in x86["results"] if rx["clip"] in arm_by_clip]
    diffs = [_max_diff(rx["probabilities"], ra["probabilities"]) for rx, ra in pairs]
    agree = sum(1 for rx, ra in pairs if rx["label"] == ra["label"])
    within = sum(1 for (rx, ra), d in zip(pairs, diffs) if rx["label"] == ra["label"] and d <= tolerance)
    lines = ["", f"For information: --no-xnnpack (builtin optimized kernels, no XNNPACK) end to end, aarch64 vs x86_64:",
             f"  same top-1 label: {agree}/{len(pairs)} clips; within {tolerance:g}: {within}/{len(pairs)}; "
             f"largest probability difference {max(diffs, default=0.0):.3g} "
             f"= {max(diffs, default=0.0) * 256:.3g} output step(s) of 1/256"]
    for rx, ra in pairs:
        if rx["label"] != ra["label"]:
            lines.append(f"  {rx['clip']}: {rx['label']} on x86_64, {ra['label']} on aarch64")
            lines.append(_flip_note(labels, rx, ra, "x86_64 --no-xnnpack", "aarch64 --no-xnnpack"))
    return lines


def _run_line(run: Dict[str, Any]) -> str:
    return (f"  {run['machine']:8s} {run.get('kernels', 'default') + ' kernels':33s} Python {run['python']}, "
            f"numpy {run['numpy']}, {run['backend']} {run.get('backend_version', '')}, {len(run['results'])} clips "
            f"({run['seconds']} s)")


def compare(x86_default: Path, x86_reference: Path, aarch64: Path, tolerance: float, report_path: Path,
            suite: str = "bookworm", cpu: str = "cortex-a72", qemu: str = "qemu-aarch64",
            builtin: Optional[Tuple[Path, Path]] = None) -> bool:
    """One generation's verdict, written as a report section; True when it passes.

    The aarch64 run (default kernels, what a Pi computes) is held against the x86_64 run
    :data:`CRITERION` names for its interpreter: every clip must have the same top-1
    label and probabilities within ``tolerance``. A clip that misses that is analysed: if
    the aarch64 run, given the x86_64 features, reproduces the x86_64 result within the
    tolerance, the whole difference came from float features (~1e-6 apart) moving an
    int8 model input that sits on a quantization boundary; such a clip passes only with
    the same top-1 label, and the report lists it clip by clip, input by input, instead
    of widening the tolerance. Anything else fails. The other x86_64 run, every op
    resolver, and (``builtin``: x86_64 and aarch64 runs with ``--no-xnnpack``) the builtin
    kernels end to end are compared as information.
    """
    xd = json.loads(x86_default.read_text())
    xr = json.loads(x86_reference.read_text())
    b = json.loads(aarch64.read_text())
    backend = b["backend"]
    rule = CRITERION.get(backend, "reference")
    a, c = (xr, xd) if rule == "reference" else (xd, xr)
    a_name = "x86_64 ref" if rule == "reference" else "x86_64 def"
    c_name = "x86_64 default" if rule == "reference" else "x86_64 BUILTIN_REF"
    labels = a["labels"]
    lines = [
        f"== {suite.capitalize()} ({GENERATIONS.get(suite, suite)}): {backend} {b.get('backend_version', '')}, "
        f"aarch64 under {qemu} -cpu {cpu} ==",
        f"model: {Path(a['model']).name} (id {a.get('model_id')})",
    ]
    lines += [_run_line(run) for run in (a, c, b)]
    if builtin is not None:
        lines += [_run_line(json.loads(path.read_text())) for path in builtin]
    lines.append("  (emulated timings mean nothing; only outputs are compared)")
    lines.append("")
    if rule == "reference":
        lines += [
            f"Criterion ({backend}): aarch64 with its default kernels (what a Pi runs) against x86_64 with",
            "TFLite's portable reference kernels (BUILTIN_REF): same top-1 label and every probability within",
            f"{tolerance:g}, for every clip. Why the reference kernels: with {backend} the aarch64 default",
            "kernels equal them bit for bit, while its x86_64 optimized int8 kernels round differently.",
        ]
    else:
        lines += [
            f"Criterion ({backend}): aarch64 with its default kernels (XNNPACK, what a Pi runs) against x86_64",
            "with its default kernels: same top-1 label and every probability within",
            f"{tolerance:g}, for every clip. Why the default kernels: {backend}'s XNNPACK int8 kernels give the",
            "same outputs on both machines, while its reference kernels differ from XNNPACK on either machine.",
        ]
    if labels != b["labels"]:
        lines.append("FAIL: the label lists differ")
    lines += ["", f"{'clip':40s} {a_name:11s} {'aarch64':10s} {'max |dp|':>9s} {'int8 in':>7s}"]
    b_by_clip = {r["clip"]: r for r in b["results"]}
    worst = 0.0
    passed: List[str] = []
    boundary_only: List[str] = []
    failures: List[str] = []
    notes: List[str] = []
    boundary_same_input = 0.0  # largest |dp| of the boundary clips once both machines use the same features
    for ra in a["results"]:
        name = ra["clip"]
        rb = b_by_clip.get(name)
        if rb is None:
            lines.append(f"{name:40s} missing on aarch64")
            failures.append(name)
            continue
        diff = _max_diff(ra["probabilities"], rb["probabilities"])
        worst = max(worst, diff)
        same = ra["label"] == rb["label"]
        differing_inputs = rb.get("int8_inputs_differing")
        ok = same and diff <= tolerance and labels == b["labels"]
        lines.append(f"{name:40s} {ra['label']:11s} {rb['label']:10s} {diff:9.2e} "
                     f"{'-' if differing_inputs is None else differing_inputs:>7}" + ("" if ok else "  <-- differs"))
        if ok:
            passed.append(name)
            if differing_inputs:
                notes.append(f"  {name}: {differing_inputs} int8 input(s) differ, the output does not change")
            continue
        if not same:
            lines.append(_flip_note(labels, ra, rb, a_name, "aarch64"))
        on_same = rb.get("probabilities_on_reference_features")
        same_input_diff = _max_diff(ra["probabilities"], on_same) if on_same else None
        if same_input_diff is not None:
            lines.append(f"    aarch64 on the x86_64 features: max |dp| {same_input_diff:.2e} to {a_name}")
        if differing_inputs and same_input_diff is not None and same_input_diff <= tolerance and same:
            boundary_only.append(name)
            boundary_same_input = max(boundary_same_input, same_input_diff)
            for item in rb.get("boundary_inputs", []):
                notes.append(
                    f"  {name}: window {item['window']}, frame {item['frame']}, mel band {item['feature']}: "
                    f"features differ by {abs(item['feature_diff']):.1e} = {abs(item['feature_diff_steps']):.1e} "
                    f"steps, the x86_64 value sits {item['distance']:.1e} steps from k + 0.5; "
                    f"int8 {item['int8'][0]} on x86_64, {item['int8'][1]} on aarch64")
            boundary_only[-1] += (f" ({len(rb.get('boundary_inputs', []))} int8 inputs, max |dp| {diff:.2e}"
                                  f" = {diff * 256:.3g} output step(s) of 1/256, same top-1)")
        else:
            failures.append(name)
    n = len(a["results"])
    ok_all = not failures and labels == b["labels"] and len(passed) + len(boundary_only) == n
    lines.append("")
    verdict = "PASS" if ok_all else "FAIL"
    lines.append(f"{verdict} ({suite}): {len(passed)}/{n} clips with the same top-1 label and probabilities within "
                 f"{tolerance:g} end to end; largest difference {worst:.3g}")
    if boundary_only:
        lines.append(f"  {len(boundary_only)} clip(s) differ ONLY through int8 model inputs on a quantization boundary, "
                     "same top-1 (given the x86_64")
        lines.append(f"  features, aarch64 reproduces {a_name}: largest |dp| "
                     f"{boundary_same_input:.3g}{', bit-identical' if boundary_same_input == 0.0 else ''}):")
        lines += [f"    {item}" for item in boundary_only]
    if failures:
        lines.append(f"  {len(failures)} clip(s) fail (another cause than input rounding, or a flipped top-1): "
                     + ", ".join(failures))
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
            f"  aarch64 default kernels on identical features vs {a_name}: largest probability difference "
            f"{model_diff:.3g}" + ("  (bit-identical)" if model_diff == 0.0 else ""),
        ]

    c_by_clip = {r["clip"]: r for r in c["results"]}
    pairs = [(rc, b_by_clip[rc["clip"]]) for rc in c["results"] if rc["clip"] in b_by_clip]
    agree = sum(1 for rc, rb in pairs if rc["label"] == rb["label"])
    diffs = [_max_diff(rc["probabilities"], rb["probabilities"]) for rc, rb in pairs]
    within = sum(1 for (rc, rb), d in zip(pairs, diffs) if rc["label"] == rb["label"] and d <= tolerance)
    x86_ref_vs_default = [_max_diff(c_by_clip[ra["clip"]]["probabilities"], ra["probabilities"])
                          for ra in a["results"] if ra["clip"] in c_by_clip]
    lines += [
        "",
        f"For information, not the criterion: aarch64 (default kernels) vs {c_name}:",
        f"  same top-1 label: {agree}/{len(pairs)} clips; within {tolerance:g}: {within}/{len(pairs)}; "
        f"largest probability difference {max(diffs, default=0.0):.3g}",
        f"  x86_64 default vs x86_64 BUILTIN_REF, same machine: largest probability difference "
        f"{max(x86_ref_vs_default, default=0.0):.3g}",
    ]
    for rc, rb in pairs:
        if rc["label"] != rb["label"]:
            lines.append(f"  {rc['clip']}: {rc['label']} on {c_name}, {rb['label']} on aarch64")
            lines.append(_flip_note(labels, rc, rb, c_name, "aarch64"))
    if builtin is not None:
        lines += _builtin_lines(json.loads(builtin[0].read_text()), json.loads(builtin[1].read_text()), tolerance)
    lines += _kernel_lines(xd, b)
    text = "\n".join(lines) + "\n"
    report_path.write_text(text)
    print(text, end="")
    return ok_all


def same_outputs(main_run: Path, other_run: Path) -> bool:
    """Print whether two aarch64 runs (e.g. two qemu CPU models) gave identical outputs.

    Compares every clip's label and probabilities and every op resolver's raw int8
    outputs: identical runs mean the other CPU model's verdict is the main one's.
    """
    a = json.loads(main_run.read_text())
    b = json.loads(other_run.read_text())
    b_by_clip = {r["clip"]: r for r in b["results"]}
    differing = [r["clip"] for r in a["results"]
                 if (b_by_clip.get(r["clip"]) or {}).get("probabilities") != r["probabilities"]
                 or (b_by_clip.get(r["clip"]) or {}).get("label") != r["label"]]
    ka, kb = a.get("kernel_outputs") or {}, b.get("kernel_outputs") or {}
    kernels_differing = [kind for kind in ka if ka[kind] != kb.get(kind)]
    if not differing and not kernels_differing and len(a["results"]) == len(b["results"]):
        print(f"identical outputs on {len(a['results'])} clips and raw int8 outputs of {len(ka)} op resolvers")
        return True
    print(f"outputs differ on {len(differing)}/{len(a['results'])} clips"
          + (f"; raw int8 outputs differ for {', '.join(kernels_differing)}" if kernels_differing else ""))
    return False


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
    p.add_argument("--kernels", choices=tuple(KERNEL_LABELS), default="default",
                   help="interpreter kernels: the default ones, the portable reference ones (BUILTIN_REF) or "
                        "the builtin optimized ones without XNNPACK (--no-xnnpack)")
    p = sub.add_parser("compare")
    p.add_argument("--x86-default", type=Path, required=True, help="x86_64 run on its default kernels")
    p.add_argument("--x86-reference", type=Path, required=True, help="x86_64 run on BUILTIN_REF")
    p.add_argument("--aarch64", type=Path, required=True, help="aarch64 run on its default kernels")
    p.add_argument("--x86-builtin", type=Path, help="x86_64 run with --no-xnnpack (information)")
    p.add_argument("--aarch64-builtin", type=Path, help="aarch64 run with --no-xnnpack (information)")
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--report", type=Path, required=True)
    p.add_argument("--suite", default="bookworm", help="the Raspberry Pi OS generation of the arm64 root")
    p.add_argument("--cpu", default="cortex-a72", help="the qemu CPU model the aarch64 run used")
    p.add_argument("--qemu", default="qemu-aarch64", help="the emulator and its version, for the report")
    p = sub.add_parser("same", help="do two aarch64 runs give identical outputs?")
    p.add_argument("main_run", type=Path)
    p.add_argument("other_run", type=Path)
    args = parser.parse_args(argv)
    if args.command == "same":
        return 0 if same_outputs(args.main_run, args.other_run) else 1
    if args.command == "make-clips":
        make_clips(args.count, args.dir)
        return 0
    if args.command == "classify":
        classify(args.model, args.clips, args.json, args.reference_features, args.kernels)
        return 0
    builtin = (args.x86_builtin, args.aarch64_builtin) if args.x86_builtin and args.aarch64_builtin else None
    ok = compare(args.x86_default, args.x86_reference, args.aarch64, args.tolerance, args.report,
                 args.suite, args.cpu, args.qemu, builtin)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
