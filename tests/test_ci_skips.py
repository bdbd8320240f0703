"""Under CI a test may not skip for want of a tool that ``make test`` installs (conftest hook)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import MAKE_TEST_INSTALLS

TESTS = Path(__file__).resolve().parent

SAMPLE = f'''
import pytest

pytest.importorskip("no_such_module_here", reason="no_such_module_here; {MAKE_TEST_INSTALLS}")
'''

SAMPLE_TESTS = f'''
import pytest

def test_needs_a_tool_make_test_installs():
    pytest.skip("sometool is not installed; {MAKE_TEST_INSTALLS}")

@pytest.mark.skipif(True, reason="sometool is not installed; {MAKE_TEST_INSTALLS}")
def test_marked_for_a_tool_make_test_installs():
    pass

def test_skips_for_another_reason():
    pytest.skip("no IPv6 on this machine")
'''


def _pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = str(TESTS)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
                           "-rfs", str(folder)], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_skips_for_what_make_test_installs_fail_under_ci_only(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    outside = _pytest(tmp_path, ci=False)
    assert outside.returncode == 0, outside.stdout
    assert "3 skipped" in outside.stdout and "failed" not in outside.stdout
    under_ci = _pytest(tmp_path, ci=True)
    assert under_ci.returncode == 1, under_ci.stdout
    summary = under_ci.stdout.strip().splitlines()[-1]
    # pytest.skip() in the test fails it; a skipif marker acts at set-up, so it becomes an error
    assert "1 failed" in summary and "1 error" in summary and "1 skipped" in summary, summary
    assert under_ci.stdout.count("skipped under CI, where it must run: sometool is not installed") >= 2


def test_a_module_skipped_at_import_for_what_make_test_installs_stops_a_ci_run(tmp_path):
    (tmp_path / "test_module_skip.py").write_text(SAMPLE)
    assert _pytest(tmp_path, ci=False).returncode == 5  # all skipped: nothing collected, nothing failed
    under_ci = _pytest(tmp_path, ci=True)
    assert under_ci.returncode == 2, under_ci.stdout  # a collection error interrupts the run
    assert "skipped under CI, where it must run" in under_ci.stdout and "no_such_module_here" in under_ci.stdout
