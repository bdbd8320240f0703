"""Live audio in, emotions out: the streaming API for integrators.

Push audio chunks of any size as they arrive (a microphone callback, a network
stream, a file read piece by piece); get a result each time an utterance ends, or
every hop in window mode. This is what the ``edge-ser listen`` daemon does inside,
without its sources, sinks and service machinery::

    from edge_ser.classify import Classifier
    from edge_ser.stream import StreamClassifier

    stream = StreamClassifier(Classifier(), sample_rate=48000)          # VAD utterances
    for chunk in chunks:                           # float32 in [-1, 1] or int16, mono or (n, channels)
        for result in stream.push(chunk):
            print(f"{result.start:.1f}-{result.end:.1f}s {result.label} {result.confidence:.0%}")
    for result in stream.flush():                  # end of stream: the utterance in progress
        ...

Modes:

* ``mode="utterance"`` (default): an energy VAD cuts the stream into utterances (the
  daemon's :class:`~edge_ser.daemon.segmenter.Segmenter`: pre-roll, end of speech after
  ``end_silence_ms`` of silence, bursts shorter than ``min_utterance_ms`` dropped,
  utterances cut at ``max_utterance_s``); each utterance is classified whole.
* ``mode="window"``: the last ``window_s`` seconds every ``hop_s`` seconds, windows with
  less than ``min_speech_ratio`` speech skipped.

Each :class:`StreamResult` carries the stream times (seconds since the first sample,
at the rate given), why the stretch ended (``"silence"``, ``"max_length"``, ``"hop"``,
``"flush"``) and the :class:`~edge_ser.classify.Prediction` (label, probabilities,
level). Memory is bounded by ``max_utterance_s`` (or ``window_s``) of audio, whatever
the stream's length. Not thread-safe: one stream per producer (the classifier itself
may be shared).

For a whole recording rather than a live stream use
:meth:`~edge_ser.classify.Classifier.classify_file`, which streams too (in bounded
memory) and gives one answer for the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import numpy as np

from .classify import Classifier, Prediction, _as_mono_float, _check_rate, _check_signal_shape
from .resample import StreamResampler

__all__ = ["StreamClassifier", "StreamResult"]


@dataclass(frozen=True)
class StreamResult:
    """One classified stretch of the stream (times in stream seconds)."""

    start: float
    end: float
    reason: str
    prediction: Prediction
    speech_ratio: float = 1.0

    @property
    def label(self) -> str:
        return self.prediction.label

    @property
    def confidence(self) -> float:
        return self.prediction.confidence

    @property
    def probabilities(self) -> Dict[str, float]:
        return self.prediction.probabilities

    def to_dict(self) -> Dict[str, Any]:
        data = self.prediction.to_dict(windows=False)
        data.update(start=round(self.start, 4), end=round(self.end, 4), reason=self.reason,
                    speech_ratio=round(self.speech_ratio, 3))
        return data


class StreamClassifier:
    """Push audio chunks, receive :class:`StreamResult` s (see the module docstring).

    ``sample_rate`` is the rate of the pushed audio (resampled to the model's rate
    inside, in bounded memory). ``classifier=None`` loads the default model.
    """

    def __init__(self, classifier: Optional[Classifier] = None, sample_rate: int = 16000, *,
                 mode: str = "utterance", end_silence_ms: int = 600, min_utterance_ms: int = 400,
                 max_utterance_s: float = 10.0, pre_roll_ms: int = 300, window_s: float = 3.0,
                 hop_s: float = 1.0, min_speech_ratio: float = 0.0) -> None:
        from .daemon.segmenter import Segmenter, SlidingWindows
        from .daemon.vad import EnergyVad

        if mode not in ("utterance", "window"):
            raise ValueError(f"mode must be 'utterance' or 'window', got {mode!r}")
        self.classifier = classifier if classifier is not None else Classifier()
        self.sample_rate = _check_rate(sample_rate, "stream")
        self.mode = mode
        rate = self.classifier.sample_rate
        vad = EnergyVad(rate)
        if mode == "window":
            self._segmenter: Any = SlidingWindows(vad, rate, window_s, hop_s, min_speech_ratio)
        else:
            self._segmenter = Segmenter(vad, rate, pre_roll_ms, end_silence_ms, min_utterance_ms, max_utterance_s)
        self._resampler = None if self.sample_rate == rate else StreamResampler(self.sample_rate, rate)

    def push(self, samples: np.ndarray) -> List[StreamResult]:
        """Add audio (float in [-1, 1] or integer PCM, 1-D or ``(frames, channels)``);
        return the results it completes, oldest first."""
        x = np.asarray(samples)
        _check_signal_shape(x, "stream")
        x = _as_mono_float(x, "stream")
        if self._resampler is not None:
            x = self._resampler.process(x)
        return self._classify(self._segmenter.push(x))

    def flush(self) -> List[StreamResult]:
        """End of the stream: classify the utterance in progress, then start afresh."""
        utterances = []
        if self._resampler is not None:
            utterances += self._segmenter.push(self._resampler.flush())
        utterances += self._segmenter.flush("flush")
        results = self._classify(utterances)
        self._segmenter.reset(0.0)
        return results

    def _classify(self, utterances: List[Any]) -> List[StreamResult]:
        rate = self.classifier.sample_rate
        return [StreamResult(u.start, u.end, u.reason, self.classifier.classify_signal(u.samples, rate),
                             u.speech_ratio) for u in utterances]
