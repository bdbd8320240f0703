"""Audio in: the one place the rest of edge-ser gets samples from.

``load_audio`` = decode (:mod:`edge_ser.wav`) -> mono -> resample
(:mod:`edge_ser.resample`), so every caller (CLI, daemon, evaluation) turns a file
into model-rate samples the same way. The building blocks are re-exported so
callers import audio things from one module.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np

from .resample import StreamResampler, output_length, resample
from .wav import Source, WavAudio, WavReader, open_wav, read_wav, read_wav_channels, write_wav

__all__ = ["load_audio", "read_wav", "read_wav_channels", "write_wav", "resample",
           "StreamResampler", "WavAudio", "WavReader", "open_wav"]


def _resampled(reader: WavReader, stream: StreamResampler) -> Iterator[np.ndarray]:
    for block in reader.blocks():
        yield stream.process(block)
    yield stream.flush()


def load_audio(source: Source, target_rate: Optional[int] = None, *,
               name: Optional[str] = None) -> Tuple[np.ndarray, int]:
    """Decode a WAV (path, bytes or binary stream) to float32 mono in [-1, 1].

    Returns ``(samples, rate)``; with ``target_rate`` the samples are resampled to it
    (band-limited, see :mod:`edge_ser.resample`) and ``rate == target_rate``.
    Bad input raises :class:`~edge_ser.errors.AudioError` naming ``name`` (default:
    the path). Decoding and resampling go block by block, so the peak memory is the
    result plus a block, not the file at its own rate as well. (The result itself
    grows with the file: to classify a long file use
    :meth:`~edge_ser.classify.Classifier.classify_file`, which never holds it.)
    """
    with WavReader(source, name=name) as reader:
        rate = reader.sample_rate
        if target_rate is None or int(target_rate) == rate:
            return reader.read_all(), rate
        stream = StreamResampler(rate, int(target_rate))
        hint = reader.frames_hint()
        if hint is not None:  # known length: fill one array, no list of parts to join
            samples = np.empty(output_length(hint, stream.up, stream.down), dtype=np.float32)
            filled = 0
            for piece in _resampled(reader, stream):
                samples[filled:filled + piece.size] = piece
                filled += piece.size
            samples = samples[:filled]
        else:
            parts = list(_resampled(reader, stream))
            samples = np.concatenate(parts)
    # Resampling can overshoot full scale slightly (Gibbs); keep the [-1, 1] promise.
    np.clip(samples, -1.0, 1.0, out=samples)
    return samples, int(target_rate)
