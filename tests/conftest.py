"""Shared test fixtures: where the repository, the shipped model and the corpora are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGE_SER_SHARED", ROOT.parent / "shared"))
RAVDESS = SHARED / "datasets" / "ravdess"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


#: Every skip for a missing corpus says this, so the end of the run can count them.
CORPUS_MISSING = "corpus not found at"


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    """The RAVDESS corpus beside the project; tests needing it skip when it is absent."""
    if not (RAVDESS / "Actor_01").is_dir():
        pytest.skip(f"RAVDESS {CORPUS_MISSING} {RAVDESS} (set EDGE_SER_SHARED)")
    return RAVDESS


#: Every skip for a tool or package that ``make test`` installs says this. Under CI (``CI`` set,
#: as ``.ci/run`` sets it) ``make test`` has just installed them all, so such a skip means a
#: broken set-up, and :func:`pytest_runtest_makereport` turns it into a failure instead of
#: letting a test that never ran look green.
MAKE_TEST_INSTALLS = "make test installs it"


def _skip_reason(report) -> str:
    """The reason a skipped report gives (pytest stores it as ``(file, line, reason)``)."""
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")


def _fail_if_ci_skipped_what_make_test_installs(report) -> None:
    if not (report.skipped and os.environ.get("CI")):
        return
    reason = _skip_reason(report)
    if MAKE_TEST_INSTALLS in reason:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where it must run: {reason.removeprefix('Skipped: ')}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_ci_skipped_what_make_test_installs(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """The same for a whole module skipped at import (TensorFlow, hypothesis: the dev environment)."""
    outcome = yield
    _fail_if_ci_skipped_what_make_test_installs(outcome.get_result())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say at the very end (after the short summary) how many tests skipped for want of corpora.

    A clone without ``../shared`` skips a large part of the suite; one line among the
    dots is easy to miss, so the count and the place looked in close the report."""
    yield
    missing = 0
    for report in terminalreporter.stats.get("skipped", []):
        missing += CORPUS_MISSING in _skip_reason(report)
    if missing:
        terminalreporter.write_sep("=", "corpora missing", yellow=True, bold=True)
        terminalreporter.write_line(
            f"{missing} test(s) SKIPPED because the corpora were not found: looked for "
            f"{RAVDESS / 'Actor_01'} (set EDGE_SER_SHARED to the folder holding datasets/)", yellow=True, bold=True)
