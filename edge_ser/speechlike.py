"""Speech-like test audio made with NumPy alone, for when no corpus is at hand.

Why not plain tones or noise: the frontend's and the model's cost does not depend on
what the audio says, but a daemon's segmentation and a classifier's windows do depend
on it looking like speech: voiced stretches with a moving pitch and moving formants,
syllables a few per second, and pauses between phrases. This module makes exactly
that, deterministically from a seed, so the benchmarks (`edge-ser bench`, `device/bench.py`) and the arm64 check can run
on a Pi without the corpus. It is additive synthesis (harmonics of a gliding f0 weighted by
formant peaks), vectorized, a fraction of a second for a minute of audio.
"""

from __future__ import annotations

import numpy as np

__all__ = ["speechlike"]

# (F1, F2, F3) in Hz of a few vowels; a "syllable" picks one.
_VOWELS = np.array([
    (730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240),
    (530, 1840, 2480), (570, 840, 2410), (660, 1720, 2410),
], dtype=np.float64)


def speechlike(seconds: float, rate: int = 16000, seed: int = 0, pause_every: float = 2.5) -> np.ndarray:
    """``seconds`` of mono float32 in [-1, 1]: phrases of syllables separated by pauses.

    ``pause_every`` is the mean phrase length in seconds; each phrase is followed by
    0.3-0.8 s of near-silence (low noise), which is what a voice-activity detector
    should cut on.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    if n <= 0:
        return np.zeros(0, dtype=np.float32)
    t = np.arange(n) / rate

    # Syllables: ~4 per second, each with its own vowel and pitch target.
    syllable_s = 0.25
    n_syl = int(np.ceil(seconds / syllable_s)) + 1
    syl_index = np.minimum((t / syllable_s).astype(np.int64), n_syl - 1)
    vowels = _VOWELS[rng.integers(0, len(_VOWELS), n_syl)]
    base_f0 = rng.uniform(100.0, 220.0)
    f0_targets = base_f0 * rng.uniform(0.8, 1.3, n_syl)
    # Glide smoothly between syllable targets (linear interpolation at syllable centers).
    centers = (np.arange(n_syl) + 0.5) * syllable_s
    f0 = np.interp(t, centers, f0_targets) * (1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    formants = np.stack([np.interp(t, centers, vowels[:, k]) for k in range(3)], axis=0)
    phase = 2.0 * np.pi * np.cumsum(f0) / rate

    voiced = np.zeros(n)
    bandwidths = np.array([90.0, 110.0, 170.0])[:, None]
    gains = np.array([1.0, 0.6, 0.3])[:, None]
    for k in range(1, 40):
        freq = k * f0
        audible = freq < rate / 2 - 200
        if not audible.any():
            break
        weight = (gains * np.exp(-0.5 * ((freq[None, :] - formants) / bandwidths) ** 2)).sum(axis=0)
        voiced += np.where(audible, weight / k ** 0.5, 0.0) * np.sin(k * phase)

    # Syllable envelope (rise and fall within each syllable) and phrase pauses.
    within = (t % syllable_s) / syllable_s
    envelope = np.sin(np.pi * within) ** 0.7 * rng.uniform(0.5, 1.0, n_syl)[syl_index]
    speaking = np.ones(n, dtype=bool)
    cursor = rng.uniform(0.0, 0.3)
    while cursor < seconds:
        phrase = rng.uniform(0.6, 1.4) * pause_every
        pause = rng.uniform(0.3, 0.8)
        start, stop = int((cursor + phrase) * rate), int((cursor + phrase + pause) * rate)
        speaking[start:stop] = False
        cursor += phrase + pause
    # Fricative-like noise bursts at some syllable onsets.
    hiss = rng.standard_normal(n) * (within < 0.15) * (rng.random(n_syl) < 0.4)[syl_index]
    x = (voiced * envelope + 0.3 * np.diff(hiss, prepend=0.0)) * speaking
    x = x / max(1e-9, float(np.abs(x).max()))
    x = 0.7 * x + 0.002 * rng.standard_normal(n)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
