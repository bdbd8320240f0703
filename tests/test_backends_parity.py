"""Same model, same clips, two interpreters: tflite-runtime (numpy 1) and LiteRT (numpy 2).

tflite-runtime runs in this (dev) environment, LiteRT in ``.venv-litert`` (``make
litert-env``), each in its own fresh process so neither is affected by what the test
process has imported. The small test model is checked the same way as the shipped one
so the comparison itself is exercised before (and whether or not) the shipped model
exists.

What is and is not identical, measured on the shipped model (see the runtime report):

* **Kernels.** Fed the *same* int8 windows, TFLite's builtin kernels give bit-identical
  outputs in tflite-runtime 2.14 and LiteRT 2.3 (tflite-runtime's XNNPACK does not take
  these int8 ops, so its default equals builtin). LiteRT's XNNPACK int8 kernels round
  differently: 215 of 664 output values differed, by up to 7 steps of 1/256, on 83
  windows of 40 clips. XNNPACK is still LiteRT's default here because it is ~3.6x
  faster; ``--no-xnnpack`` / ``EDGE_SER_XNNPACK=0`` gives the reproducible kernels.
* **Features.** numpy 1.26 and 2.4 FFTs differ in the last float32 bits (~1e-6),
  which now and then flips the rounding of a quantized input on a boundary (3 of
  57,600 inputs on 1 of 240 clips), moving one output by one step.

* **The protocol.** The converter scores int8 models in TensorFlow's interpreter, whose
  default XNNPACK kernels give LiteRT's default outputs bit for bit on the same windows, so
  protocol.md's int8 figures are what a LiteRT device computes.

So the contracts checked: identical int8 windows -> identical outputs with builtin
kernels, and the protocol's runner's outputs equal to LiteRT's XNNPACK ones; end to end
with builtin kernels, probabilities within one output step and nearly all clips
bit-identical; with LiteRT's XNNPACK, within 8 steps; and the same top-1 whenever the
reference leads by more than twice the allowed difference.
"""

from __future__ import annotations

import importlib.util
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
import numpy
from edge_ser.classify import Classifier
model, backend, xnnpack, *clips = sys.argv[1:]
clf = Classifier(model, backend=backend, xnnpack=xnnpack == "on")
out = {"backend": clf.backend_name, "numpy": numpy.__version__, "results": {}}
for path in clips:
    p = clf.classify_file(path)
    out["results"][path] = {"label": p.label, "probabilities": [p.probabilities[k] for k in clf.labels]}
print(json.dumps(out))
"""

_WINDOWS = """
import json, sys
import numpy
from edge_ser.model import Model
model, backend, windows, *xnnpack = sys.argv[1:]
m = Model.load(model, backend=backend, xnnpack=xnnpack == ["on"])
print(json.dumps({"backend": m.backend_name, "probabilities": m.predict(numpy.load(windows)).tolist()}))
"""

# the protocol's int8 scoring (converter.protocol scores int8 models through this runner)
_PROTOCOL_WINDOWS = """
import json, sys
import numpy
from converter.quantize import TFLiteRunner
from edge_ser.metadata import load_metadata
model, windows = sys.argv[1:]
out = TFLiteRunner(open(model, "rb").read()).predict(numpy.load(windows))
if load_metadata(model).output == "logits":
    out = numpy.exp(out - out.max(axis=1, keepdims=True))
    out = out / out.sum(axis=1, keepdims=True)
print(json.dumps({"probabilities": out.astype(numpy.float32).tolist()}))
"""


def _litert_python() -> Path:
    if not LITERT_PYTHON.is_file():
        pytest.skip(f"{LITERT_PYTHON} is absent ('make litert-env'); make test installs it")
    return LITERT_PYTHON


def _run(python: Path, code: str, *args: str) -> Dict:
    if sys.version_info >= (3, 12):
        pytest.skip("tflite-runtime has no wheels for this Python")
    proc = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, timeout=300,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _output_step(model: Path) -> float:
    """One quantization step of the output, read by the device's own code."""
    code = "import sys; from edge_ser.model import Model; print(Model.load(sys.argv[1]).output.scale)"
    proc = subprocess.run([sys.executable, "-c", code, str(model)], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return float(proc.stdout.split()[-1])


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


@pytest.fixture(scope="module", params=["shipped", "test"])
def model(request) -> Path:
    if request.param == "test":
        return Path(request.getfixturevalue("test_models")["int8"])
    if not SHIPPED.is_file():
        pytest.skip(f"{SHIPPED.relative_to(ROOT)} is missing (the trained model is not shipped yet)")
    return SHIPPED


@pytest.fixture(scope="module")
def reference(model, clips) -> Dict:
    """tflite-runtime as a Raspberry Pi OS Bookworm device runs it (defaults), numpy 1."""
    result = _run(Path(sys.executable), _CLASSIFY, str(model), "tflite-runtime", "on", *clips)
    assert result["backend"] == "tflite-runtime" and result["numpy"].startswith("1.")
    assert list(result["results"]) == clips
    return result["results"]


def _assert_close(reference: Dict, other: Dict, clips: List[str], tolerance: float) -> int:
    """Every probability within ``tolerance``; top-1 equal where the lead is safe. Returns identical clips."""
    identical = 0
    for clip in clips:
        a, b = reference[clip], other[clip]
        pa, pb = np.array(a["probabilities"]), np.array(b["probabilities"])
        assert np.abs(pa - pb).max() <= tolerance + 1e-6, (clip, pa, pb)
        lead = pa.max() - np.sort(pa)[-2]
        if lead > 2 * tolerance + 1e-6:
            assert a["label"] == b["label"], clip
        identical += bool(np.abs(pa - pb).max() <= 1e-6)
    return identical


def _windows_file(model: Path, clips: List[str], path: Path) -> Path:
    """The float windows of the first six clips, by the device's own code, saved to ``path``."""
    from edge_ser.audio import load_audio
    from edge_ser.features import log_mel
    from edge_ser.metadata import load_metadata
    from edge_ser.windows import split_windows

    meta = load_metadata(str(model))  # each model's own features: it refuses windows of another shape
    config = meta.feature_config
    windows = []
    for clip in clips[:6]:
        samples, _ = load_audio(clip, config.sample_rate)
        windows.append(split_windows(log_mel(samples, config), meta.window_frames, meta.hop_frames,
                                     config.n_blocks)[0])
    np.save(path, np.concatenate(windows))
    return path


def test_builtin_kernels_identical_on_identical_windows(model, clips, tmp_path):
    """The kernels alone: the same float windows through both backends, XNNPACK off."""
    path = _windows_file(model, clips, tmp_path / "windows.npy")
    a = _run(Path(sys.executable), _WINDOWS, str(model), "tflite-runtime", str(path))
    b = _run(_litert_python(), _WINDOWS, str(model), "litert", str(path))
    assert (a["backend"], b["backend"]) == ("tflite-runtime", "litert")
    assert len(a["probabilities"]) > 6
    assert a["probabilities"] == b["probabilities"]


def test_the_protocols_int8_scores_are_litert_xnnpack_outputs_on_identical_windows(model, clips, tmp_path):
    """The protocol scores int8 models in TensorFlow's interpreter (converter.quantize.TFLiteRunner),
    whose default XNNPACK kernels give LiteRT's default outputs bit for bit, so protocol.md's int8
    figures are what a LiteRT device computes; tflite-runtime's kernels (builtin) round otherwise."""
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the protocol's runner needs TensorFlow (requirements-dev.txt); make test installs it")
    path = _windows_file(model, clips, tmp_path / "windows.npy")
    protocol = _run(Path(sys.executable), _PROTOCOL_WINDOWS, str(model), str(path))
    litert = _run(_litert_python(), _WINDOWS, str(model), "litert", str(path), "on")
    assert litert["backend"] == "litert" and len(litert["probabilities"]) > 6
    np.testing.assert_allclose(protocol["probabilities"], litert["probabilities"], rtol=0, atol=1e-6)


def test_litert_builtin_kernels_match_tflite_runtime(model, clips, reference):
    litert = _run(_litert_python(), _CLASSIFY, str(model), "litert", "off", *clips)
    assert litert["backend"] == "litert" and litert["numpy"].startswith("2.")
    step = _output_step(model)
    identical = _assert_close(reference, litert["results"], clips, tolerance=step)
    # a numpy-1-vs-2 feature difference moves a clip by one step rarely (1 of 240 measured)
    assert identical >= len(clips) - 2, f"only {identical} of {len(clips)} clips bit-identical"


def test_litert_xnnpack_stays_within_8_output_steps(model, clips, reference):
    litert = _run(_litert_python(), _CLASSIFY, str(model), "litert", "on", *clips)
    assert litert["backend"] == "litert"
    _assert_close(reference, litert["results"], clips, tolerance=8 * _output_step(model))


def test_tflite_runtime_with_numpy_2_gives_the_fix_not_a_crash(test_models):
    python = _litert_python()
    probe = subprocess.run([str(python), "-c", "import tflite_runtime, numpy; print(numpy.__version__)"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("tflite-runtime is not installed in .venv-litert; make test installs it")
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
