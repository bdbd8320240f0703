"""Listening conditions besides the far-field one, for scoring models (never for choosing them).

The independent evaluation of issue 12 names three more: a telephone call (300-3400 Hz at
8 kHz), a voice two semitones higher, and a synthetic reverberant room. Two more come from the
device: the daemon classifies utterances from 0.4 s on, so ``short-1s`` and ``short-0.5s`` keep
the middle second or half second of each clip (a clip already shorter stays whole), which the
device then normalizes and pads as it does any short utterance. Each condition here is a
function of one clip's audio and a per-clip seed, so every model scored under it hears the
very same copy and the copy can be cached (:class:`converter.cache.Treatment`).
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from .augment import reverberate, telephone_band

#: How far a "pitch" condition moves the voice, in semitones.
PITCH_STEPS = 2.0
#: The synthetic room's reverberation time is drawn per clip from this range, in seconds.
REVERB_RT60 = (0.4, 0.8)


def _telephone(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    return telephone_band(signal, sample_rate)


def _pitch_up(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    import librosa  # workstation only

    return librosa.effects.pitch_shift(np.asarray(signal, dtype=np.float32), sr=sample_rate,
                                       n_steps=PITCH_STEPS).astype(np.float32)


def _reverb(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    peak = float(np.max(np.abs(signal))) + 1e-12
    wet = reverberate(np.asarray(signal, dtype=np.float32), sample_rate, float(rng.uniform(*REVERB_RT60)), rng)
    return (wet * (peak / (float(np.max(np.abs(wet))) + 1e-12))).astype(np.float32)


def _middle(seconds: float) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """A condition keeping the middle ``seconds`` of a clip: a short utterance of the same voice."""
    def keep_middle(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        keep = int(round(seconds * sample_rate))
        start = max(0, (len(signal) - keep) // 2)
        return np.array(signal[start:start + keep], dtype=np.float32)
    return keep_middle


#: Condition name -> function of (audio, sample rate, per-clip generator) -> degraded audio.
CONDITIONS: Dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "telephone": _telephone,
    "pitch+2": _pitch_up,
    "reverb": _reverb,
    "short-1s": _middle(1.0),
    "short-0.5s": _middle(0.5),
}


def check_conditions(names: Sequence[str]) -> Tuple[str, ...]:
    """``names`` if each is a :data:`CONDITIONS` key; else a ValueError naming the first that is not."""
    for name in names:
        if name not in CONDITIONS:
            raise ValueError(f"unknown condition {name!r}; known: {', '.join(CONDITIONS)}")
    return tuple(names)


def apply_condition(name: str, signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``signal`` as heard under condition ``name`` (a :data:`CONDITIONS` key)."""
    check_conditions([name])
    return CONDITIONS[name](signal, sample_rate, rng)
