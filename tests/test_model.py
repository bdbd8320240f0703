"""Model loading, its checks against the metadata, predict, backends and default paths.

Real ``.tflite`` files built by the real converter (see ``runtime_fixtures.py``), run
by a real interpreter.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_ser.backends import load_backend
from edge_ser.errors import BackendError, ModelError
from edge_ser.model import Model, softmax
from edge_ser.paths import MODEL_ENV_VAR, candidate_model_paths, default_model_path, resolve_model_path
from runtime_fixtures import ROOT, WINDOW_FRAMES, test_models  # noqa: F401  (fixture)


def test_int8_model_loads_and_describes_its_tensors(test_models):
    model = Model.load(test_models["int8"])
    assert model.input.shape == (1, WINDOW_FRAMES, 64, 1)
    assert model.input.dtype == np.int8 and model.input.quantized
    assert model.output.shape == (1, 8) and model.output.dtype == np.int8
    assert model.output.scale == pytest.approx(1 / 256) and model.output.zero_point == -128
    assert model.labels[0] == "neutral" and len(model.labels) == 8
    name, rest = model.model_id.split("@")
    version, digest = rest.split("#")
    assert (name, version) == ("edge-ser-test", "test-1")
    assert model.sha256.startswith(digest) and len(digest) == 12
    assert model.backend_name in ("litert", "tflite-runtime", "tensorflow")
    info = model.describe()
    json.dumps(info)  # plain data
    assert info["input"]["dtype"] == "int8" and info["extra"]["metrics"]["uar"] == 0.125


def test_predict_returns_one_probability_row_per_window(test_models):
    model = Model.load(test_models["int8"], num_threads=1)
    windows = np.random.default_rng(0).standard_normal((3, WINDOW_FRAMES, 64)).astype(np.float32)
    probs = model.predict(windows)
    assert probs.shape == (3, 8) and probs.dtype == np.float32
    assert (probs >= 0).all() and (probs <= 1).all()
    # a dequantized int8 softmax sums to 1 within a few steps of 1/256
    assert np.allclose(probs.sum(axis=1), 1.0, atol=8 / 256)
    # batch answers equal one-by-one answers: no state leaks between windows
    assert np.array_equal(probs[1], model.predict(windows[1:2])[0])
    assert np.array_equal(probs[2], model.predict(windows[2])[0])


def test_predict_quantizes_by_rounding_and_saturating(test_models):
    model = Model.load(test_models["int8"])
    scale, zero = model.input.scale, model.input.zero_point
    rng = np.random.default_rng(1)
    window = rng.standard_normal((1, WINDOW_FRAMES, 64)).astype(np.float32) * 50  # far outside int8 range
    q = model._quantize(window[0])
    expected = np.clip(np.round(window[0] / scale) + zero, -128, 127).astype(np.int8).reshape(q.shape)
    assert q.dtype == np.int8 and np.array_equal(q, expected)
    assert q.min() == -128 and q.max() == 127
    clipped = (np.clip(window, (-128 - zero) * scale, (127 - zero) * scale)).astype(np.float32)
    assert np.array_equal(model.predict(window), model.predict(clipped))


def test_float_logits_model_gets_softmax_applied(test_models):
    path = test_models["float_logits"]
    model = Model.load(path)
    assert model.input.shape == (1, WINDOW_FRAMES, 64) and not model.input.quantized
    windows = np.random.default_rng(2).standard_normal((2, WINDOW_FRAMES, 64)).astype(np.float32)
    probs = model.predict(windows)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # the raw graph output is logits: compare with an interpreter driven by hand
    raw = []
    interpreter = model.backend.make_interpreter(Path(path).read_bytes())
    for w in windows:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], w[None])
        interpreter.invoke()
        raw.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    logits = np.array(raw)
    assert not np.allclose(logits.sum(axis=1), 1.0)
    assert np.allclose(probs, softmax(logits), atol=1e-6)


def test_predict_rejects_windows_of_the_wrong_shape(test_models):
    model = Model.load(test_models["int8"])
    with pytest.raises(ValueError, match=r"\(N, 300, 64\)"):
        model.predict(np.zeros((1, 200, 64), np.float32))


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_metadata", "has no edge-ser metadata"),
        ("wrong_labels", r"output tensor shape \[1, 8\] does not match the metadata's 6 labels"),
        ("wrong_window", r"input tensor shape \[1, 300, 64, 1\] does not match the metadata: expected \[1, 200, 64\]"),
    ],
)
def test_inconsistent_models_are_refused_with_the_reason(test_models, name, message):
    with pytest.raises(ModelError, match=message):
        Model.load(test_models[name])


def test_missing_unreadable_and_non_tflite_files(tmp_path, test_models):
    with pytest.raises(ModelError, match="model file not found"):
        Model.load(tmp_path / "nope.tflite")
    with pytest.raises(ModelError, match="is a directory"):
        Model.load(tmp_path)
    text = tmp_path / "text.tflite"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="not a TFLite model"):
        Model.load(text)
    data = Path(test_models["int8"]).read_bytes()
    for cut in (len(data) // 2, 64, 12):
        truncated = tmp_path / f"cut{cut}.tflite"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ModelError):
            Model.load(truncated)


# -- backends ---------------------------------------------------------------------------


def test_unknown_backend_name_is_a_backend_error(test_models):
    with pytest.raises(BackendError, match="unknown interpreter backend 'onnx'.*litert, tflite-runtime, tensorflow"):
        Model.load(test_models["int8"], backend="onnx")


def test_backend_env_var_is_honoured(monkeypatch):
    monkeypatch.setenv("EDGE_SER_BACKEND", "litert")
    if importlib.util.find_spec("ai_edge_litert") is None:
        with pytest.raises(BackendError, match="'litert' is not installed.*pip install ai-edge-litert"):
            load_backend()
    else:
        assert load_backend().name == "litert"
    # an explicit argument wins over the environment
    if importlib.util.find_spec("tflite_runtime") is not None and "tensorflow" not in sys.modules:
        assert load_backend("tflite-runtime").name == "tflite-runtime"


_NO_BACKEND = """
import sys
for name in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
    sys.modules[name] = None  # makes 'import name' fail as if the package were absent
from edge_ser.errors import BackendError
from edge_ser.model import Model
try:
    Model.load(sys.argv[1])
except BackendError as exc:
    print(exc)
"""


def test_no_backend_installed_says_what_to_pip_install(test_models):
    proc = subprocess.run([sys.executable, "-c", _NO_BACKEND, str(test_models["int8"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("no TFLite interpreter found")
    assert "litert:" in out and "tflite-runtime:" in out and "tensorflow:" in out
    assert f"For Python {sys.version_info.major}.{sys.version_info.minor}: pip install ai-edge-litert" in out


_WITH_TENSORFLOW = """
import sys
import tensorflow  # noqa: F401  (loaded first, as in a training process)
import numpy as np
from edge_ser.model import Model
model = Model.load(sys.argv[1])
print(model.backend_name, float(model.predict(np.zeros((1, 300, 64), np.float32)).sum()))
"""


def test_tensorflow_interpreter_is_used_when_tensorflow_is_loaded(test_models):
    """tflite_runtime next to TensorFlow crashes (vector::reserve); TF's own interpreter must win."""
    if importlib.util.find_spec("tensorflow") is None:  # find, not import: keep TF out of this process
        pytest.skip("TensorFlow is not installed here")
    proc = subprocess.run([sys.executable, "-c", _WITH_TENSORFLOW, str(test_models["int8"])],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr
    name, total = proc.stdout.split()
    assert name == "tensorflow" and abs(float(total) - 1.0) < 8 / 256


# -- default model location -------------------------------------------------------------


def test_default_model_comes_from_the_environment(monkeypatch, test_models, tmp_path):
    monkeypatch.setenv(MODEL_ENV_VAR, str(test_models["int8"]))
    assert default_model_path() == Path(test_models["int8"])
    assert resolve_model_path(None) == Path(test_models["int8"])
    assert resolve_model_path(tmp_path / "x.tflite") == tmp_path / "x.tflite"  # explicit wins
    monkeypatch.setenv(MODEL_ENV_VAR, str(tmp_path / "typo.tflite"))
    with pytest.raises(ModelError, match="EDGE_SER_MODEL=.*typo.tflite: model file not found"):
        default_model_path()


def test_default_model_search_order_and_error(monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    candidates = candidate_model_paths()
    assert candidates[1] == ROOT / "models" / "edge-ser-int8.tflite"  # source checkout
    assert Path("/opt/edge-ser/models/edge-ser-int8.tflite") in candidates
    if any(p.is_file() for p in candidates):
        assert default_model_path() == next(p for p in candidates if p.is_file())
    else:
        with pytest.raises(ModelError) as info:
            default_model_path()
        for path in candidates:
            assert str(path) in str(info.value)


def test_thread_count_from_argument_or_environment(monkeypatch, test_models):
    monkeypatch.setenv("EDGE_SER_NUM_THREADS", "2")
    assert Model.load(test_models["int8"]).num_threads == 2
    assert Model.load(test_models["int8"], num_threads=1).num_threads == 1  # argument wins
    monkeypatch.setenv("EDGE_SER_NUM_THREADS", "lots")
    with pytest.raises(BackendError, match="EDGE_SER_NUM_THREADS='lots'"):
        Model.load(test_models["int8"])
    monkeypatch.delenv("EDGE_SER_NUM_THREADS")
    assert Model.load(test_models["int8"]).num_threads is None
    with pytest.raises(BackendError, match="1 or more"):
        Model.load(test_models["int8"], num_threads=0)


def test_xnnpack_switch_from_argument_or_environment(monkeypatch, test_models):
    windows = np.random.default_rng(3).standard_normal((2, WINDOW_FRAMES, 64)).astype(np.float32)
    monkeypatch.setenv("EDGE_SER_XNNPACK", "0")
    builtin = Model.load(test_models["int8"])
    assert builtin.xnnpack is False and builtin.describe()["xnnpack"] is False
    assert Model.load(test_models["int8"], xnnpack=True).xnnpack is True  # argument wins
    monkeypatch.setenv("EDGE_SER_XNNPACK", "maybe")
    with pytest.raises(BackendError, match="EDGE_SER_XNNPACK='maybe'"):
        Model.load(test_models["int8"])
    monkeypatch.delenv("EDGE_SER_XNNPACK")
    default = Model.load(test_models["int8"])
    assert default.xnnpack is True
    # both kernel sets run the model and give probabilities (equality is backend-specific:
    # see test_backends_parity.py)
    for model in (builtin, default):
        assert np.allclose(model.predict(windows).sum(axis=1), 1.0, atol=8 / 256)
