"""edge-ser: offline speech emotion recognition for Raspberry Pi-class devices.

The device path (this package) needs only NumPy and a TFLite interpreter.

    >>> from edge_ser import Classifier
    >>> Classifier().classify_file("clip.wav").label      # doctest: +SKIP
    'happy'

The names below are imported on first use (PEP 562), so ``import edge_ser`` stays cheap
and does not load NumPy or an interpreter until something needs them.
"""

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Classifier": "edge_ser.classify",
    "Prediction": "edge_ser.classify",
    "WindowPrediction": "edge_ser.classify",
    "predict_emotion": "edge_ser.classify",
    "Model": "edge_ser.model",
    "ModelMetadata": "edge_ser.metadata",
    "EdgeSerError": "edge_ser.errors",
    "AudioError": "edge_ser.errors",
    "ModelError": "edge_ser.errors",
    "BackendError": "edge_ser.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edge_ser' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_LAZY))
