"""A fuzz campaign: ``python -m fuzz [--seconds 600] [TARGET ...]`` (``make fuzz``).

Runs every target (default: all) in turn for an equal share of ``--seconds``, each in
its own :mod:`fuzz.worker` process under the memory cap. A worker that dies (a hang
past libFuzzer's timeout, a crash in native code) is reported as a finding and started
again for the time left. Findings are printed as they happen (``FINDING`` lines) and
listed at the end with the executions per target; the engine's own chatter goes to
``FINDINGS/TARGET/engine.log``. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .targets import TARGETS

#: Do not start a worker for less than this (start-up and seeds alone take a few seconds).
MIN_RUN_SECONDS = 10.0
#: Inputs per atheris worker before a fresh one takes over (the corpus carries on). An
#: instrumented process grows by about a kilobyte per input (seen in the load_audio worker:
#: 88 -> 509 MB over 180,000 inputs, while the same code in a plain loop stays flat), which
#: would end in MemoryErrors under the cap that no input causes by itself.
RUNS_PER_WORKER = 150_000


def _default_engine() -> str:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def _run_target(name: str, seconds: float, args: argparse.Namespace, totals: Dict[str, Dict]) -> None:
    out = Path(args.findings) / name
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "engine.log"
    entry = totals.setdefault(name, {"executions": 0, "seconds": 0.0, "findings": {}, "restarts": 0, "rss": 0})
    end = time.monotonic() + seconds
    seed = args.seed
    while True:
        left = end - time.monotonic()
        if left < MIN_RUN_SECONDS and entry["seconds"] > 0:
            return
        left = max(left, MIN_RUN_SECONDS)
        stats_path = out / "stats.json"
        stats_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "fuzz.worker", name, "--engine", args.engine, "--seconds", f"{left:.0f}",
               "--memory-mb", str(args.memory_mb), "--findings", str(args.findings), "--seed", str(seed)]
        if args.engine == "atheris":
            cmd += ["--examples", str(RUNS_PER_WORKER)]
        started = time.monotonic()
        with open(log_path, "ab") as log:
            proc = subprocess.run(cmd, stdout=None, stderr=log, env=dict(os.environ, MALLOC_ARENA_MAX="2"),
                                  timeout=left + 300)
        entry["seconds"] += time.monotonic() - started
        if stats_path.is_file():
            stats = json.loads(stats_path.read_text())
            entry["executions"] += stats["executions"]
            entry["rss"] = max(entry["rss"], stats.get("max_rss_mb", 0))
            for kind, found in stats["findings"].items():
                known = entry["findings"].setdefault(kind, {"count": 0, "report": found["report"]})
                known["count"] += found["count"]
        if proc.returncode in (0, 1):
            seed += 1  # ended before the time was up (atheris: its share of runs): a fresh worker goes on
            continue
        artifacts = sorted(p.name for p in out.iterdir() if p.name.split("-")[0] in ("crash", "timeout", "oom", "leak"))
        kind = f"worker died (exit status {proc.returncode})"
        print(f"FINDING [{name}] {kind}: engine artifacts {artifacts[-3:]}, see {log_path}", flush=True)
        known = entry["findings"].setdefault(kind, {"count": 0, "report": str(log_path)})
        known["count"] += 1
        entry["restarts"] += 1
        seed += 1


def _replay(name: str, report: str, args: argparse.Namespace) -> str:
    """Run a finding's input alone in a fresh worker: does it show the same kind again?

    A finding that does not come back depends on what the long-running process had been
    through (memory it had grown to, a busy machine's timing): still worth a look, but
    not a bug of that input.
    """
    import tempfile

    data = Path(report).with_suffix(".bin")
    if not data.is_file():
        return "no input to replay"
    kind = next((line[6:] for line in Path(report).read_text().splitlines() if line.startswith("kind: ")), "")
    with tempfile.TemporaryDirectory(prefix="edge-ser-replay-") as tmp:
        subprocess.run([sys.executable, "-m", "fuzz.worker", name, "--replay", str(data), "--memory-mb",
                        str(args.memory_mb), "--findings", tmp], capture_output=True, timeout=600,
                       env=dict(os.environ, MALLOC_ARENA_MAX="2"))
        stats = Path(tmp) / name / "stats.json"
        again = json.loads(stats.read_text())["findings"] if stats.is_file() else {}
    if kind in again:
        return "reproduces alone"
    if again:
        return f"alone it shows {sorted(again)}"
    return "NOT alone: depends on the process's state or timing"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("targets", nargs="*", choices=[[]] + sorted(TARGETS), metavar="TARGET",
                   help=f"default: all ({', '.join(sorted(TARGETS))})")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", 600)),
                   help="the whole campaign, shared by the targets (default $FUZZ_SECONDS, else 600)")
    p.add_argument("--engine", choices=("atheris", "hypothesis"), default=_default_engine())
    p.add_argument("--memory-mb", type=int, default=512, help="memory cap per worker beyond its size after setup")
    p.add_argument("--findings", default=os.environ.get("FUZZ_FINDINGS", "fuzz/findings"))
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000,
                   help="hypothesis seed (default: from the clock, so campaigns differ)")
    args = p.parse_args(argv)
    names: List[str] = list(args.targets) or sorted(TARGETS)
    share = args.seconds / len(names)
    print(f"fuzz campaign: {args.seconds:.0f} s over {', '.join(names)} ({share:.0f} s each), engine {args.engine}, "
          f"memory cap +{args.memory_mb} MB per worker, findings in {args.findings}", flush=True)
    totals: Dict[str, Dict] = {}
    for name in names:
        _run_target(name, share, args, totals)
    print()
    print(f"{'target':<12} {'executions':>11} {'seconds':>8} {'exec/s':>7} {'restarts':>8} {'peak RSS':>9}  findings")
    found = 0
    for name in names:
        t = totals[name]
        rate = t["executions"] / t["seconds"] if t["seconds"] else 0.0
        print(f"{name:<12} {t['executions']:>11} {t['seconds']:>8.0f} {rate:>7.0f} {t['restarts']:>8} "
              f"{t['rss']:>6} MB  {len(t['findings'])}")
        found += len(t["findings"])
    if found:
        print("\nfindings (kind, times seen, whether its input alone shows it again, first report):")
        for name in names:
            for kind, f in totals[name]["findings"].items():
                print(f"  [{name}] {kind} (x{f['count']}, {_replay(name, f['report'], args)}) -> {f['report']}")
    else:
        print("\nno findings")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
