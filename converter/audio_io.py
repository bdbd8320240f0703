"""Load a corpus clip as mono float32 at the feature sample rate.

WAV files go through the device's own decoder (:func:`edge_ser.audio.load_audio`), so
training sees exactly the samples the device would. Other formats (the Ogg Opus and
FLAC corpora, rooms and noise in ``../shared/datasets``) are workstation-only and are
read with ``soundfile`` (libsndfile), then resampled with the device's resampler.

:func:`opus_round_trip` encodes and decodes a signal in memory: the non-RAVDESS corpora
reached us as Opus, so RAVDESS gets the same codec in training, or the codec's traces
would become a shortcut for "calm and disgust are possible here".
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from edge_ser.errors import AudioError


#: libsndfile's Opus "compression level" that gives about 24 kbps on 16 kHz speech, the
#: bit rate of the Opus corpora (0.0 is the highest bit rate, 1.0 the lowest).
OPUS_24KBPS_LEVEL = 0.92


def is_wav(path: str) -> bool:
    """WAV files are decoded by the device's own reader; everything else by ``soundfile``."""
    return Path(path).suffix.lower() in (".wav", ".wave")


def load_clip(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 samples in [-1, 1) at ``sample_rate``."""
    if not is_wav(path):
        return _load_soundfile(path, sample_rate)
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


def _load_soundfile(path: str, sample_rate: int) -> np.ndarray:
    import soundfile  # workstation only (requirements-dev.txt)

    from edge_ser.resample import resample

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise AudioError(f"cannot decode ({exc})", str(path)) from None
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def opus_round_trip(signal: np.ndarray, sample_rate: int, level: float = OPUS_24KBPS_LEVEL) -> np.ndarray:
    """``signal`` after Ogg Opus encoding at compression ``level`` and decoding (same length)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(signal, -1.0, 1.0), sample_rate, format="OGG", subtype="OPUS",
                    compression_level=float(level))
    buffer.seek(0)
    decoded, _ = soundfile.read(buffer, dtype="float32")
    out = np.zeros(signal.shape[0], dtype=np.float32)
    n = min(out.size, decoded.shape[0])
    out[:n] = decoded[:n]
    return out
