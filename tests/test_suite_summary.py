"""The suite itself: a run without the corpora must say so at its end, not skip quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SAMPLE = '''
def test_needs_the_corpus(ravdess_dir):
    assert ravdess_dir.is_dir()

def test_also_needs_it(ravdess_dir):
    assert ravdess_dir.is_dir()

def test_needs_nothing():
    pass
'''


def run_pytest(tmp_path: Path, shared: Path) -> subprocess.CompletedProcess:
    """pytest in a subprocess on a small test file, with this suite's conftest loaded as a plugin."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = dict(os.environ, EDGE_SER_SHARED=str(shared), PYTHONPATH=f"{TESTS}{os.pathsep}{TESTS.parent}")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
                           str(tmp_path / "test_sample.py")], capture_output=True, text=True, cwd=str(tmp_path),
                          env=env, timeout=120)


def test_missing_corpora_are_counted_in_the_last_lines(tmp_path):
    empty = tmp_path / "no-shared"
    empty.mkdir()
    out = run_pytest(tmp_path, empty)
    assert out.returncode == 0, out.stdout + out.stderr
    last = out.stdout.strip().splitlines()[-3:]
    assert "corpora missing" in last[0]
    assert last[1].startswith("2 test(s) SKIPPED because the corpora were not found")
    assert str(empty / "datasets" / "ravdess") in last[1]
    assert "1 passed, 2 skipped" in last[2]


def test_no_corpus_line_when_the_corpora_are_there(tmp_path):
    shared = tmp_path / "shared"
    (shared / "datasets" / "ravdess" / "Actor_01").mkdir(parents=True)
    out = run_pytest(tmp_path, shared)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 passed" in out.stdout and "corpora" not in out.stdout
