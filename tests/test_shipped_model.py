"""The shipped model (``models/edge-ser-int8.tflite``) is what its metadata says it is.

Everything runs in a fresh subprocess with ``tflite_runtime`` (the device runtime),
which must not share a process with TensorFlow. The accuracy check uses a fixed set of
RAVDESS clips (2 per class for 4 actors, 64 clips). The shipped model was trained on all
20 actors (and on nEMO and ASED), so these are *training* clips: the check guards against
a broken export (wrong labels order, wrong features, a bad quantization), not a claim
about new speakers; the speaker-independent, far-field and cross-corpus figures are in
``models/results/protocol.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "edge-ser-int8.tflite"
ACTORS = ("01", "02", "03", "04")
PER_CLASS = 2
#: Measured top-1 accuracy of the shipped model on this set: see models/MODEL_CARD.md.
#: The model before (rooms-ravdess-half) measured 0.875 here; rooms-long-pcen 0.953 with tf.lite in
#: its training run (61 of 64); the floor sits
#: more than 10 points below it, leaving room for runtime differences and a retrain, while a
#: broken export (wrong label order or features: about chance, 12.5 %) fails.
ACCURACY_FLOOR = 0.75

PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from tflite_runtime.interpreter import Interpreter
    from edge_ser.metadata import load_metadata
    model_path, clips = sys.argv[1], json.loads(sys.argv[2])
    meta = load_metadata(model_path)
    it = Interpreter(model_path=model_path)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ops = sorted({d["op_name"] for d in it._get_ops_details()})
    dtypes = sorted({np.dtype(d["dtype"]).name for d in it.get_tensor_details()})
    result = {
        "labels": list(meta.labels), "window_frames": meta.window_frames, "hop_frames": meta.hop_frames,
        "n_features": meta.feature_config.n_features, "feature_hash": meta.feature_hash,
        "output": meta.output, "extra": meta.extra,
        "input_shape": [int(d) for d in inp["shape"]], "input_dtype": np.dtype(inp["dtype"]).name,
        "output_shape": [int(d) for d in out["shape"]], "output_dtype": np.dtype(out["dtype"]).name,
        "ops": ops, "tensor_dtypes": dtypes, "predictions": [],
    }
    if clips:
        from edge_ser.classify import Classifier
        clf = Classifier(model_path, backend="tflite-runtime")
        result["predictions"] = [clf.classify_file(p).label for p in clips]
    print(json.dumps(result))
""")


def probe(clips=()) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(MODEL), json.dumps(list(clips))],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def described() -> dict:
    assert MODEL.is_file(), f"shipped model missing: {MODEL}"
    return probe()


#: The device budget of issue 12: a full-int8 file of at most 1 MB.
SIZE_LIMIT = 1_000_000


def test_size_limit():
    assert MODEL.stat().st_size <= SIZE_LIMIT


def test_metadata_matches_tensors(described):
    from edge_ser.features import preset
    from edge_ser.metadata import EMOTIONS

    assert described["labels"] == list(EMOTIONS)
    assert described["input_shape"] == [1, described["window_frames"], described["n_features"], 1]
    # log-mel and PCEN side by side (64 + 64 columns), for an ensemble whose members read a block each
    assert described["window_frames"] == 300 and described["n_features"] == 128
    assert described["output_shape"] == [1, len(EMOTIONS)]
    assert described["input_dtype"] == "int8" and described["output_dtype"] == "int8"
    assert described["output"] == "logits"  # the device applies the softmax in float
    assert described["feature_hash"] == preset("edge-db-pcen").hash()
    assert 0 < described["hop_frames"] <= described["window_frames"]


def test_metadata_records_provenance(described):
    from converter.protocol import ENSEMBLES, RECIPES

    extra = described["extra"]
    assert extra["corpora"] == ["ased", "nemo", "ravdess"]
    assert "python -m converter train" in extra["command"] and "--recipe" in extra["command"]
    assert (extra["recipe_name"] in RECIPES or extra["recipe_name"] in ENSEMBLES) and extra["params"] > 10_000
    # another recipe's cross-validation is not this model's: only the protocol results are carried
    assert extra["cv"] is None and extra["cv_recipe_matches"] is False
    results = extra["protocol_results"]
    assert results["recipe"] == extra["recipe_name"]
    dev = results["dev"]
    assert set(dev["by_corpus"]) == {"ravdess", "nemo", "ased"}
    assert 0.125 < dev["by_corpus"]["ravdess"] <= 1.0 and 0.125 < dev["farfield_ua"] <= 1.0
    assert results["cv"]["folds"] >= 1 and 0.125 < results["cv"]["clean_ua"] <= 1.0


def test_graph_is_integer_only(described):
    assert set(described["tensor_dtypes"]) <= {"int8", "int32"}, described["tensor_dtypes"]
    # no float tensors (above), so a QUANTIZE op can only requantize int8 to int8 (an ensemble's
    # members meet at their averaged logits, each on its own scale); no DEQUANTIZE back to float
    assert "DEQUANTIZE" not in described["ops"]
    assert "SOFTMAX" not in described["ops"]  # a logits model: no int8 softmax steps of 1/256


def fixed_clips(root: Path):
    """2 clips per class for each of 4 actors, first by file name: 64 clips."""
    from converter.corpora import read_ravdess
    from edge_ser.metadata import EMOTIONS

    items = [it for it in read_ravdess(root) if it.speaker in ACTORS]
    chosen = []
    for actor in ACTORS:
        for label in EMOTIONS:
            group = sorted((it for it in items if it.speaker == actor and it.label == label), key=lambda i: i.path)
            chosen += group[:PER_CLASS]
    return chosen


def test_accuracy_on_fixed_corpus_clips(ravdess_dir):
    clips = fixed_clips(ravdess_dir)
    assert len(clips) == len(ACTORS) * 8 * PER_CLASS
    result = probe([c.path for c in clips])
    correct = sum(pred == c.label for pred, c in zip(result["predictions"], clips))
    accuracy = correct / len(clips)
    assert accuracy >= ACCURACY_FLOOR, f"top-1 accuracy {accuracy:.3f} below the floor {ACCURACY_FLOOR}"
