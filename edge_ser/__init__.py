"""edge-ser: offline speech emotion recognition for Raspberry Pi-class devices.

The device path (this package) needs only NumPy and a TFLite interpreter.

    >>> from edge_ser import Classifier
    >>> Classifier().classify_file("clip.wav").label      # doctest: +SKIP
    'happy'

The names below are imported on first use (PEP 562), so ``import edge_ser`` stays cheap
and does not load NumPy or an interpreter until something needs them.
"""

from ._lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _LAZY)
