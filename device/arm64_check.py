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
from typing import Any, Dict, List

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


def classify(model: Path, clips: Path, out: Path) -> Dict[str, Any]:
    """Classify every WAV in ``clips`` with one Classifier; write labels and probabilities."""
    import numpy as np

    from edge_ser.classify import Classifier

    started = time.time()
    classifier = Classifier(model)
    results = []
    for path in sorted(clips.glob("*.wav")):
        prediction = classifier.classify_file(path)
        results.append({
            "clip": path.name,
            "label": prediction.label,
            "probabilities": [prediction.probabilities[label] for label in classifier.labels],
            "windows": len(prediction.windows),
        })
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
    }
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{platform.machine()}: {len(results)} clips with {classifier.backend_name} in {report['seconds']} s")
    return report


def compare(reference: Path, other: Path, tolerance: float, report_path: Path) -> bool:
    """Same top-1 label and probabilities within ``tolerance`` for every clip, as a report."""
    a = json.loads(reference.read_text())
    b = json.loads(other.read_text())
    lines = [
        "edge-ser arm64 check (device/check-arm64.sh): the same clips classified natively and",
        "under qemu-aarch64-static (-cpu cortex-a72) in a Debian bookworm arm64 root.",
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
    lines.append("")
    lines.append(
        f"{'PASS' if ok else 'FAIL'}: {len(a['results']) - mismatches}/{len(a['results'])} clips with the same "
        f"top-1 label and probabilities within {tolerance:g}; largest difference {worst:.3g}"
    )
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
    p = sub.add_parser("compare")
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--tolerance", type=float, default=1e-5)
    p.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "make-clips":
        make_clips(args.count, args.dir)
        return 0
    if args.command == "classify":
        classify(args.model, args.clips, args.json)
        return 0
    return 0 if compare(args.reference, args.other, args.tolerance, args.report) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
