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


@pytest.fixture(scope="session")
def ravdess_dir() -> Path:
    """The RAVDESS corpus beside the project; tests needing it skip when it is absent."""
    if not (RAVDESS / "Actor_01").is_dir():
        pytest.skip(f"RAVDESS corpus not found at {RAVDESS} (set EDGE_SER_SHARED)")
    return RAVDESS
