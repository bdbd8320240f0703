"""Load a corpus clip as mono float32 at the feature sample rate.

Uses the device's own decoder (:func:`edge_ser.audio.load_audio`) when it is
available, so training sees exactly the samples the device would; before that module
existed the corpus (16 kHz mono s16) was read with the stdlib ``wave`` module, which is
kept as a fallback for 16-bit PCM files.
"""

from __future__ import annotations

import wave

import numpy as np

from edge_ser.errors import AudioError


def load_clip(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples in [-1, 1) at ``sample_rate``."""
    try:
        from edge_ser.audio import load_audio  # type: ignore
    except ImportError:
        return _load_wave_s16(path, sample_rate)
    result = load_audio(path, target_rate=sample_rate)
    samples = getattr(result, "samples", result)
    if isinstance(samples, tuple):
        samples = samples[0]
    return np.asarray(samples, dtype=np.float32)


def _load_wave_s16(path: str, sample_rate: int) -> np.ndarray:
    try:
        with wave.open(str(path), "rb") as fh:
            channels, width, rate = fh.getnchannels(), fh.getsampwidth(), fh.getframerate()
            raw = fh.readframes(fh.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise AudioError(f"cannot read WAV ({exc})", str(path)) from None
    if width != 2:
        raise AudioError(f"expected 16-bit PCM, got {8 * width}-bit", str(path))
    if rate != sample_rate:
        raise AudioError(f"expected {sample_rate} Hz, got {rate} Hz (resampler not available)", str(path))
    data = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data
