"""Audio in: the one place the rest of edge-ser gets samples from.

``load_audio`` = decode (:mod:`edge_ser.wav`) -> mono -> resample
(:mod:`edge_ser.resample`), so every caller (CLI, daemon, evaluation) turns a file
into model-rate samples the same way. The building blocks are re-exported so
callers import audio things from one module.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .resample import StreamResampler, resample
from .wav import Source, WavAudio, read_wav, read_wav_channels, write_wav

__all__ = ["load_audio", "read_wav", "read_wav_channels", "write_wav", "resample",
           "StreamResampler", "WavAudio"]


def load_audio(source: Source, target_rate: Optional[int] = None, *,
               name: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """Decode a WAV (path, bytes or binary stream) to float32 mono in [-1, 1].

    Returns ``(samples, rate)``; with ``target_rate`` the samples are resampled to it
    (band-limited, see :mod:`edge_ser.resample`) and ``rate == target_rate``.
    Bad input raises :class:`~edge_ser.errors.AudioError` naming ``name`` (default:
    the path).
    """
    audio = read_wav(source, name=name)
    if target_rate is None or int(target_rate) == audio.sample_rate:
        return audio.samples, audio.sample_rate
    samples = resample(audio.samples, audio.sample_rate, int(target_rate))
    # Resampling can overshoot full scale slightly (Gibbs); keep the [-1, 1] promise.
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples, int(target_rate)
