"""One fuzz target in one process: ``python -m fuzz.worker TARGET [options]``.

The process caps its own address space (``resource.setrlimit(RLIMIT_AS)``) at what it
uses after setup plus ``--memory-mb``, so an input that makes the code allocate far more
than its size (a header claiming a 1 Hz rate, a huge sample count) ends in a
``MemoryError`` that is recorded as a finding instead of taking the machine down.

Findings are recorded and the run goes on: one report per kind and place (the first
input that showed it), written at once to ``FINDINGS/TARGET/`` as ``NAME.bin`` (the
input) and ``NAME.txt`` (what broke, the traceback, the input as hex, how to replay it),
and announced on stdout as a ``FINDING`` line. ``stats.json`` there holds the counts.

Engines: ``atheris`` (coverage-guided libFuzzer over the seed corpus; edge_ser is
instrumented) or ``hypothesis`` (the structured generators with hypothesis driving the
random choices; ``--examples N`` is deterministic for a given ``--seed``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Recorder", "main"]

#: An input slower than this is reported (kind "slow input"); tests ignore that kind.
SLOW_SECONDS = 5.0
_HEX_LIMIT = 4096


def _vm_size_mb() -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _few_malloc_arenas() -> None:
    """glibc reserves 64 MB of address space per malloc arena, up to 8 per core, as threads
    appear (the HTTP server starts one per connection): under an address-space cap that
    reservation, not the code under test, would make thread starts fail. Two arenas, as
    ``MALLOC_ARENA_MAX=2`` would set, before any thread exists."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc: nothing reserved per arena that way


def cap_memory(headroom_mb: int) -> Optional[int]:
    """Limit the address space to the current size plus ``headroom_mb``; the cap in MB."""
    if headroom_mb <= 0:
        return None
    current = _vm_size_mb()
    if current is None:
        return None
    cap = int(current + headroom_mb)
    resource.setrlimit(resource.RLIMIT_AS, (cap << 20, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return cap


def _place(exc: BaseException) -> str:
    """Where it went wrong: the innermost edge_ser frame (else the check's, else the innermost one)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}edge_ser{os.sep}" in f.filename]
    checks = [f for f in frames if f"{os.sep}fuzz{os.sep}" in f.filename]  # the check itself
    frame = (ours or checks or frames or [None])[-1]
    if frame is None:
        return "?"
    path = frame.filename
    if f"{os.sep}edge_ser{os.sep}" in path:
        path = "edge_ser" + path.rsplit(f"{os.sep}edge_ser", 1)[1]
    return f"{path}:{frame.lineno} in {frame.name}"


class Recorder:
    """Runs a target on one input, classifies what happened, and writes findings once."""

    def __init__(self, target: Any, out_dir: Path, stats_every: float = 1.0) -> None:
        self.target = target
        self.dir = out_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.executions = 0
        self.counts: Dict[str, int] = {}
        self.first: Dict[str, str] = {}
        self.started = time.monotonic()
        self._stats_every = stats_every
        self._stats_at = 0.0

    def run_one(self, data: bytes) -> None:
        from .targets import Finding

        started = time.perf_counter()
        try:
            self.target.check(data)
        except Finding as exc:
            self._record(exc.kind, exc.detail, data, exc)
        except MemoryError as exc:
            self._record(f"MemoryError at {_place(exc)}", "allocation beyond the memory cap", data, exc)
        except RecursionError as exc:
            self._record(f"RecursionError at {_place(exc)}", str(exc)[:200], data, exc)
        except Exception as exc:  # noqa: BLE001 (anything else escaping is what we look for)
            self._record(f"{type(exc).__name__} at {_place(exc)}", str(exc)[:300], data, exc)
        elapsed = time.perf_counter() - started
        if elapsed > SLOW_SECONDS:
            self._record("slow input", f"{elapsed:.1f} s for {len(data)} bytes", data, None)
        self.executions += 1
        now = time.monotonic()
        if now - self._stats_at >= self._stats_every:
            self._stats_at = now
            self.write_stats()

    def _record(self, kind: str, detail: str, data: bytes, exc: Optional[BaseException]) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind in self.first:
            return
        digest = hashlib.sha1(data).hexdigest()[:12]
        slug = re.sub(r"[^A-Za-z0-9]+", "-", kind).strip("-")[:60] or "finding"
        stem = self.dir / f"{slug}-{digest}"
        stem.with_suffix(".bin").write_bytes(data)
        hexed = data[:_HEX_LIMIT].hex() + (f"... ({len(data)} bytes in all)" if len(data) > _HEX_LIMIT else "")
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) if exc is not None else ""
        stem.with_suffix(".txt").write_text(
            f"target: {self.target.name}\nkind: {kind}\ndetail: {detail}\ninput: {len(data)} bytes\n"
            f"hex: {hexed}\nreplay: python -m fuzz.worker {self.target.name} --replay {stem.with_suffix('.bin')}\n"
            f"\n{tb}")
        self.first[kind] = str(stem.with_suffix(".txt"))
        print(f"FINDING [{self.target.name}] {kind}: {detail} ({len(data)} bytes) -> {stem}.txt", flush=True)
        self.write_stats()

    def write_stats(self) -> None:
        stats = {"target": self.target.name, "executions": self.executions,
                 "seconds": round(time.monotonic() - self.started, 1),
                 "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                 "findings": {k: {"count": n, "report": self.first[k]} for k, n in self.counts.items()}}
        tmp = self.dir / "stats.json.tmp"
        tmp.write_text(json.dumps(stats, indent=1))
        os.replace(tmp, self.dir / "stats.json")


def _load_target(name: str, instrument: bool) -> Any:
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["edge_ser"]):
            import edge_ser.audio  # noqa: F401  (imported here so that atheris instruments them)
            import edge_ser.classify  # noqa: F401
            import edge_ser.outputs.http  # noqa: F401
            import edge_ser.resample  # noqa: F401
            import edge_ser.wav  # noqa: F401
    from .targets import make_target

    return make_target(name)


def _run_atheris(recorder: Recorder, target: Any, seconds: float, out: Path, runs: Optional[int]) -> None:
    import atheris

    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for data in target.seeds():
            (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    args = [sys.argv[0], f"-max_total_time={max(1, int(seconds))}", "-timeout=120", "-rss_limit_mb=0",
            "-max_len=16384", "-print_final_stats=1", f"-artifact_prefix={out}{os.sep}", str(corpus)]
    if runs:
        args.insert(1, f"-runs={runs}")
    atheris.Setup(args, recorder.run_one)
    atheris.Fuzz()  # exits the process when the time is up


def _run_hypothesis(recorder: Recorder, target: Any, seconds: Optional[float], examples: Optional[int],
                    seed: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    for data in target.seeds():
        recorder.run_one(data)
    deadline = None if seconds is None else time.monotonic() + seconds
    batch = examples if examples is not None else 200
    round_ = 0
    while True:
        @hypothesis_seed(seed + round_)
        @settings(max_examples=batch, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), print_blob=False)
        @given(st.randoms(use_true_random=False))
        def one(rng: random.Random) -> None:
            if deadline is not None and time.monotonic() > deadline:
                return
            recorder.run_one(target.generate(rng))

        one()
        round_ += 1
        if deadline is None or time.monotonic() > deadline:
            break


def build_parser() -> argparse.ArgumentParser:
    from .targets import TARGETS

    p = argparse.ArgumentParser(prog="python -m fuzz.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--engine", choices=("atheris", "hypothesis"), default=None,
                   help="default: atheris when installed, else hypothesis")
    p.add_argument("--seconds", type=float, help="run for this long")
    p.add_argument("--examples", type=int, help="this many generated inputs (hypothesis: after the seeds; "
                                                 "atheris: libFuzzer's -runs)")
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0: the same inputs every run)")
    p.add_argument("--memory-mb", type=int, default=512, help="address space allowed beyond the size after setup "
                                                              "(0: no cap; default 512)")
    p.add_argument("--findings", default="fuzz/findings", help="where findings go (default fuzz/findings)")
    p.add_argument("--replay", nargs="+", metavar="FILE", help="run the target on these inputs and report")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    engine = args.engine
    if engine is None and not args.replay:
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "hypothesis"
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    _few_malloc_arenas()
    target = _load_target(args.target, instrument=engine == "atheris")
    out = Path(args.findings) / args.target
    cap = cap_memory(args.memory_mb)
    recorder = Recorder(target, out)
    print(f"fuzz {args.target}: engine {engine or 'replay'}, memory cap "
          f"{f'{cap} MB' if cap else 'none'}, findings in {out}", flush=True)
    try:
        if args.replay:
            for path in args.replay:
                recorder.run_one(Path(path).read_bytes())
            print(f"replayed {len(args.replay)} input(s): {len(recorder.first)} finding(s)")
        elif engine == "atheris":
            _run_atheris(recorder, target, args.seconds or 60, out, args.examples)
        else:
            if args.seconds is None and args.examples is None:
                args.seconds = 60
            _run_hypothesis(recorder, target, args.seconds, args.examples, args.seed)
    finally:
        recorder.write_stats()
        target.close()
    return 1 if recorder.first else 0


if __name__ == "__main__":
    sys.exit(main())
