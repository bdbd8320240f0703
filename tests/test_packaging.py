"""``pip install .`` as the README's by-hand device install does it: the wheel alone must classify.

The wheel is built from a copy of what git would commit (so nothing else in the checkout
can help), installed into a new virtual environment that cannot see the checkout or the
test environment's packages, and run from a folder outside the checkout. Nothing here
depends on which model ships: the installed model must be the bytes of
``models/edge-ser-int8.tflite``, whatever they are.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtime_fixtures import ROOT

MODEL = ROOT / "models" / "edge-ser-int8.tflite"
PACKAGED_MODEL = "edge_ser/models/edge-ser-int8.tflite"


def _source_copy(dest: Path) -> Path:
    """What a commit would hold (tracked plus untracked-but-not-ignored files), copied to ``dest``."""
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=ROOT, capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout, cannot tell which files a clone has: {proc.stderr.decode()[-200:]}")
    for name in proc.stdout.decode().split("\0"):
        source = ROOT / name
        if name and source.is_file():  # tracked but deleted in the work tree: not in a commit either
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _clean_env() -> dict:
    """No PYTHONPATH into the checkout, no EDGE_SER_* pointing at a model or backend."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("EDGE_SER_")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MODEL.is_file():
        pytest.skip("models/edge-ser-int8.tflite is not there yet")
    src = _source_copy(tmp_path_factory.mktemp("clone"))
    out = tmp_path_factory.mktemp("wheel")
    # offline and with this environment's setuptools, as tests/test_device.py builds it
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (path,) = out.glob("edge_ser-*.whl")
    return path


def test_the_wheel_carries_the_default_model(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert PACKAGED_MODEL in names, sorted(n for n in names if "models" in n)
        assert zf.read(PACKAGED_MODEL) == MODEL.read_bytes()
    assert not any(n.startswith("models/") for n in names)  # inside the package, not a top-level folder


@pytest.mark.slow
def test_by_hand_install_classifies_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # a plain venv: no --system-site-packages, so neither the checkout nor the dev packages are visible
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = _clean_env()
    proc = subprocess.run([*pip, "-r", str(ROOT / "requirements-edge.txt")], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path, env=env)
    if proc.returncode != 0:
        pytest.skip(f"cannot install requirements-edge.txt here (no index or cache?): {proc.stderr[-400:]}")
    proc = subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr

    example = sorted((ROOT / "examples").glob("*.wav"))[0]
    clip = shutil.copy(example, tmp_path / example.name)  # outside the checkout as well
    edge_ser = str(venv / "bin" / "edge-ser")
    proc = subprocess.run([edge_ser, "classify", "--json", str(clip)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["label"] in result["probabilities"] and result["duration"] > 0

    proc = subprocess.run([edge_ser, "info", "--json"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    used = Path(info["path"])
    assert used.is_relative_to(venv) and used.as_posix().endswith(PACKAGED_MODEL), info["path"]
    assert info["sha256"] == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert result["model"] == info["model_id"]
