"""Audio to model-ready features in bounded memory: the one path for files, bytes, stdin, arrays.

decode (:class:`~edge_ser.wav.WavReader`, blocks) -> mono -> resample
(:class:`~edge_ser.resample.StreamResampler`) -> frame stage
(:class:`~edge_ser.features.StreamingFeatures`) -> utterance stage
(:class:`~edge_ser.features.UtteranceStats`).

Every step works on chunks, so memory does not grow with the clip's length. The one
step that needs the whole clip is the utterance stage (per-utterance normalization,
which the model is trained on and which stays exactly as defined): its statistics
come from a first pass over the frames, and the normalized frames from a second.
Where the second pass reads from:

* a clip whose frames fit in :data:`FRAME_CACHE_BYTES` (about 160 s of audio for the
  shipped model) keeps them from the first pass: short clips are decoded once;
* a longer **seekable** input (a path, bytes, a regular file) is decoded again from
  its start (:meth:`~edge_ser.wav.WavReader.rewind`); an array is simply re-read;
* a longer **non-seekable** input (stdin, a pipe, a FIFO) has its frames spooled to
  an anonymous temporary file (``$TMPDIR``; 25.6 KB per second of audio for the
  shipped model), up to :data:`MAX_UNSEEKABLE_SECONDS` of audio; beyond that it is
  refused with an :class:`~edge_ser.errors.AudioError` (save it to a file instead).

A feature config whose utterance stage is the identity (``frame_local``) needs one
pass, and then no input has a length limit. The frames are bit-identical to
:func:`~edge_ser.features.log_mel` on the whole decoded, resampled signal (see
:class:`~edge_ser.features.UtteranceStats` for the float64 moments).
"""

from __future__ import annotations

import tempfile
from typing import BinaryIO, Callable, Iterator, List, Optional

import numpy as np

from .errors import AudioError
from .features import FeatureConfig, StreamingFeatures, UtteranceStats
from .resample import StreamResampler

__all__ = ["ClipFeatures", "MAX_UNSEEKABLE_SECONDS", "FRAME_CACHE_BYTES"]

#: Longest audio (seconds) accepted from a non-seekable input when the features need a
#: second pass: one hour, 92 MB of spooled frames for the shipped model.
MAX_UNSEEKABLE_SECONDS = 3600
#: First-pass frames kept in memory for the second pass (clips up to this size are decoded once).
FRAME_CACHE_BYTES = 4 << 20
_SPOOL_READ_FRAMES = 1024

#: A function returning the clip's sample chunks (source rate, mono float32) from the start.
ChunkSource = Callable[[], Iterator[np.ndarray]]


class ClipFeatures:
    """The model-ready features of one clip, produced chunk by chunk.

    ``chunks`` yields the clip's mono float32 samples at ``rate`` from its start each
    time it is called; ``replayable`` says whether it may be called more than once (a
    seekable source). ``clip`` limits resampled samples to [-1, 1] as
    :func:`~edge_ser.audio.load_audio` does for files. :meth:`frames` yields the
    normalized feature frames in order; afterwards :attr:`samples` (at the model rate),
    :attr:`duration` and :attr:`level_sumsq` describe the clip.
    """

    def __init__(self, chunks: ChunkSource, rate: int, config: FeatureConfig, *, replayable: bool,
                 clip: bool = False, name: Optional[str] = None,
                 max_unseekable_seconds: float = MAX_UNSEEKABLE_SECONDS) -> None:
        self._chunks = chunks
        self.rate = int(rate)
        self.config = config
        self.replayable = replayable
        self.clip = clip
        self.name = name
        self.max_unseekable_seconds = max_unseekable_seconds
        self.samples = 0
        self.level_sumsq = 0.0

    @property
    def duration(self) -> float:
        """Seconds of audio at the model rate (valid after :meth:`frames`)."""
        return self.samples / self.config.sample_rate

    # -- one pass over the source ----------------------------------------------------------
    def _model_rate(self, count: bool) -> Iterator[np.ndarray]:
        target = self.config.sample_rate
        resampler = None if self.rate == target else StreamResampler(self.rate, target)

        def out(y: np.ndarray) -> np.ndarray:
            if self.clip and resampler is not None:
                np.clip(y, -1.0, 1.0, out=y)  # resampling can overshoot full scale (Gibbs)
            if count:
                self.samples += y.size
                self.level_sumsq += float(np.dot(y.astype(np.float64), y.astype(np.float64)))
            return y

        for chunk in self._chunks():
            y = resampler.process(chunk) if resampler is not None else np.asarray(chunk, dtype=np.float32)
            if y.size:
                yield out(y)
        if resampler is not None:
            tail = resampler.flush()
            if tail.size:
                yield out(tail)

    def _frame_pass(self, count: bool) -> Iterator[np.ndarray]:
        stream = StreamingFeatures(self.config)
        for x in self._model_rate(count):
            frames = stream.push(x)
            if frames.shape[0]:
                yield frames
        frames = stream.flush()
        if frames.shape[0]:
            yield frames

    # -- the passes --------------------------------------------------------------------------
    def frames(self) -> Iterator[np.ndarray]:
        """Normalized feature frames ``(k, n_features)`` float32, in order, in bounded chunks."""
        self.samples, self.level_sumsq = 0, 0.0
        stats = UtteranceStats(self.config)
        if stats.done:  # frame-local features: one pass, nothing to keep
            yield from self._frame_pass(count=True)
            return
        replay = _Replay(self)
        for frames in replay.first_pass():
            stats.update(frames)
        stats.end_pass()
        try:
            while not stats.done:
                for frames in replay.again():
                    stats.update(frames)
                stats.end_pass()
            for frames in replay.again():
                yield stats.apply(frames)
        finally:
            replay.close()


class _Replay:
    """The first pass's frames, again: from memory, from the source, or from a spool file."""

    def __init__(self, clip: ClipFeatures) -> None:
        self._clip = clip
        self._cache: Optional[List[np.ndarray]] = []
        self._cache_bytes = 0
        self._spool: Optional[BinaryIO] = None

    def first_pass(self) -> Iterator[np.ndarray]:
        clip = self._clip
        cfg = clip.config
        max_frames = int(clip.max_unseekable_seconds * cfg.sample_rate / cfg.hop_length) + 1
        seen = 0
        for frames in clip._frame_pass(count=True):
            seen += frames.shape[0]
            if not clip.replayable and seen > max_frames:
                self._refuse()
            if self._cache is not None:
                self._cache.append(frames)
                self._cache_bytes += frames.nbytes
                if self._cache_bytes > FRAME_CACHE_BYTES:
                    if not clip.replayable:
                        self._spool = tempfile.TemporaryFile(prefix="edge-ser-frames-")
                        for kept in self._cache:
                            self._write(kept)
                    self._cache = None
            elif self._spool is not None:
                self._write(frames)
            yield frames

    def _refuse(self) -> None:
        seconds = self._clip.max_unseekable_seconds
        raise AudioError(f"longer than {seconds:g} s of audio, the limit for a non-seekable input "
                         f"(stdin, a pipe) whose features need the whole clip: save it to a file "
                         f"and classify the file", self._clip.name)

    def _write(self, frames: np.ndarray) -> None:
        self._spool.write(np.ascontiguousarray(frames, dtype=np.float32).tobytes())  # type: ignore[union-attr]

    def again(self) -> Iterator[np.ndarray]:
        if self._cache is not None:
            yield from self._cache
        elif self._spool is not None:
            n_features = self._clip.config.n_features
            self._spool.seek(0)
            while True:
                raw = self._spool.read(_SPOOL_READ_FRAMES * n_features * 4)
                if not raw:
                    return
                yield np.frombuffer(raw, dtype=np.float32).reshape(-1, n_features)
        else:
            yield from self._clip._frame_pass(count=False)

    def close(self) -> None:
        self._cache = None
        if self._spool is not None:
            self._spool.close()
            self._spool = None
