"""Listening conditions besides the far-field one, for scoring models (never for choosing them).

The independent evaluation of issue 12 names three more: a telephone call (300-3400 Hz at
8 kHz), a voice two semitones higher, and a synthetic reverberant room. Two more come from the
device: the daemon classifies utterances from 0.4 s on, so ``short-1s`` and ``short-0.5s`` keep
the middle second or half second of each clip (a clip already shorter stays whole), which the
device then normalizes and pads as it does any short utterance. Each condition here is a
function of one clip's audio and a per-clip seed, so every model scored under it hears the
very same copy and the copy can be cached (:class:`converter.cache.Treatment`).

The voice shifts (:data:`VOICE_SHIFTS`) take ``pitch+2`` apart. A pitch shift that keeps the
tempo is two steps, a time stretch and a resampling, and the stretch can be made two ways: a
phase vocoder (librosa's, which ``pitch+2`` uses) keeps every frequency but smears the phase
between them, so voices sound washed and transients blur; WSOLA (sox's ``pitch`` and ``tempo``
effects) cuts and overlaps whole stretches of the waveform, so each stretch keeps its own
shape. Scored side by side with the resampling alone (``speed+2``: pitch, formants and tempo
together) and with each stretch alone (the tempo conditions, pitch kept), they tell what a
model loses to a higher voice from what it loses to the shifter; ``pitch-2-wsola`` is a voice as
much lower.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from .augment import reverberate, telephone_band

#: How far a "pitch" condition moves the voice, in semitones.
PITCH_STEPS = 2.0
#: The frequency (or tempo) ratio of :data:`PITCH_STEPS` semitones: 1.122 for 2.
SHIFT_FACTOR = float(2.0 ** (PITCH_STEPS / 12.0))
#: The synthetic room's reverberation time is drawn per clip from this range, in seconds.
REVERB_RT60 = (0.4, 0.8)


def _telephone(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    return telephone_band(signal, sample_rate)


def _pitch_up(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    import librosa  # workstation only

    return librosa.effects.pitch_shift(np.asarray(signal, dtype=np.float32), sr=sample_rate,
                                       n_steps=PITCH_STEPS).astype(np.float32)


def _speed_up(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    from .augment import change_speed

    return change_speed(np.asarray(signal, dtype=np.float32), SHIFT_FACTOR)


def _vocoder_tempo(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    import librosa  # workstation only

    return librosa.effects.time_stretch(np.asarray(signal, dtype=np.float32),
                                        rate=SHIFT_FACTOR).astype(np.float32)


def through_sox(signal: np.ndarray, sample_rate: int, *effect: str) -> np.ndarray:
    """``signal`` piped through the ``sox`` program's ``effect`` (32-bit float, mono, rate kept)."""
    program = shutil.which("sox")
    if program is None:
        raise RuntimeError("the WSOLA shifts need the sox program (apt-get install sox)")
    raw = ["-t", "f32", "-r", str(sample_rate), "-c", "1"]
    done = subprocess.run([program, *raw, "-", *raw, "-", *effect],
                          input=np.asarray(signal, dtype="<f4").tobytes(), capture_output=True, check=True)
    return np.frombuffer(done.stdout, dtype="<f4").astype(np.float32)


def wsola_pitch_shift(signal: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """``signal`` moved ``semitones`` up (down if negative), tempo kept, by sox's WSOLA ``pitch``
    effect (whole cents; zero gives the clip back untouched)."""
    cents = int(round(100 * semitones))
    return np.array(signal, dtype=np.float32) if cents == 0 else through_sox(signal, sample_rate, "pitch", str(cents))


def _sox(*effect: str) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """A condition that pipes the clip through the ``sox`` program's ``effect``."""
    def condition(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        return through_sox(signal, sample_rate, *effect)
    return condition


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
    "pitch+2-wsola": _sox("pitch", f"{100 * PITCH_STEPS:.0f}"),
    "pitch-2-wsola": _sox("pitch", f"{-100 * PITCH_STEPS:.0f}"),
    "speed+2": _speed_up,
    "tempo-vocoder": _vocoder_tempo,
    "tempo-wsola": _sox("tempo", "-s", f"{SHIFT_FACTOR:.4f}"),
}

#: The conditions of the listening-conditions tables: the independent evaluation's and the device's.
LISTENING = ("telephone", "pitch+2", "reverb", "short-1s", "short-0.5s")
#: ``pitch+2`` taken apart (see the module doc): the vocoder's and WSOLA's pitch shift, the
#: resampling alone, and each time stretch alone, all by :data:`PITCH_STEPS` semitones; and a
#: voice as much lower, by WSOLA.
VOICE_SHIFTS = ("pitch+2", "pitch+2-wsola", "speed+2", "tempo-vocoder", "tempo-wsola", "pitch-2-wsola")


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
