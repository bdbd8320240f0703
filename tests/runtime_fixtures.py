"""Fixtures for the runtime tests: small real models, synthesized clips, the CLI.

**Models.** Build small but real ``.tflite`` models for the runtime tests.

The shipped model may not exist yet (it is trained separately), and the tests must
also cover models that are *wrong* in specific ways. This script trains nothing: it
builds a tiny Keras CNN with fixed random weights, converts it with the real TFLite
converter (full int8, like the shipped model, or float) and embeds metadata with the
real converter code. It runs in its own process (``python tests/runtime_fixtures.py
OUTDIR``) because importing TensorFlow in the test process would clash with
tflite_runtime; :func:`build_models` does that and caches the result per script
version.

Models written (file -> what it is for):

* ``int8.tflite``: int8 in/out, softmax, input ``[1, 300, 64, 1]``, the edge preset's
  features, 8 RAVDESS labels: a stand-in for the shipped model.
* ``float_logits.tflite``: float32 in/out, *logits* output, input ``[1, 300, 64]``.
* ``no_metadata.tflite``: ``int8.tflite`` before metadata was embedded.
* ``wrong_labels.tflite``: metadata with 6 labels on an 8-output model.
* ``wrong_window.tflite``: metadata saying 200 frames on a 300-frame input.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import pytest

WINDOW_FRAMES = 300
HOP_FRAMES = 100
NAMES = ("int8", "float_logits", "no_metadata", "wrong_labels", "wrong_window")
ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_ON_DEVICE = ("tensorflow", "keras", "librosa", "scipy", "numba", "sklearn")


def build_models(cache_root: Path) -> Dict[str, Path]:
    """Paths of the test models, building them (about 20 s) unless cached."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    out = Path(cache_root) / digest
    paths = {name: out / f"{name}.tflite" for name in NAMES}
    if all(p.is_file() for p in paths.values()):
        return paths
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"building test models failed:\n{proc.stdout}\n{proc.stderr}")
    return paths


@pytest.fixture(scope="session")
def test_models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """The models above, cached in pytest's cache folder between runs (when it is enabled)."""
    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("edge-ser-test-models") if cache is not None else tmp_path_factory.mktemp("models")
    return build_models(Path(root))


# ---------------------------------------------------------------------------------------
# Clips


def tone(seconds: float, rate: int = 16000, f0: float = 180.0, seed: int = 0) -> "np.ndarray":
    """A harmonic tone with a syllable-like envelope and a little noise, float32 in [-1, 1]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    voiced = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t))
    x = 0.2 * voiced * envelope + 0.01 * rng.standard_normal(t.size)
    return (0.8 * x / max(1e-9, float(np.abs(x).max()))).astype(np.float32)


def noise(seconds: float, rate: int = 16000, seed: int = 1) -> "np.ndarray":
    import numpy as np

    return (0.3 * np.random.default_rng(seed).standard_normal(int(round(seconds * rate)))).clip(-1, 1).astype(np.float32)


def espeak_wav(text: str, path: Path, rate: int = 16000, voice: str = "en") -> Path:
    """Speech synthesized by espeak-ng, converted by sox to ``rate`` Hz mono 16-bit."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox are needed to synthesize speech; make test installs it")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(path)], check=True, capture_output=True)
    raw.unlink()
    return path


# ---------------------------------------------------------------------------------------
# Running edge-ser in a fresh process


def run_edge_ser(
    args: Sequence[str], stdin: Optional[bytes] = None, env: Optional[Dict[str, str]] = None,
    python: Optional[str] = None, timeout: float = 120,
) -> "subprocess.CompletedProcess[str]":
    """``python -m edge_ser ARGS`` from the checkout, with text stdout/stderr."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    proc = subprocess.run(
        [python or sys.executable, "-m", "edge_ser", *args], input=stdin, env=full_env,
        capture_output=True, timeout=timeout, cwd=str(ROOT),
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


def _main(out_dir: str) -> None:
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from converter.tflite_metadata import embed_metadata
    from edge_ser.features import preset
    from edge_ser.metadata import EMOTIONS, ModelMetadata

    tf.keras.utils.set_random_seed(7)
    out = Path(out_dir)
    config = preset("edge")
    n_feat = config.n_features

    def cnn(channel_axis: bool, softmax: bool) -> "tf.keras.Model":
        shape = (WINDOW_FRAMES, n_feat, 1) if channel_axis else (WINDOW_FRAMES, n_feat)
        inputs = tf.keras.Input(shape=shape, batch_size=1)
        x = inputs if channel_axis else tf.keras.layers.Reshape((WINDOW_FRAMES, n_feat, 1))(inputs)
        x = tf.keras.layers.Conv2D(4, 5, strides=4, activation="relu")(x)
        x = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        x = tf.keras.layers.Dense(len(EMOTIONS))(x)
        if softmax:
            x = tf.keras.layers.Softmax()(x)
        return tf.keras.Model(inputs, x)

    rng = np.random.default_rng(0)

    def representative():
        for _ in range(16):
            yield [rng.standard_normal((1, WINDOW_FRAMES, n_feat, 1)).astype(np.float32)]

    def convert(model: "tf.keras.Model", int8: bool) -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return converter.convert()

    meta = ModelMetadata(
        labels=EMOTIONS, feature_config=config, window_frames=WINDOW_FRAMES, hop_frames=HOP_FRAMES,
        name="edge-ser-test", version="test-1",
        extra={"purpose": "runtime tests; random weights, not trained", "metrics": {"uar": 0.125}},
    )
    int8_bytes = convert(cnn(channel_axis=True, softmax=True), int8=True)
    (out / "no_metadata.tflite").write_bytes(int8_bytes)
    (out / "int8.tflite").write_bytes(embed_metadata(int8_bytes, meta))
    (out / "wrong_labels.tflite").write_bytes(
        embed_metadata(int8_bytes, dataclasses.replace(meta, labels=EMOTIONS[:6]))
    )
    (out / "wrong_window.tflite").write_bytes(
        embed_metadata(int8_bytes, dataclasses.replace(meta, window_frames=200))
    )
    float_bytes = convert(cnn(channel_axis=False, softmax=False), int8=False)
    (out / "float_logits.tflite").write_bytes(
        embed_metadata(float_bytes, dataclasses.replace(meta, output="logits", name="edge-ser-float"))
    )


if __name__ == "__main__":
    _main(sys.argv[1])
