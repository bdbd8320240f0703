"""Band-limited sample-rate conversion in NumPy: polyphase windowed-sinc filtering.

The model hears 16 kHz; microphones and files come at 8, 11.025, 22.05, 44.1, 48,
96 kHz... A naive resampler (linear interpolation, or picking every third sample)
folds everything above the new Nyquist frequency back into the band the features
look at, and the model hears hiss and whistles it was never trained on. So this
module does it properly, without SciPy (not on the device path):

* **Rational factors.** ``orig -> target`` becomes ``up/down`` after dividing by the
  gcd (44100 -> 16000 is 160/441). Conceptually: insert ``up - 1`` zeros between
  samples, low-pass filter, keep every ``down``-th sample.
* **The filter** is a Kaiser-windowed sinc designed here: flat to 90 % of the lower
  Nyquist frequency, >= 80 dB down from the lower Nyquist on (so nothing that can
  alias survives above the noise floor of 16-bit audio). The Kaiser formulas give
  length and beta from those two numbers; each polyphase branch is normalized to
  unit DC gain so a constant input gives exactly that constant out.
* **Polyphase, only the outputs needed.** Output ``m`` sits at input time
  ``m * down / up`` and is ``sum_k x[k] h(m*down - k*up)``: only every ``up``-th
  filter tap meets a real sample, so no zero-stuffed signal is ever built. Outputs
  are computed in "rows" of ``P`` consecutive outputs that advance the input by a
  fixed stride; a row is one slice of input times a small per-group coefficient
  matrix, so the whole job is a few BLAS matrix products (fast even for an hour of
  48 kHz audio, in bounded blocks of memory).
* **Alignment** follows ``scipy.signal.resample_poly``: zero delay (the filter is
  centered on each output), zeros outside the signal, and ``ceil(n * up / down)``
  output samples.
* **Streaming** (:class:`StreamResampler`) runs the same rows as the input arrives,
  keeping only the input a future row still needs; its concatenated output equals
  :func:`resample` on the whole signal for any chunking.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import List, Tuple

import numpy as np

__all__ = ["resample", "StreamResampler", "design_filter", "resample_factors", "PASSBAND", "STOPBAND_DB"]

#: Passband edge as a fraction of the lower Nyquist frequency (flat below it).
PASSBAND = 0.90
#: Minimum stopband attenuation (dB) from the lower Nyquist frequency upward.
STOPBAND_DB = 80.0
_DESIGN_DB = STOPBAND_DB + 5.0  # Kaiser's formulas are approximate: design with margin
#: Rate ratios with larger up/down factors are approximated (see resample_factors). The
#: filter's length grows with the factor, so this bounds every plan (about 1 MB at most)
#: and its cost per sample, while every common rate pair stays exact (44.1 kHz -> 16 kHz
#: is 160/441, 11.025 kHz is 640/441, 48/96/192/384 kHz are 1/3../1/24).
MAX_FACTOR = 1 << 10
#: Bytes of filter plans kept for reuse (least recently used dropped first). A batch of
#: files at many odd rates costs this much at most, not one plan per rate.
PLAN_CACHE_BYTES = 8 << 20
_GROUP = 32  # outputs per matrix product (columns of a coefficient block)
_BLOCK_ELEMENTS = 1 << 19  # input-window elements per block (4 MB float64)
_COEFF_BUDGET = 1 << 20  # coefficients replicated across a row, at most (8 MB float64)


def resample_factors(orig_rate: int, target_rate: int) -> Tuple[int, int]:
    """``(up, down)`` with ``target/orig == up/down`` in lowest terms.

    Odd rate pairs (16001 -> 16000 Hz is 16000/16001, a prime rate even worse) would
    need filters with millions of taps; beyond :data:`MAX_FACTOR` the ratio is replaced
    by the closest fraction with factors up to it (16001 -> 16000 Hz becomes 1/1, a
    rate error of 62 ppm; 9999991 -> 16000 Hz becomes 1/625). For ratios between 1/24
    and 4 (4 to 384 kHz into 16 kHz) the relative error stays below 0.05 %, a pitch
    shift under 1 cent that the features do not resolve. Ratios beyond
    ``1:MAX_FACTOR`` either way raise ``ValueError``.
    """
    for name, rate in (("orig_rate", orig_rate), ("target_rate", target_rate)):
        if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise ValueError(f"{name} must be a positive integer, got {rate!r}")
    ratio = Fraction(int(target_rate), int(orig_rate))
    if not Fraction(1, MAX_FACTOR) <= ratio <= MAX_FACTOR:
        raise ValueError(f"cannot resample {orig_rate} Hz to {target_rate} Hz: "
                         f"ratio beyond 1:{MAX_FACTOR}")
    if max(ratio.numerator, ratio.denominator) > MAX_FACTOR:
        if ratio <= 1:
            ratio = ratio.limit_denominator(MAX_FACTOR)
        else:  # bound the numerator: approximate the inverse
            ratio = 1 / (1 / ratio).limit_denominator(MAX_FACTOR)
    return ratio.numerator, ratio.denominator


def _kaiser_params(attenuation_db: float, transition_rad: float) -> Tuple[float, int]:
    """Kaiser's empirical formulas: (beta, half-length) for a given spec."""
    a = attenuation_db
    if a > 50:
        beta = 0.1102 * (a - 8.7)
    elif a >= 21:
        beta = 0.5842 * (a - 21) ** 0.4 + 0.07886 * (a - 21)
    else:
        beta = 0.0
    taps = (a - 7.95) / (2.285 * transition_rad)
    return beta, int(math.ceil(taps / 2))


def design_filter(up: int, down: int) -> Tuple[float, int, float]:
    """``(cutoff, half_length, beta)`` of the prototype low-pass at rate ``up * orig``.

    ``cutoff`` is in cycles per (upsampled) sample. The lower Nyquist frequency is
    ``1 / (2 * max(up, down))`` there; the passband ends at :data:`PASSBAND` of it and
    the stopband starts at it.
    """
    ratio = max(up, down)
    nyquist = 0.5 / ratio
    passband = PASSBAND * nyquist
    cutoff = 0.5 * (passband + nyquist)
    beta, half = _kaiser_params(_DESIGN_DB, 2.0 * math.pi * (nyquist - passband))
    return cutoff, half, beta


def _taps(offsets: np.ndarray, cutoff: float, half: int, beta: float) -> np.ndarray:
    """Prototype filter values at integer offsets from its center (0 outside +-half)."""
    o = offsets.astype(np.float64)
    inside = np.abs(o) <= half
    ratio = np.where(inside, o / half, 1.0)
    window = np.i0(beta * np.sqrt(np.maximum(0.0, 1.0 - ratio * ratio))) / np.i0(beta)
    values = 2.0 * cutoff * np.sinc(2.0 * cutoff * o) * window
    return np.where(inside, values, 0.0)


class _Plan:
    """Everything about an up/down conversion that does not depend on the signal.

    Output ``m = s * P + u`` (row ``s``, position ``u``) reads the padded input
    ``xp[s * stride + col]`` for ``col`` in one window of ``width`` samples, where
    ``xp`` is the input preceded by ``pad`` zeros. Positions are split into groups
    of consecutive outputs; a group uses a column range of the window and a
    coefficient matrix ``(columns, outputs)``.
    """

    def __init__(self, up: int, down: int) -> None:
        self.up, self.down = up, down
        cutoff, half, beta = design_filter(up, down)
        self.half = half
        # Small `up`: put several periods in a row so the matrix products are fat enough
        # for BLAS, but keep the (mostly repeated) coefficients within a budget.
        taps_per_output = 2 * half // up + 1
        reps = max(1, min(-(-_GROUP // up), _COEFF_BUDGET // (up * taps_per_output)))
        self.outputs_per_row = reps * up
        self.stride = reps * down
        self.pad = half // up  # zeros before the input: the first output reaches back this far
        u = np.arange(self.outputs_per_row, dtype=np.int64)
        first = -((half - u * down) // up)  # ceil((u*down - half) / up)
        last = (u * down + half) // up
        self.width = int(last[-1]) + self.pad + 1
        self.groups: List[Tuple[int, int, int, int, np.ndarray]] = []
        for u0 in range(0, self.outputs_per_row, _GROUP):
            u1 = min(u0 + _GROUP, self.outputs_per_row)
            k0, k1 = int(first[u0:u1].min()), int(last[u0:u1].max()) + 1
            kappa = np.arange(k0, k1, dtype=np.int64)
            offsets = u[None, u0:u1] * down - kappa[:, None] * up
            coeffs = _taps(offsets, cutoff, half, beta)
            coeffs /= coeffs.sum(axis=0, keepdims=True)  # unit DC gain per output phase
            self.groups.append((u0, u1, k0 + self.pad, k1 + self.pad, np.ascontiguousarray(coeffs)))
        self.nbytes = sum(group[4].nbytes for group in self.groups)

    def rows(self, xp: np.ndarray, n_rows: int) -> np.ndarray:
        """Outputs of the first ``n_rows`` rows of padded input ``xp`` (which must hold
        ``(n_rows - 1) * stride + width`` samples)."""
        out = np.empty((n_rows, self.outputs_per_row), dtype=np.float32)
        step = max(1, _BLOCK_ELEMENTS // self.width)
        windows = np.lib.stride_tricks.sliding_window_view(xp, self.width)[:: self.stride]
        for r0 in range(0, n_rows, step):
            r1 = min(r0 + step, n_rows)
            # float64 sums: accurate, and (nearly always) bit-identical whatever the block
            # size, so streaming reproduces the batch result exactly.
            block = np.ascontiguousarray(windows[r0:r1], dtype=np.float64)
            for u0, u1, c0, c1, coeffs in self.groups:
                out[r0:r1, u0:u1] = block[:, c0:c1] @ coeffs
        return out.reshape(-1)


class _PlanCache:
    """Plans by ``(up, down)``, least recently used first out, bounded by their bytes.

    Shared by every resampler in the process (CLI batches, HTTP workers, the daemon),
    hence the lock. A plan larger than the whole budget is built but not kept.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._plans: "OrderedDict[Tuple[int, int], _Plan]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, up: int, down: int) -> _Plan:
        key = (up, down)
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        plan = _Plan(up, down)
        with self._lock:
            self._plans[key] = plan
            while self._plans and self.nbytes > self.budget:
                self._plans.popitem(last=False)
        return plan

    @property
    def nbytes(self) -> int:
        return sum(plan.nbytes for plan in self._plans.values())

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()


_PLANS = _PlanCache(PLAN_CACHE_BYTES)


def _plan(up: int, down: int) -> _Plan:
    return _PLANS.get(up, down)


def _as_mono(signal: np.ndarray) -> np.ndarray:
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D signal, got shape {x.shape}")
    return x.astype(np.float32, copy=False)


def output_length(n_samples: int, up: int, down: int) -> int:
    """``ceil(n * up / down)``, as ``scipy.signal.resample_poly``."""
    return -(-n_samples * up // down)


class StreamResampler:
    """Resample a stream chunk by chunk; output equals :func:`resample` on the whole.

    Holds at most one row window of input (a few hundred samples for common rates)
    plus the unconsumed part of the last chunk. After :meth:`flush` it starts over.
    """

    def __init__(self, orig_rate: int, target_rate: int) -> None:
        self.orig_rate = int(orig_rate)
        self.target_rate = int(target_rate)
        self.up, self.down = resample_factors(orig_rate, target_rate)
        self._identity = self.up == self.down
        self._plan = None if self._identity else _plan(self.up, self.down)
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (start of a new, unrelated signal)."""
        pad = 0 if self._plan is None else self._plan.pad
        self._buffer = np.zeros(pad, dtype=np.float32)  # padded input from the next row on
        self._samples_in = 0
        self._samples_out = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Add input samples; return every output sample they complete (float32)."""
        x = _as_mono(chunk)
        self._samples_in += x.size
        if self._plan is None:
            self._samples_out += x.size
            return x.copy()
        plan = self._plan
        buffer = np.concatenate([self._buffer, x]) if x.size else self._buffer
        n_rows = (buffer.size - plan.width) // plan.stride + 1 if buffer.size >= plan.width else 0
        if n_rows <= 0:
            self._buffer = buffer
            return np.zeros(0, dtype=np.float32)
        out = plan.rows(buffer, n_rows)
        self._buffer = buffer[n_rows * plan.stride:].copy()
        self._samples_out += out.size
        return out

    def flush(self) -> np.ndarray:
        """End of stream: the remaining outputs (zeros assumed after the end), then reset."""
        if self._plan is None:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        plan = self._plan
        missing = output_length(self._samples_in, self.up, self.down) - self._samples_out
        out = np.zeros(0, dtype=np.float32)
        if missing > 0:
            n_rows = -(-missing // plan.outputs_per_row)
            needed = (n_rows - 1) * plan.stride + plan.width
            buffer = self._buffer
            if buffer.size < needed:
                buffer = np.concatenate([buffer, np.zeros(needed - buffer.size, dtype=np.float32)])
            out = plan.rows(buffer, n_rows)[:missing]
        self.reset()
        return out


def resample(signal: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal from ``orig_rate`` to ``target_rate`` Hz (float32 out).

    ``ceil(len * up / down)`` samples, aligned like ``scipy.signal.resample_poly``.
    Equal rates return a float32 copy.
    """
    stream = StreamResampler(orig_rate, target_rate)
    x = _as_mono(signal)
    if stream.up == stream.down:
        return x.copy()
    head = stream.process(x)
    tail = stream.flush()
    return np.concatenate([head, tail]) if tail.size else head
