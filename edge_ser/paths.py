"""Where the default model lives.

One rule for every front end (CLI, Python API, daemon), so "the model" means the same
file everywhere:

1. ``$EDGE_SER_MODEL`` if set (and then it must exist: a typo is an error, not a
   silent fallback to another model);
2. ``models/edge-ser-int8.tflite`` inside the installed package (wheel installs:
   ``setup.py`` copies the repository's ``models/edge-ser-int8.tflite`` there at build
   time, so ``pip install .`` classifies outside the checkout with one copy in git);
3. ``models/edge-ser-int8.tflite`` at the root of the source checkout the package was
   imported from (source tree or ``pip install -e``);
4. the system locations the device installer uses: ``/opt/edge-ser/models/`` and
   ``/usr/share/edge-ser/models/``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from .errors import ModelError

__all__ = ["MODEL_FILENAME", "MODEL_ENV_VAR", "candidate_model_paths", "default_model_path", "resolve_model_path"]

MODEL_FILENAME = "edge-ser-int8.tflite"
MODEL_ENV_VAR = "EDGE_SER_MODEL"
_PACKAGE_DIR = Path(__file__).resolve().parent
SYSTEM_MODEL_DIRS = (Path("/opt/edge-ser/models"), Path("/usr/share/edge-ser/models"))


def candidate_model_paths() -> List[Path]:
    """Places searched for the default model when ``$EDGE_SER_MODEL`` is not set, in order."""
    return [
        _PACKAGE_DIR / "models" / MODEL_FILENAME,
        _PACKAGE_DIR.parent / "models" / MODEL_FILENAME,
        *(directory / MODEL_FILENAME for directory in SYSTEM_MODEL_DIRS),
    ]


def default_model_path() -> Path:
    """The model to use when none is given, or :class:`ModelError` listing where it looked."""
    from_env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ModelError(f"{MODEL_ENV_VAR}={from_env}: model file not found")
        return path
    candidates = candidate_model_paths()
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise ModelError(
        f"no model given and none found (looked in ${MODEL_ENV_VAR}, {looked}); "
        "pass --model PATH or set EDGE_SER_MODEL"
    )


def resolve_model_path(model_path: "Optional[str | os.PathLike[str]]" = None) -> Path:
    """``model_path`` itself when given, else :func:`default_model_path`."""
    if model_path is not None and os.fspath(model_path) != "":
        return Path(os.fspath(model_path)).expanduser()
    return default_model_path()
