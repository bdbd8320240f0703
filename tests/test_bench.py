"""Smoke run of device/bench.py with tiny sizes: it runs end to end and writes its table.

Numbers are not checked (they belong to the benchmark's results file, not to a test);
only that every part ran or said why not, and that the markdown and JSON were written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from runtime_fixtures import test_models  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_writes_table(tmp_path: Path, test_models) -> None:  # noqa: F811
    out = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "device" / "bench.py"), "--quick", "--skip-ancestor",
         "--keep-openblas-env", "--model", str(test_models["int8"]), "--out", str(out),
         "--cache", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    stem = f"bench-{socket.gethostname()}"
    md = (out / f"{stem}.md").read_text()
    data = json.loads((out / f"{stem}.json").read_text())
    assert md in proc.stdout  # the table printed is the table written
    for heading in ("## Frontend", "## Runtime", "## Daemon"):
        assert heading in md
    assert "| 3 s |" in md and "| 30 s |" in md
    assert "skipped (--skip-ancestor)" in md

    steady = data["runtime"]["steady"]
    assert steady["repeat"] == 3 and steady["total_ms"] > 0
    cold = data["runtime"]["cold"]["edge_ser"]
    assert "error" not in cold, cold
    assert cold["max_rss_mb"] > 0 and cold["wall_s"] > 0
    assert data["frontend"]["in_process"]["streaming"]["ms_per_audio_second"] > 0
    daemon = data["daemon"]
    if importlib.util.find_spec("edge_ser.daemon") is not None:
        assert "error" not in daemon, daemon
        assert daemon["rtf"] > 0 and daemon["max_rss_mb"] > 0 and daemon["audio_seconds"] == 8.0
    else:
        assert daemon == {"error": "edge_ser.daemon not present"}
    assert set(data["goals"]) >= {"cold_speedup_ok", "memory_ok", "steady_ok", "rtf_ok", "latency_ok", "rss_ok",
                                  "size_ok", "window_ok", "cold_budget_ok"}
    assert data["goals"]["size_ok"] is True  # the shipped model is inside the 1 MB budget
