"""The device path imports nothing heavy: checked in fresh processes, by their sys.modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from edge_ser.wav import write_wav
from runtime_fixtures import FORBIDDEN_ON_DEVICE, ROOT, test_models, tone  # noqa: F401  (fixture)

_CLASSIFY_AND_LIST_MODULES = """
import json, sys
from edge_ser import Classifier, predict_emotion
clf = Classifier(sys.argv[1])
pred = clf.classify_file(sys.argv[2])
label, percent = predict_emotion(sys.argv[2], sys.argv[1])
print(json.dumps({"label": pred.label, "backend": clf.backend_name, "modules": sorted(sys.modules)}))
"""


def _top_level(modules):
    return {name.split(".")[0] for name in modules}


def _run(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_classifying_a_file_loads_no_heavy_library(test_models, tmp_path):
    clip = tmp_path / "clip.wav"
    write_wav(clip, tone(3.5, rate=22050), 22050)  # a resampling path too
    result = _run(_CLASSIFY_AND_LIST_MODULES, str(test_models["int8"]), str(clip))
    loaded = _top_level(result["modules"])
    assert "edge_ser" in loaded and "numpy" in loaded  # the check really saw the modules
    assert result["backend"] in ("litert", "tflite-runtime")
    assert loaded.isdisjoint(FORBIDDEN_ON_DEVICE), sorted(loaded & set(FORBIDDEN_ON_DEVICE))


def test_cli_commands_load_no_heavy_library(test_models, tmp_path):
    clip = tmp_path / "clip.wav"
    write_wav(clip, tone(1.0), 16000)
    code = (
        "import json, sys, contextlib, io\n"
        "from edge_ser.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    codes = [main(['classify', '--json', '--model', sys.argv[1], sys.argv[2]]),\n"
        "             main(['info', sys.argv[1]])]\n"
        "print(json.dumps({'codes': codes, 'modules': sorted(sys.modules)}))\n"
    )
    result = _run(code, str(test_models["int8"]), str(clip))
    assert result["codes"] == [0, 0]
    loaded = _top_level(result["modules"])
    assert loaded.isdisjoint(FORBIDDEN_ON_DEVICE), sorted(loaded & set(FORBIDDEN_ON_DEVICE))


def test_importing_the_package_is_cheap():
    result = _run("import json, sys, edge_ser; print(json.dumps({'modules': sorted(sys.modules)}))")
    loaded = _top_level(result["modules"])
    assert "numpy" not in loaded and "tflite_runtime" not in loaded and "ai_edge_litert" not in loaded
