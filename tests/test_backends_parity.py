"""Same model, same clips, two interpreters: tflite-runtime (numpy 1) and LiteRT (numpy 2).

tflite-runtime runs in this (dev) environment, LiteRT in ``.venv-litert`` (``make
litert-env``), each in its own fresh process so neither is affected by what the test
process has imported. The small test model is checked the same way as the shipped one
so the comparison itself is exercised before the shipped model exists.

Why not bit-identical: two things differ between the environments, both measured on
the test model (see the runtime report):

* the features: numpy 1.26 and 2.4 FFTs differ in the last float32 bits (up to
  ~1e-6), which can flip the rounding of a quantized input that sits on a boundary;
* the kernels: with *identical* int8 inputs, LiteRT 2.3's XNNPACK delegate and
  tflite-runtime 2.14 differ by one output step in some values (their builtin
  kernels, XNNPACK disabled, agree exactly).

So the contract checked here is: every probability within one output quantization
step (1/256 for an int8 softmax), and the same top-1 whenever the reference's top-1
leads by more than two steps (closer calls may legitimately swap).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from edge_ser.wav import write_wav
from runtime_fixtures import ROOT, espeak_wav, noise, test_models, tone  # noqa: F401  (fixture)

LITERT_PYTHON = ROOT / ".venv-litert" / "bin" / "python"
SHIPPED = ROOT / "models" / "edge-ser-int8.tflite"

_CLASSIFY = """
import json, sys
from edge_ser.classify import Classifier
clf = Classifier(sys.argv[1], backend=sys.argv[2])
out = {"backend": clf.backend_name, "version": clf.model.backend.version, "results": {}}
for path in sys.argv[3:]:
    p = clf.classify_file(path)
    out["results"][path] = {"label": p.label, "probabilities": [p.probabilities[k] for k in clf.labels]}
import numpy
out["numpy"] = numpy.__version__
print(json.dumps(out))
"""


def _run(python: Path, model: Path, backend: str, clips: List[str]) -> Dict:
    proc = subprocess.run([str(python), "-c", _CLASSIFY, str(model), backend, *clips], capture_output=True,
                          text=True, timeout=300, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _litert_python() -> Path:
    if not LITERT_PYTHON.is_file():
        pytest.skip(f"{LITERT_PYTHON} is absent: create it with 'make litert-env'")
    return LITERT_PYTHON


@pytest.fixture(scope="module")
def clips(tmp_path_factory, ravdess_dir) -> List[str]:
    d = tmp_path_factory.mktemp("parity")
    corpus = [ravdess_dir / f"Actor_{actor:02d}" / f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav"
              for actor, emotion in [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (7, 6), (8, 7)]]
    corpus.append(ravdess_dir / "Actor_10" / "03-01-08-02-02-02-10.wav")
    write_wav(d / "tone.wav", tone(2.5), 16000)
    write_wav(d / "noise_48k.wav", noise(4.2, rate=48000), 48000)
    speech = espeak_wav("Kids are talking by the door.", d / "speech.wav")
    return [str(p) for p in corpus] + [str(d / "tone.wav"), str(d / "noise_48k.wav"), str(speech)]


def _output_step(model: Path) -> float:
    """One quantization step of the output (0 for a float model), read by the device's own code."""
    code = "import sys; from edge_ser.model import Model; print(Model.load(sys.argv[1]).output.scale)"
    proc = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split()[-1])


def _compare(model: Path, clips: List[str]) -> None:
    if sys.version_info >= (3, 12):
        pytest.skip("tflite-runtime has no wheels for this Python")
    reference = _run(Path(sys.executable), model, "tflite-runtime", clips)
    litert = _run(_litert_python(), model, "litert", clips)
    assert reference["backend"] == "tflite-runtime" and reference["numpy"].startswith("1.")
    assert litert["backend"] == "litert" and litert["numpy"].startswith("2.")
    assert list(reference["results"]) == list(litert["results"]) == clips
    step = _output_step(model)
    for clip in clips:
        a, b = reference["results"][clip], litert["results"][clip]
        pa, pb = np.array(a["probabilities"]), np.array(b["probabilities"])
        assert np.abs(pa - pb).max() <= step + 1e-6, (clip, pa, pb)
        runner_up = np.sort(pa)[-2]
        if pa.max() - runner_up > 2 * step + 1e-6:
            assert a["label"] == b["label"], clip


def test_shipped_model_same_answers_on_tflite_runtime_and_litert(clips):
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(ROOT)} is missing (the trained model is not shipped yet)")
    _compare(SHIPPED, clips)


def test_test_model_same_answers_on_tflite_runtime_and_litert(clips, test_models):
    _compare(Path(test_models["int8"]), clips)


def test_tflite_runtime_with_numpy_2_gives_the_fix_not_a_crash(test_models):
    python = _litert_python()
    probe = subprocess.run([str(python), "-c", "import tflite_runtime, numpy; print(numpy.__version__)"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("tflite-runtime is not installed in .venv-litert ('make litert-env' installs it)")
    assert probe.stdout.startswith("2.")
    clip = ROOT / "examples" / "we-won.wav"
    proc = subprocess.run([str(python), "-m", "edge_ser", "classify", str(clip), "--model", str(test_models["int8"]),
                           "--backend", "tflite-runtime"], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"edge-ser: error: tflite-runtime 2.14.0 does not work with numpy {probe.stdout.strip()} (it was built for "
        "numpy 1). Fix: pip install 'numpy<2', or use LiteRT instead: pip install ai-edge-litert"
    )
    assert proc.stdout == ""
    # the same environment's default choice is LiteRT, which works
    ok = subprocess.run([str(python), "-m", "edge_ser", "classify", str(clip), "--json", "--model",
                         str(test_models["int8"])], capture_output=True, text=True, timeout=120,
                        cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT), EDGE_SER_BACKEND=""))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["backend"] == "litert"
