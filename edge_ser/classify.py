"""Classify whole clips: audio -> features -> windows -> model -> one answer.

The pipeline is the one training used, driven by the model's own metadata:

1. decode and resample to the model's sample rate (:mod:`edge_ser.wav`,
   :mod:`edge_ser.resample`);
2. log-mel features with the model's :class:`~edge_ser.features.FeatureConfig`;
3. cut into the model's windows (the windows of :func:`edge_ser.windows.split_windows`:
   overlapping windows over a long clip, one centered padded window for a short one);
4. run every window and average the window probabilities.

It runs as a stream (:mod:`edge_ser.pipeline`) for every input -- a path, bytes (an
upload), stdin, an array: chunks are decoded, resampled, turned into frames and cut
into windows as they come, and only the probability sums are kept, so memory does not
grow with the clip's length (a 20-minute WAV needs what a 3 s clip needs). The
per-utterance normalization takes its statistics from a first pass; the answer equals
the whole-clip computation (same frames, bit for bit). :class:`Prediction` lists the
per-window results only when asked (``windows=True``). For live audio (push chunks,
get a result per utterance) see :mod:`edge_ser.stream`.

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

import io
import math
import os
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import AudioError
from .metadata import ModelMetadata
from .model import Model
from .paths import resolve_model_path
from .pipeline import MAX_UNSEEKABLE_SECONDS, ClipFeatures
from .wav import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, WavReader
from .windows import WindowCutter

__all__ = ["WindowPrediction", "Prediction", "Classifier", "predict_emotion", "SILENCE_DBFS"]

#: Clips quieter than this RMS level (dB re full scale) are flagged ``silent``: about
#: the level of a quiet room through a USB microphone at normal gain.
SILENCE_DBFS = -60.0
#: Level reported for an empty or digitally silent clip.
_FLOOR_DBFS = -120.0
_CHUNK_FRAMES = 1 << 16  # source frames per chunk through the pipeline
_BATCH_WINDOWS = 8  # windows per model call batch (8 x 300 x 64 float32 = 600 KB)

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
    probabilities; ``label``/``confidence`` are its largest entry. ``window_count`` is
    how many windows were run; ``windows`` lists them only when the caller asked for it
    (``windows=True``), since that list grows with the clip. ``duration`` is the
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
    window_count: int = 0

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
    return _level_db(float(np.mean(np.square(samples, dtype=np.float64))))


def _level_db(power: float) -> float:
    return max(_FLOOR_DBFS, 10.0 * math.log10(power)) if power > 0 else _FLOOR_DBFS


def _as_mono_float(samples: np.ndarray, source: Optional[str]) -> np.ndarray:
    """1-D float32 in [-1, 1] from float or integer PCM, mono or ``(frames, channels)``.

    Every step is per frame, so converting a long array slice by slice gives the same
    samples as converting it whole.
    """
    x = np.asarray(samples)
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        offset = (int(info.max) + 1) // 2 if x.dtype.kind == "u" else 0
        x = (x.astype(np.float64) - offset) / (float(info.max - offset) + 1.0)
    elif x.dtype.kind != "f":
        raise AudioError(f"samples must be numbers, got dtype {x.dtype}", source)
    if x.ndim == 2:
        x = x.mean(axis=1)
    x = x.astype(np.float32, copy=False)
    if x.size and not np.isfinite(x).all():
        raise AudioError("samples contain NaN or infinity", source)
    return x


def _check_signal_shape(x: np.ndarray, source: Optional[str]) -> None:
    """The shape rule of :meth:`Classifier.classify_signal` (see there)."""
    if x.ndim not in (1, 2):
        raise AudioError(f"expected mono samples (1-D) or (frames, channels), got shape {x.shape}", source)
    if x.ndim == 2 and x.shape[1] > MAX_CHANNELS:
        raise AudioError(f"2-D samples are (frames, channels); shape {x.shape} would be {x.shape[1]} channels "
                         f"(at most {MAX_CHANNELS}): for (channels, frames) pass samples.T", source)


def _check_rate(sample_rate: Any, source: Optional[str]) -> int:
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
            or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise AudioError(f"sample rate must be an integer in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, "
                         f"got {sample_rate!r}", source)
    return int(sample_rate)


def _check_wav_source(source: Any, name: Optional[str]) -> None:
    """Turn the common wrong arguments into an :class:`AudioError` with a hint."""
    label = name or "<input>"
    if source is None:
        raise AudioError("no audio given (None): pass a WAV path, bytes or a binary file object", label)
    if isinstance(source, np.ndarray):
        raise AudioError("got a NumPy array, which is samples, not a WAV file: use "
                         "Classifier.classify_signal(samples, sample_rate)", label)
    if isinstance(source, io.TextIOBase):
        raise AudioError("file opened in text mode: open it in binary mode ('rb')", name or getattr(source, "name", label))
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)) and not hasattr(source, "read"):
        raise AudioError(f"cannot read audio from a {type(source).__name__}: pass a WAV path, bytes or a "
                         f"binary file object (or samples to classify_signal)", label)


class _WindowVotes:
    """Window probabilities accumulated into a clip's answer (per-window results on request)."""

    def __init__(self, classifier: "Classifier", keep_windows: bool) -> None:
        meta = classifier.metadata
        self._classifier = classifier
        self._cutter = WindowCutter(meta.window_frames, meta.hop_frames, meta.feature_config.n_features,
                                   meta.feature_config.n_blocks)
        self._sum = np.zeros(len(classifier.labels), dtype=np.float64)
        self.count = 0
        self._keep = keep_windows
        self._rows: List[Tuple[int, np.ndarray]] = []

    def _run(self, windows: np.ndarray, starts: List[int]) -> None:
        for i in range(0, len(starts), _BATCH_WINDOWS):
            batch = windows[i:i + _BATCH_WINDOWS]
            with self._classifier._lock:
                probs = self._classifier.model.predict(batch)
            self._sum += probs.sum(axis=0, dtype=np.float64)
            self.count += probs.shape[0]
            if self._keep:
                self._rows += list(zip(starts[i:i + _BATCH_WINDOWS], probs))

    def push(self, frames: np.ndarray) -> None:
        self._run(*self._cutter.push(frames))

    def finish(self, duration: float, source: Optional[str], level_db: float) -> Prediction:
        self._run(*self._cutter.flush())
        labels = self._classifier.labels
        meta = self._classifier.metadata
        frame_s = meta.feature_config.hop_length / meta.feature_config.sample_rate
        windows = []
        for start, row in self._rows:
            best = int(np.argmax(row))
            windows.append(WindowPrediction(
                start_s=start * frame_s,
                end_s=min((start + meta.window_frames) * frame_s, float(duration)),
                label=labels[best],
                confidence=float(row[best]),
                probabilities=_probability_dict(labels, row),
            ))
        mean = self._sum / max(self.count, 1)
        best = int(np.argmax(mean))
        return Prediction(
            label=labels[best],
            confidence=float(mean[best]),
            probabilities=_probability_dict(labels, mean),
            windows=windows,
            duration=float(duration),
            source=source,
            level_db=level_db,
            window_count=self.count,
        )


class Classifier:
    """Loads a model once and classifies clips with it.

    ``model_path=None`` uses the default model (:mod:`edge_ser.paths`); ``backend``,
    ``num_threads`` and ``xnnpack`` go to the interpreter (:mod:`edge_ser.backends`). Safe to share
    between threads: inference is serialized by a lock (one interpreter, one set of
    tensors).

    Every ``classify_*`` method streams (:mod:`edge_ser.pipeline`): decode, resample,
    features and windows go chunk by chunk and the window probabilities are summed, so
    memory stays bounded whatever the clip's length. ``windows=True`` keeps the
    per-window results in :attr:`Prediction.windows` (they grow with the length).
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
    def classify_file(self, source: AudioSource, name: Optional[str] = None, *, windows: bool = False,
                      max_unseekable_seconds: float = MAX_UNSEEKABLE_SECONDS) -> Prediction:
        """Classify a WAV given as a path, bytes or a binary file object (stdin, a pipe).

        ``name`` labels the result (and error messages) when ``source`` is not a path.
        The file is read twice when it is long (the per-utterance normalization needs
        the whole clip's statistics first); a non-seekable stream longer than
        ``max_unseekable_seconds`` (default 1 h, :data:`~edge_ser.pipeline.MAX_UNSEEKABLE_SECONDS`)
        is refused. Bad audio raises :class:`~edge_ser.errors.AudioError`.
        """
        _check_wav_source(source, name)
        if name is None and isinstance(source, (str, os.PathLike)):
            name = os.fspath(source)
        with WavReader(source, name=name) as reader:
            passes = {"count": 0}

            def chunks() -> Iterator[np.ndarray]:
                if passes["count"]:
                    reader.rewind()
                passes["count"] += 1
                return reader.blocks(_CHUNK_FRAMES)

            clip = ClipFeatures(chunks, reader.sample_rate, self.metadata.feature_config,
                                replayable=reader.seekable, clip=True, name=reader.name,
                                max_unseekable_seconds=max_unseekable_seconds)
            return self._classify_clip(clip, name, windows)

    def classify_bytes(self, data: Union[bytes, bytearray, memoryview], name: str, *,
                       windows: bool = False) -> Prediction:
        """Classify a WAV held in memory (an HTTP upload), with bounded extra memory.

        The bytes are decoded in place (not copied) and read twice when the clip is
        long, so the extra memory does not depend on the upload's length. ``name``
        labels the result and error messages. ``windows=True`` keeps the per-window
        results in :attr:`Prediction.windows` (otherwise it is empty). Bad audio raises
        :class:`~edge_ser.errors.AudioError`.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AudioError(f"classify_bytes needs bytes, got {type(data).__name__}", name)
        return self.classify_file(data, name=name, windows=windows)

    def classify_signal(
        self, samples: np.ndarray, sample_rate: int, source: Optional[str] = None, *, windows: bool = False
    ) -> Prediction:
        """Classify samples (float in [-1, 1] or integer PCM) recorded at ``sample_rate`` Hz.

        Shape rule: 1-D is mono; 2-D is ``(frames, channels)`` (channels are averaged),
        and more than :data:`~edge_ser.wav.MAX_CHANNELS` (256) channels is refused as a
        transposed array (``np.zeros((2, 16000))`` would be 16000 channels: pass
        ``samples.T``). ``sample_rate`` must be in
        :data:`~edge_ser.wav.MIN_SAMPLE_RATE`..:data:`~edge_ser.wav.MAX_SAMPLE_RATE`.
        The array is processed in slices, so no full-length copy is made.
        """
        rate = _check_rate(sample_rate, source)
        x = np.asarray(samples)
        _check_signal_shape(x, source)
        if x.dtype.kind not in "iuf":
            raise AudioError(f"samples must be numbers, got dtype {x.dtype}", source)

        def chunks() -> Iterator[np.ndarray]:
            for i in range(0, x.shape[0], _CHUNK_FRAMES):
                yield _as_mono_float(x[i:i + _CHUNK_FRAMES], source)

        # clip=True as for files: the same audio as samples or as a WAV gives the same answer
        clip = ClipFeatures(chunks, rate, self.metadata.feature_config, replayable=True, clip=True, name=source)
        return self._classify_clip(clip, source, windows)

    def _classify_clip(self, clip: ClipFeatures, source: Optional[str], windows: bool) -> Prediction:
        votes = _WindowVotes(self, windows)
        for frames in clip.frames():
            votes.push(frames)
        power = clip.level_sumsq / clip.samples if clip.samples else 0.0
        return votes.finish(clip.duration, source, _level_db(power))

    def classify_features(
        self, features: np.ndarray, duration: Optional[float] = None, source: Optional[str] = None, *,
        windows: bool = False,
    ) -> Prediction:
        """Classify an already computed ``(frames, n_features)`` feature matrix.

        For callers that compute features themselves; the features must come from this
        model's feature config (utterance stage included).
        """
        cfg = self.metadata.feature_config
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != cfg.n_features:
            raise ValueError(f"features must be (frames, {cfg.n_features}), got {features.shape}")
        if duration is None:
            duration = features.shape[0] * cfg.hop_length / cfg.sample_rate
        votes = _WindowVotes(self, windows)
        for i in range(0, features.shape[0], 1024):
            votes.push(features[i:i + 1024])
        return votes.finish(float(duration), source, _FLOOR_DBFS)

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
    _check_wav_source(audio_path, None)
    path = os.path.abspath(resolve_model_path(model_path))
    prediction = _cached_classifier(path).classify_file(audio_path)
    return prediction.label, round(prediction.confidence * 100.0, 2)
