"""Turn a stream of samples into utterances (or sliding windows) to classify.

The segmenter frames the audio for the VAD and runs a two-state machine:

* idle: the last ``pre_roll`` of audio is kept in a ring; once speech has lasted
  ``onset`` the utterance starts, pre-roll included (the VAD always fires a little
  late, and the first syllable carries emotion too);
* in speech: audio is collected until ``end_silence`` of non-speech, then trimmed to
  the last speech frame. Utterances reaching ``max_length`` are cut there and a new
  one continues at once, so memory and latency stay bounded during a monologue.
  Speech shorter than ``min_length`` (coughs, door slams) is dropped and counted.

Times are stream seconds: ``origin`` (set by :meth:`Segmenter.reset`) plus samples
seen since, so a gap in the stream (dropped audio, lost device) is handled by
closing the current utterance and resetting the origin.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from .vad import SILENCE_DB, EnergyVad


@dataclass
class Utterance:
    """A stretch of audio to classify, with its place in the stream."""

    samples: np.ndarray  # float32 mono at the segmenter's rate
    start: float  # stream seconds
    end: float
    level_db: float  # mean speech-band level of its speech frames
    reason: str  # why it ended: "silence", "max_length", or a flush reason ("stop", "gap", ...)
    speech_ratio: float = 1.0

    @property
    def duration(self) -> float:
        return self.end - self.start


def mean_level_db(levels: np.ndarray) -> float:
    """Energy average of dB levels (not the average of dBs, which under-weights loud frames)."""
    if len(levels) == 0:
        return SILENCE_DB
    return float(max(10.0 * np.log10(np.mean(10.0 ** (np.asarray(levels) / 10.0)) + 1e-30), SILENCE_DB))


class _Framer:
    """Cuts arbitrary chunks into whole VAD frames, carrying the remainder."""

    def __init__(self, frame_length: int) -> None:
        self.frame_length = frame_length
        self._rest = np.zeros(0, np.float32)

    def reset(self) -> None:
        self._rest = np.zeros(0, np.float32)

    def frames(self, samples: np.ndarray) -> np.ndarray:
        data = np.concatenate([self._rest, np.asarray(samples, np.float32)]) if len(self._rest) else np.asarray(
            samples, np.float32)
        n = len(data) // self.frame_length
        self._rest = data[n * self.frame_length:].copy()
        return data[: n * self.frame_length].reshape(n, self.frame_length)


class Segmenter:
    """VAD-driven utterance segmentation (see the module docstring)."""

    def __init__(
        self,
        vad: EnergyVad,
        sample_rate: int,
        pre_roll_ms: int = 300,
        end_silence_ms: int = 600,
        min_utterance_ms: int = 400,
        max_utterance_s: float = 10.0,
        onset_ms: int = 60,
    ) -> None:
        self.vad = vad
        self.sample_rate = sample_rate
        self.frame_length = vad.frame_length
        frame_s = self.frame_length / sample_rate
        self.onset_frames = max(1, int(round(onset_ms / 1000.0 / frame_s)))
        self.pre_roll_frames = int(round(pre_roll_ms / 1000.0 / frame_s))
        self.end_silence_frames = max(1, int(round(end_silence_ms / 1000.0 / frame_s)))
        self.min_frames = int(round(min_utterance_ms / 1000.0 / frame_s))
        self.max_frames = max(1, int(max_utterance_s / frame_s))
        self._framer = _Framer(self.frame_length)
        self.discarded = 0  # speech bursts shorter than the minimum
        self.reset(0.0)

    # -- state -------------------------------------------------------------------------------------
    def reset(self, origin: float) -> None:
        """Start afresh at stream time ``origin`` (drops any open utterance: flush first)."""
        self.origin = origin
        self._frame_index = 0  # frames seen since origin
        self._framer.reset()
        self.vad.reset()
        self._ring: Deque[Tuple[np.ndarray, bool, float]] = deque(maxlen=self.pre_roll_frames + self.onset_frames)
        self._speech_run = 0
        self._active = False
        self._frames: List[np.ndarray] = []
        self._levels: List[float] = []
        self._speech: List[bool] = []
        self._start_frame = 0
        self._last_speech = -1
        self._first_speech = 0
        self._silence_run = 0

    @property
    def in_speech(self) -> bool:
        return self._active

    def _time(self, frame_index: int) -> float:
        return self.origin + frame_index * self.frame_length / self.sample_rate

    # -- feeding -----------------------------------------------------------------------------------
    def push(self, samples: np.ndarray) -> List[Utterance]:
        """Feed audio; return the utterances that ended inside it."""
        frames = self._framer.frames(samples)
        if len(frames) == 0:
            return []
        speech, levels = self.vad.process(frames)
        out: List[Utterance] = []
        for frame, is_speech, level in zip(frames, speech, levels):
            self._step(frame, bool(is_speech), float(level), out)
            self._frame_index += 1
        return out

    def _step(self, frame: np.ndarray, is_speech: bool, level: float, out: List[Utterance]) -> None:
        if not self._active:
            self._ring.append((frame, is_speech, level))
            self._speech_run = self._speech_run + 1 if is_speech else 0
            if self._speech_run >= self.onset_frames:
                self._begin_from_ring()
            return
        self._append(frame, is_speech, level)
        if is_speech:
            self._silence_run = 0
        else:
            self._silence_run += 1
            if self._silence_run >= self.end_silence_frames:
                self._finish("silence", out)
                return
        if len(self._frames) >= self.max_frames:
            self._finish("max_length", out, keep_active=True)

    def _begin_from_ring(self) -> None:
        ring = list(self._ring)
        self._ring.clear()
        self._active = True
        self._frames, self._levels, self._speech = [], [], []
        self._start_frame = self._frame_index - len(ring) + 1
        self._first_speech = len(ring) - self._speech_run
        self._last_speech = -1
        self._silence_run = 0
        for frame, is_speech, level in ring:
            self._append(frame, is_speech, level)

    def _append(self, frame: np.ndarray, is_speech: bool, level: float) -> None:
        self._frames.append(frame)
        self._levels.append(level)
        self._speech.append(is_speech)
        if is_speech:
            self._last_speech = len(self._frames) - 1

    def _finish(self, reason: str, out: List[Utterance], keep_active: bool = False) -> None:
        n = len(self._frames) if reason == "max_length" else self._last_speech + 1
        speech_frames = n - self._first_speech
        if n > 0 and speech_frames >= self.min_frames:
            levels = np.asarray(self._levels[:n])
            speech_mask = np.asarray(self._speech[:n])
            out.append(Utterance(
                samples=np.concatenate(self._frames[:n]),
                start=self._time(self._start_frame),
                end=self._time(self._start_frame + n),
                level_db=mean_level_db(levels[speech_mask]) if speech_mask.any() else mean_level_db(levels),
                reason=reason,
                speech_ratio=float(speech_mask.mean()),
            ))
        elif n > 0:
            self.discarded += 1
        # The next frame after this one starts a new utterance (max_length) or idles.
        next_start = self._frame_index + 1
        self._frames, self._levels, self._speech = [], [], []
        self._last_speech = -1
        self._first_speech = 0
        self._silence_run = 0
        self._speech_run = 0
        self._active = keep_active
        self._start_frame = next_start

    def flush(self, reason: str) -> List[Utterance]:
        """Close an utterance in progress (stop, gap, lost device); the tail under a frame is ignored."""
        out: List[Utterance] = []
        if self._active and self._frames:
            if self._last_speech < 0:
                self._last_speech = len(self._frames) - 1
            self._finish(reason, out)
        self._active = False
        self._ring.clear()
        self._speech_run = 0
        return out


class SlidingWindows:
    """Continuous mode: the last ``window_s`` of audio every ``hop_s``.

    The VAD still runs so each window carries its level and speech ratio, and windows
    of near-silence can be skipped (``min_speech_ratio``).
    """

    def __init__(self, vad: EnergyVad, sample_rate: int, window_s: float, hop_s: float,
                 min_speech_ratio: float = 0.0) -> None:
        self.vad = vad
        self.sample_rate = sample_rate
        self.window = int(round(window_s * sample_rate))
        self.hop = int(round(hop_s * sample_rate))
        self.min_speech_ratio = min_speech_ratio
        self._framer = _Framer(vad.frame_length)
        n_frames = max(1, self.window // vad.frame_length)
        self._flags: Deque[Tuple[bool, float]] = deque(maxlen=n_frames)
        self.skipped = 0
        self.reset(0.0)

    def reset(self, origin: float) -> None:
        self.origin = origin
        self._buffer = np.zeros(self.window, np.float32)
        self._filled = 0  # valid samples at the end of the buffer
        self._seen = 0
        self._since_hop = 0
        self._framer.reset()
        self.vad.reset()
        self._flags.clear()

    @property
    def in_speech(self) -> bool:
        """Whether the VAD called the latest frame speech."""
        return bool(self._flags and self._flags[-1][0])

    def push(self, samples: np.ndarray) -> List[Utterance]:
        out: List[Utterance] = []
        samples = np.asarray(samples, np.float32)
        frames = self._framer.frames(samples)
        if len(frames):
            speech, levels = self.vad.process(frames)
            self._flags.extend(zip(speech.tolist(), levels.tolist()))
        pos = 0
        while pos < len(samples):
            take = min(len(samples) - pos, self.hop - self._since_hop)
            piece = samples[pos: pos + take]
            self._buffer = np.roll(self._buffer, -take)
            self._buffer[-take:] = piece
            self._filled = min(self.window, self._filled + take)
            self._seen += take
            self._since_hop += take
            pos += take
            if self._since_hop >= self.hop:
                self._since_hop = 0
                if self._filled >= self.window:
                    window = self._emit()
                    if window is not None:
                        out.append(window)
        return out

    def _emit(self) -> Optional[Utterance]:
        flags = list(self._flags)
        ratio = float(np.mean([f for f, _ in flags])) if flags else 0.0
        if ratio < self.min_speech_ratio:
            self.skipped += 1
            return None
        levels = np.asarray([lv for f, lv in flags if f] or [lv for _, lv in flags])
        end = self.origin + self._seen / self.sample_rate
        return Utterance(self._buffer.copy(), end - self.window / self.sample_rate, end,
                         mean_level_db(levels), "hop", ratio)

    def flush(self, reason: str) -> List[Utterance]:
        """Windows are periodic: nothing is pending between hops."""
        return []


class ProbabilitySmoother:
    """EMA of class probabilities over consecutive results (off when weight is 0)."""

    def __init__(self, weight_of_past: float) -> None:
        self.weight = weight_of_past
        self._state: Optional[Dict[str, float]] = None

    def reset(self) -> None:
        self._state = None

    def update(self, probabilities: Dict[str, float]) -> Dict[str, float]:
        if self.weight <= 0.0 or self._state is None:
            self._state = dict(probabilities)
            return dict(probabilities)
        w = self.weight
        self._state = {k: w * self._state.get(k, 0.0) + (1.0 - w) * float(v) for k, v in probabilities.items()}
        return dict(self._state)
