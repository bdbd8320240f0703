"""Classify whole clips: audio -> features -> windows -> model -> one answer.

The pipeline is the one training used, driven by the model's own metadata:

1. decode and resample to the model's sample rate (:mod:`edge_ser.audio`);
2. log-mel features with the model's :class:`~edge_ser.features.FeatureConfig`;
3. cut into the model's windows (:func:`edge_ser.windows.split_windows`: overlapping
   windows over a long clip, one centered padded window for a short one);
4. run every window and average the window probabilities.

Edge cases have defined answers rather than errors, because "this clip is empty" is
an input a microphone daemon meets every second:

* an **empty** clip (0 samples) or one **shorter than one analysis frame** gives zero
  feature frames; :func:`split_windows` turns that into one window filled with the pad
  value 0, the model is run on it, and the result has ``duration`` 0 (or the clip's
  length) and a single window;
* a **silent** clip (all samples equal) normalizes to an all-zero feature matrix, so
  it gets the same answer as the empty clip;
* a clip **shorter than one window** (3 s for the shipped model) gives one centered,
  padded window, exactly as during training.

So the answer for silence is whatever the model says for "nothing". Because that label
means nothing, every :class:`Prediction` also carries the clip's RMS level
(``level_db``, dBFS) and ``silent`` (level below :data:`SILENCE_DBFS`, or no samples), and
the CLI marks such clips, so nobody mistakes "fearful" for a property of a quiet room.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .audio import load_audio, resample
from .errors import AudioError
from .features import log_mel
from .metadata import ModelMetadata
from .model import Model
from .paths import resolve_model_path
from .windows import split_windows

__all__ = ["WindowPrediction", "Prediction", "Classifier", "predict_emotion", "SILENCE_DBFS"]

#: Clips quieter than this RMS level (dB re full scale) are flagged ``silent``: about
#: the level of a quiet room through a USB microphone at normal gain.
SILENCE_DBFS = -60.0
#: Level reported for an empty or digitally silent clip.
_FLOOR_DBFS = -120.0

AudioSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, Any]


def _probability_dict(labels: Sequence[str], row: np.ndarray) -> Dict[str, float]:
    return {label: float(p) for label, p in zip(labels, row)}


@dataclass(frozen=True)
class WindowPrediction:
    """The model's answer for one window of a clip (times in seconds from the clip start)."""

    start_s: float
    end_s: float
    label: str
    confidence: float
    probabilities: Dict[str, float]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "start_s": round(self.start_s, 4),
            "end_s": round(self.end_s, 4),
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
        }


@dataclass(frozen=True)
class Prediction:
    """The answer for a whole clip.

    ``probabilities`` covers every label in model order and is the mean of the window
    probabilities; ``label``/``confidence`` are its largest entry. ``duration`` is the
    clip length in seconds; ``source`` names where the audio came from (a path,
    ``"<stdin>"``, ...) or is None. ``level_db`` is the clip's RMS level in dBFS
    (:data:`_FLOOR_DBFS` when empty); see :attr:`silent`.
    """

    label: str
    confidence: float
    probabilities: Dict[str, float]
    windows: List[WindowPrediction] = field(default_factory=list)
    duration: float = 0.0
    source: Optional[str] = None
    level_db: float = _FLOOR_DBFS

    @property
    def silent(self) -> bool:
        """True when the clip has no audible signal: its label is then meaningless."""
        return self.level_db < SILENCE_DBFS

    def top(self, k: int = 3) -> List[Tuple[str, float]]:
        """The ``k`` most probable labels with their probabilities, best first."""
        ranked = sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)
        return ranked[: max(0, k)]

    def to_dict(self, windows: bool = True) -> Dict[str, Any]:
        """Plain JSON-ready data (``windows=False`` leaves the per-window list out)."""
        data: Dict[str, Any] = {
            "source": self.source,
            "label": self.label,
            "confidence": self.confidence,
            "duration": round(self.duration, 4),
            "level_db": round(self.level_db, 2),
            "silent": self.silent,
            "probabilities": dict(self.probabilities),
        }
        if windows:
            data["windows"] = [w.to_dict() for w in self.windows]
        return data


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of float samples in dB re full scale, floored at -120 dBFS."""
    if samples.size == 0:
        return _FLOOR_DBFS
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    return max(_FLOOR_DBFS, 10.0 * math.log10(power)) if power > 0 else _FLOOR_DBFS


def _as_mono_float(samples: np.ndarray, source: Optional[str]) -> np.ndarray:
    """1-D float32 in [-1, 1] from float or integer PCM, mono or ``(frames, channels)``."""
    x = np.asarray(samples)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        offset = (int(info.max) + 1) // 2 if x.dtype.kind == "u" else 0
        x = (x.astype(np.float64) - offset) / (float(info.max - offset) + 1.0)
    elif x.dtype.kind != "f":
        raise AudioError(f"samples must be numbers, got dtype {x.dtype}", source)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise AudioError(f"expected mono samples (1-D) or (frames, channels), got shape {x.shape}", source)
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        raise AudioError("samples contain NaN or infinity", source)
    return x


class Classifier:
    """Loads a model once and classifies clips with it.

    ``model_path=None`` uses the default model (:mod:`edge_ser.paths`); ``backend``,
    ``num_threads`` and ``xnnpack`` go to the interpreter (:mod:`edge_ser.backends`). Safe to share
    between threads: inference is serialized by a lock (one interpreter, one set of
    tensors).
    """

    def __init__(
        self,
        model_path: "Optional[str | os.PathLike[str]]" = None,
        backend: Optional[str] = None,
        num_threads: Optional[int] = None,
        xnnpack: Optional[bool] = None,
    ) -> None:
        self.model = Model.load(resolve_model_path(model_path), backend=backend, num_threads=num_threads,
                                xnnpack=xnnpack)
        self._lock = threading.Lock()

    # -- what is loaded -----------------------------------------------------------------
    @property
    def metadata(self) -> ModelMetadata:
        return self.model.metadata

    @property
    def labels(self) -> Tuple[str, ...]:
        return self.model.labels

    @property
    def sample_rate(self) -> int:
        """The rate the model's features are computed at; audio is resampled to it."""
        return self.metadata.feature_config.sample_rate

    @property
    def backend_name(self) -> str:
        return self.model.backend_name

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def model_path(self) -> str:
        return self.model.path

    # -- classification -----------------------------------------------------------------
    def classify_file(self, source: AudioSource, name: Optional[str] = None) -> Prediction:
        """Classify a WAV given as a path, bytes or a binary file object.

        ``name`` labels the result (and error messages) when ``source`` is not a path.
        Bad audio raises :class:`~edge_ser.errors.AudioError`.
        """
        samples, _ = load_audio(source, self.sample_rate, name=name)
        if name is None and isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
        return self.classify_signal(samples, self.sample_rate, source=name)

    def classify_bytes(self, data: Union[bytes, bytearray, memoryview], name: str, *,
                       windows: bool = False) -> Prediction:
        """Classify a WAV held in memory (an HTTP upload): bounded extra memory.

        ``name`` labels the result and error messages. ``windows=True`` keeps the
        per-window results in :attr:`Prediction.windows` (otherwise it is empty).
        Bad audio raises :class:`~edge_ser.errors.AudioError`.
        """
        prediction = self.classify_file(data, name=name)
        return prediction if windows else dataclasses.replace(prediction, windows=[])

    def classify_signal(
        self, samples: np.ndarray, sample_rate: int, source: Optional[str] = None
    ) -> Prediction:
        """Classify samples (float in [-1, 1] or integer PCM) recorded at ``sample_rate`` Hz."""
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise AudioError(f"sample rate must be a positive integer, got {sample_rate!r}", source)
        x = _as_mono_float(samples, source)
        if int(sample_rate) != self.sample_rate:
            x = np.asarray(resample(x, int(sample_rate), self.sample_rate), dtype=np.float32)
        duration = x.size / self.sample_rate
        prediction = self.classify_features(log_mel(x, self.metadata.feature_config), duration, source)
        return dataclasses.replace(prediction, level_db=rms_dbfs(x))

    def classify_features(
        self, features: np.ndarray, duration: Optional[float] = None, source: Optional[str] = None
    ) -> Prediction:
        """Classify an already computed ``(frames, n_features)`` feature matrix.

        For callers that compute features themselves (the streaming daemon); the
        features must come from this model's feature config.
        """
        meta = self.metadata
        cfg = meta.feature_config
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != cfg.n_features:
            raise ValueError(f"features must be (frames, {cfg.n_features}), got {features.shape}")
        n_frames = features.shape[0]
        frame_s = cfg.hop_length / cfg.sample_rate
        if duration is None:
            duration = n_frames * frame_s
        windows, starts = split_windows(features, meta.window_frames, meta.hop_frames)
        with self._lock:
            probs = self.model.predict(windows)
        labels = self.labels
        window_predictions = []
        for start, row in zip(starts, probs):
            best = int(np.argmax(row))
            window_predictions.append(
                WindowPrediction(
                    start_s=start * frame_s,
                    end_s=min((start + meta.window_frames) * frame_s, float(duration)),
                    label=labels[best],
                    confidence=float(row[best]),
                    probabilities=_probability_dict(labels, row),
                )
            )
        mean = probs.mean(axis=0)
        best = int(np.argmax(mean))
        return Prediction(
            label=labels[best],
            confidence=float(mean[best]),
            probabilities=_probability_dict(labels, mean),
            windows=window_predictions,
            duration=float(duration),
            source=source,
        )

    def __repr__(self) -> str:
        return f"Classifier({self.model!r})"


@lru_cache(maxsize=4)
def _cached_classifier(resolved_path: str) -> Classifier:
    return Classifier(resolved_path)


def predict_emotion(audio_path: AudioSource, model_path: "Optional[str | os.PathLike[str]]" = None) -> Tuple[str, float]:
    """``(label, confidence in percent)`` for one WAV: the ancestor project's call.

    The model is loaded on the first call and kept (one per model path), so calling
    this in a loop does not reload it. Prints nothing; errors are
    :class:`~edge_ser.errors.EdgeSerError` subclasses.
    """
    path = os.path.abspath(resolve_model_path(model_path))
    prediction = _cached_classifier(path).classify_file(audio_path)
    return prediction.label, round(prediction.confidence * 100.0, 2)
