"""Cut a clip's feature matrix into the fixed-size windows a model takes.

Training and the device both call these functions, so a short clip is padded and a
long one is covered the same way in both places.

Padding (``center_min``): a clip shorter than the window is placed in the middle and
the rest is filled with the clip's smallest feature value, which after per-utterance
normalization is the closest thing to "silence in this clip's own scale". Silence
itself (a constant feature matrix) therefore becomes an all-constant window. Features of
several blocks side by side (``log="db+pcen"``, each block normalized on its own) are
padded block by block, each with its own minimum: every block's window is then exactly
the one its single-block features would give, which is what an ensemble member that
reads one block was trained on. ``blocks`` is ``FeatureConfig.n_blocks``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np

__all__ = ["window_starts", "split_windows", "random_window", "pad_value", "WindowCutter"]


def pad_value(features: np.ndarray, blocks: int = 1) -> "np.float32 | np.ndarray":
    """The fill value for padding: the clip's minimum (0 for an empty clip).

    With ``blocks`` > 1, one value per column: each block of columns gets its own minimum.
    """
    if blocks == 1:
        return np.float32(features.min()) if features.size else np.float32(0.0)
    n_feat = features.shape[1]
    if n_feat % blocks:
        raise ValueError(f"{n_feat} feature columns do not split into {blocks} blocks")
    per_block = features.reshape(features.shape[0], blocks, n_feat // blocks)
    lows = per_block.min(axis=(0, 2)) if features.size else np.zeros(blocks, np.float32)
    return np.repeat(lows.astype(np.float32), n_feat // blocks)


def _pad_to(features: np.ndarray, window_frames: int, offset: int, blocks: int = 1) -> np.ndarray:
    n_feat = features.shape[1]
    out = np.empty((window_frames, n_feat), dtype=np.float32)
    out[...] = pad_value(features, blocks)
    out[offset:offset + features.shape[0]] = features
    return out


def window_starts(n_frames: int, window_frames: int, hop_frames: int) -> List[int]:
    """Start frames of the windows that cover ``n_frames`` frames.

    Windows step by ``hop_frames``; if that leaves a tail uncovered, one more window
    is aligned with the end, so every frame is seen and no window is padded unless the
    whole clip is shorter than one window.
    """
    if n_frames <= window_frames:
        return [0]
    starts = list(range(0, n_frames - window_frames + 1, hop_frames))
    if starts[-1] + window_frames < n_frames:
        starts.append(n_frames - window_frames)
    return starts


def split_windows(
    features: np.ndarray, window_frames: int, hop_frames: int, blocks: int = 1
) -> Tuple[np.ndarray, List[int]]:
    """``(frames, F)`` -> ``(windows, window_frames, F)`` float32 and their start frames.

    A clip shorter than one window gives one centered, padded window (start 0).
    """
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if n < window_frames:
        return _pad_to(features, window_frames, (window_frames - n) // 2, blocks)[None], [0]
    starts = window_starts(n, window_frames, hop_frames)
    view = np.lib.stride_tricks.sliding_window_view(features, window_frames, axis=0)
    # sliding_window_view puts the window axis last: (n - W + 1, F, W)
    windows = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    return windows, starts


def random_window(
    features: np.ndarray, window_frames: int, rng: np.random.Generator, min_frames: Optional[int] = None,
    blocks: int = 1, shortened: Optional[Callable[[int, int], np.ndarray]] = None,
) -> np.ndarray:
    """A training crop: a random window of a long clip, or a short clip padded at a random place.

    ``min_frames`` (optional) first shortens the clip to a random length between it
    and the window, so the model also learns from padded windows like the device
    builds for short utterances. ``shortened(start, length)`` (optional) then gives the
    features of that stretch as the device computes a clip of it alone, in place of the
    rows cut from the longer clip's features: the device normalizes a short utterance over
    itself and starts its PCEN smoother at its first frame, while rows cut from a longer
    clip carry the longer clip's scaling and smoother. The random draws are the same either way.
    """
    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if min_frames is not None and n > min_frames:
        length = int(rng.integers(min_frames, min(n, window_frames) + 1))
        start = int(rng.integers(0, n - length + 1))
        if shortened is not None and length < n:
            features = np.asarray(shortened(start, length), dtype=np.float32)
        else:
            features = features[start:start + length]
        n = length
    if n >= window_frames:
        start = int(rng.integers(0, n - window_frames + 1))
        return features[start:start + window_frames].copy()
    offset = int(rng.integers(0, window_frames - n + 1))
    return _pad_to(features, window_frames, offset, blocks)


class WindowCutter:
    """:func:`split_windows` on a stream of frames: the same windows and starts, in order.

    :meth:`push` feature frames as they come; it returns the windows they complete
    (``(k, window_frames, F)`` float32) and their start frames. :meth:`flush` at the
    end returns what only the end decides: the window aligned with the last frame, or,
    for a clip shorter than one window, the one centered padded window. Memory is
    about one window plus one hop of frames, whatever the clip's length.
    """

    def __init__(self, window_frames: int, hop_frames: int, n_features: int, blocks: int = 1) -> None:
        if window_frames <= 0 or hop_frames <= 0:
            raise ValueError("window_frames and hop_frames must be positive")
        self.blocks = blocks
        self.window_frames = window_frames
        self.hop_frames = hop_frames
        self.n_features = n_features
        self._buffer = np.zeros((0, n_features), dtype=np.float32)
        self._buffer_start = 0  # frame index of _buffer[0]
        self._next_start = 0
        self.frames = 0  # frames pushed so far

    def _none(self) -> Tuple[np.ndarray, List[int]]:
        return np.zeros((0, self.window_frames, self.n_features), dtype=np.float32), []

    def push(self, frames: np.ndarray) -> Tuple[np.ndarray, List[int]]:
        """Add frames ``(k, F)``; return the windows now complete and their starts."""
        frames = np.asarray(frames, dtype=np.float32)
        if frames.shape[0] == 0:
            return self._none()
        self._buffer = np.concatenate([self._buffer, frames]) if self._buffer.size else frames.copy()
        self.frames += frames.shape[0]
        W = self.window_frames
        starts: List[int] = []
        while self._next_start + W <= self.frames:
            starts.append(self._next_start)
            self._next_start += self.hop_frames
        windows = (np.stack([self._buffer[s - self._buffer_start: s - self._buffer_start + W] for s in starts])
                   if starts else self._none()[0])
        # keep what a later window may need: from the next regular start, or the last
        # W frames (the end-aligned window), whichever comes first
        keep_from = max(self._buffer_start, min(self._next_start, self.frames - W))
        if keep_from > self._buffer_start:
            self._buffer = self._buffer[keep_from - self._buffer_start:].copy()
            self._buffer_start = keep_from
        return windows, starts

    def flush(self) -> Tuple[np.ndarray, List[int]]:
        """End of the clip: the end-aligned or the padded window (if any), then reset."""
        W, n = self.window_frames, self.frames
        out = self._none()
        if n < W:
            out = _pad_to(self._buffer, W, (W - n) // 2, self.blocks)[None], [0]
        elif self._next_start - self.hop_frames + W < n:
            start = n - W
            out = self._buffer[start - self._buffer_start:][None].copy(), [start]
        self.__init__(self.window_frames, self.hop_frames, self.n_features, self.blocks)  # type: ignore[misc]
        return out
