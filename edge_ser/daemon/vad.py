"""Voice activity detection that survives a real room.

A fixed energy threshold fails the moment a fan starts or the gain changes, so the
built-in detector compares each frame's *speech-band* level (200-4000 Hz by default,
which ignores rumble and hiss) with an adaptive noise floor: a low percentile of the
levels of the last few seconds. A frame is speech when it is ``threshold_db`` above
that floor and above an absolute minimum (so digital silence or a very quiet room
never triggers on its own noise). A hangover keeps short pauses inside words.

``webrtcvad`` is used only when asked for and installed (imported lazily); it still
reports the same band levels so events carry a ``level_db`` either way.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import EdgeSerError

#: Level reported for digital silence (and the floor of every measurement).
SILENCE_DB = -120.0


class VadError(EdgeSerError):
    """The requested VAD cannot run (e.g. webrtcvad not installed, unsupported rate)."""


class BandLevelMeter:
    """Speech-band level of frames in dBFS (a full-scale sine in band reads about -3 dB)."""

    def __init__(self, sample_rate: int, frame_length: int, band_hz: Tuple[float, float]) -> None:
        self.frame_length = frame_length
        self.n_fft = 1 << max(0, int(np.ceil(np.log2(frame_length))))
        self.window = np.hanning(frame_length + 2)[1:-1].astype(np.float32)  # no zero endpoints
        freqs = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        low, high = band_hz[0], min(band_hz[1], sample_rate / 2.0)
        self.band = (freqs >= low) & (freqs <= high)
        if not self.band.any():
            raise VadError(f"VAD band {low:g}-{high:g} Hz holds no FFT bin at {sample_rate} Hz")
        # Parseval: mean square of x ~= 2 * sum|X|^2 / (n_fft * sum(w^2)) over the one-sided spectrum.
        self.scale = 2.0 / (self.n_fft * float(np.sum(self.window.astype(np.float64) ** 2)))

    def levels(self, frames: np.ndarray) -> np.ndarray:
        """``frames``: (n, frame_length) float32 -> (n,) levels in dB."""
        if len(frames) == 0:
            return np.zeros(0, np.float64)
        spec = np.fft.rfft(frames * self.window, n=self.n_fft, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2)[:, self.band].sum(axis=1) * self.scale
        return np.maximum(10.0 * np.log10(power + 1e-30), SILENCE_DB)


class EnergyVad:
    """Band energy against an adaptive noise floor, with hangover.

    ``noise_window_s`` of frame levels are kept in a ring; the floor is their
    ``noise_percentile``-th percentile, recomputed once per call (cheap: a few hundred
    numbers). Until half a second of history exists the absolute ``min_level_db``
    alone decides, so speech at the very start of a stream is not taken for noise.
    """

    def __init__(
        self,
        sample_rate: int,
        frame_ms: int = 30,
        threshold_db: float = 10.0,
        min_level_db: float = -55.0,
        band_hz: Tuple[float, float] = (200.0, 4000.0),
        noise_window_s: float = 10.0,
        noise_percentile: float = 10.0,
        hangover_ms: int = 200,
    ) -> None:
        self.sample_rate = sample_rate
        self.frame_length = int(round(sample_rate * frame_ms / 1000.0))
        self.frame_seconds = self.frame_length / sample_rate
        self.meter = BandLevelMeter(sample_rate, self.frame_length, band_hz)
        self.threshold_db = threshold_db
        self.min_level_db = min_level_db
        self.noise_percentile = noise_percentile
        self.hangover_frames = int(round(hangover_ms / 1000.0 / self.frame_seconds))
        self._history = np.full(max(2, int(round(noise_window_s / self.frame_seconds))), SILENCE_DB)
        self._filled = 0
        self._cursor = 0
        self._min_history = max(1, int(round(0.5 / self.frame_seconds)))
        self._hang = 0
        self.noise_floor_db = SILENCE_DB

    def reset(self) -> None:
        """Forget the hangover (after a gap in the stream); the floor estimate is kept."""
        self._hang = 0

    def _threshold(self) -> float:
        if self._filled < self._min_history:
            return self.min_level_db
        self.noise_floor_db = float(np.percentile(self._history[: self._filled], self.noise_percentile))
        return max(self.noise_floor_db + self.threshold_db, self.min_level_db)

    def _remember(self, levels: np.ndarray) -> None:
        for level in levels[-len(self._history):]:
            self._history[self._cursor] = level
            self._cursor = (self._cursor + 1) % len(self._history)
        self._filled = min(len(self._history), self._filled + len(levels))

    #: The floor is re-estimated at least this often (in frames), whatever the call size.
    FLOOR_UPDATE_FRAMES = 8

    def raw_decisions(self, levels: np.ndarray) -> np.ndarray:
        """Speech/non-speech per frame before hangover (the floor only knows earlier frames)."""
        out = np.empty(len(levels), bool)
        for i in range(0, len(levels), self.FLOOR_UPDATE_FRAMES):
            part = levels[i: i + self.FLOOR_UPDATE_FRAMES]
            out[i: i + len(part)] = part > self._threshold()
            self._remember(part)
        return out

    def process(self, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``frames`` (n, frame_length) -> (is_speech bool (n,), level_db (n,))."""
        levels = self.meter.levels(frames)
        raw = self.raw_decisions(levels)
        out = np.empty(len(raw), bool)
        for i, speech in enumerate(raw):
            if speech:
                self._hang = self.hangover_frames
                out[i] = True
            elif self._hang > 0:
                self._hang -= 1
                out[i] = True
            else:
                out[i] = False
        return out, levels


class WebRtcVad(EnergyVad):
    """webrtcvad's decisions (with the same hangover), band levels for reporting."""

    def __init__(self, sample_rate: int, frame_ms: int = 30, aggressiveness: int = 2, **energy_kw: object) -> None:
        try:
            import webrtcvad  # type: ignore[import-not-found]
        except ImportError:
            raise VadError("vad.engine = \"webrtc\" needs the webrtcvad package: pip install webrtcvad") from None
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise VadError(f"webrtcvad supports 8/16/32/48 kHz, not {sample_rate} Hz")
        super().__init__(sample_rate, frame_ms, **energy_kw)  # type: ignore[arg-type]
        self._vad = webrtcvad.Vad(aggressiveness)
        self._frames: Optional[np.ndarray] = None

    def process(self, frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        self._frames = frames
        return super().process(frames)

    def raw_decisions(self, levels: np.ndarray) -> np.ndarray:
        assert self._frames is not None
        pcm = (np.clip(self._frames, -1.0, 1.0) * 32767.0).astype("<i2")
        decisions = np.array([self._vad.is_speech(row.tobytes(), self.sample_rate) for row in pcm], bool)
        self._remember(levels[-len(self._history):])
        return decisions & (levels > self.min_level_db)


def make_vad(settings: dict, sample_rate: int) -> EnergyVad:
    """Build the VAD named by the ``[vad]`` settings for audio at ``sample_rate``."""
    common = dict(
        threshold_db=settings["threshold_db"],
        min_level_db=settings["min_level_db"],
        band_hz=(settings["band_low_hz"], settings["band_high_hz"]),
        noise_window_s=settings["noise_window_seconds"],
        noise_percentile=settings["noise_percentile"],
        hangover_ms=settings["hangover_ms"],
    )
    if settings["engine"] == "webrtc":
        return WebRtcVad(sample_rate, settings["frame_ms"], settings["webrtc_aggressiveness"], **common)
    return EnergyVad(sample_rate, settings["frame_ms"], **common)  # type: ignore[arg-type]
