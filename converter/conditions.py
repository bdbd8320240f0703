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

The backgrounds (:data:`BACKGROUNDS`) put other voices behind the speaker, a TV or a room of
people, where the far-field condition has only non-speech noise: one talker (``talker``) or four
(``babble``) made of words of a corpus no recipe trains on, against the far-field condition's
held-out noise recordings alone (``noise``), each at the far-field SNR and nothing else (no room,
no attenuation). Another voice carries an emotion of its own, which noise does not.

``far-field-crowd`` puts those voices across a room: the far-field condition's held-out room, SNR
and attenuation, with four of them in place of its noise; ``far-field`` is the far-field condition
itself, one copy per clip, to read it against.

``mic`` is the microphone itself: the corpora were recorded on studio or good headset
microphones, the device hears whatever USB microphone its owner plugs in. Each clip passes
through one drawn response of a cheap capsule (:func:`microphone_response`: the low end rolled
off at 80-300 Hz, on half the clips the top at 4-7.5 kHz, and +-6 dB of smooth ripple), its
peak kept.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from .augment import reverberate, telephone_band
from .corpora import Item

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


def _scaled_to_peak(changed: np.ndarray, peak: float) -> np.ndarray:
    """``changed`` scaled so that its largest magnitude is ``peak`` (the clip's before a filter or a
    room changed its level), as float32: a condition changes the sound, not how loud it is."""
    return (changed * (peak / (float(np.max(np.abs(changed))) + 1e-12))).astype(np.float32)


def _reverb(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    peak = float(np.max(np.abs(signal))) + 1e-12
    wet = reverberate(np.asarray(signal, dtype=np.float32), sample_rate, float(rng.uniform(*REVERB_RT60)), rng)
    return _scaled_to_peak(wet, peak)


def _middle(seconds: float) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """A condition keeping the middle ``seconds`` of a clip: a short utterance of the same voice."""
    def keep_middle(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        keep = int(round(seconds * sample_rate))
        start = max(0, (len(signal) - keep) // 2)
        return np.array(signal[start:start + keep], dtype=np.float32)
    return keep_middle


#: The SNR range of the background conditions, in dB against the speech: the far-field one's.
BACKGROUND_SNR_DB = (5.0, 20.0)
#: The corpus whose words are the background voices: one no recipe trains on (unseen speakers
#: and language), so a background voice is never one the model learned.
BACKGROUND_VOICES_CORPUS = "baved"
#: Words kept per background speaker (enough to fill a clip with several voices).
BACKGROUND_WORDS_PER_SPEAKER = 6


def voice_bank(items: Sequence[Item], per_speaker: int, sample_rate: int) -> Tuple[Tuple[np.ndarray, ...], ...]:
    """Background voices from ``items``: per speaker (by corpus, then name), the first
    ``per_speaker`` of their clips, in the order given, that decode to samples. Speakers with no
    such clip are left out."""
    from .audio_io import load_clip

    clips: Dict[Tuple[str, str], List[np.ndarray]] = {}
    for item in items:
        kept = clips.setdefault((item.corpus, item.speaker), [])
        if len(kept) < per_speaker:
            clip = load_clip(item.path, sample_rate)
            if clip.size:
                kept.append(clip)
    return tuple(tuple(kept) for _, kept in sorted(clips.items()) if kept)


@functools.lru_cache(maxsize=2)
def background_voices(root: str, sample_rate: int) -> Tuple[Tuple[np.ndarray, ...], ...]:
    """The background voices' words: per speaker of :data:`BACKGROUND_VOICES_CORPUS` under
    ``root``, their first :data:`BACKGROUND_WORDS_PER_SPEAKER` words (decoded once per process)."""
    from .corpora import read_corpus

    folder = Path(root) / BACKGROUND_VOICES_CORPUS
    if not folder.is_dir():
        raise RuntimeError(f"{folder}: the background-voice conditions need the {BACKGROUND_VOICES_CORPUS} corpus")
    voices = voice_bank(read_corpus(folder), BACKGROUND_WORDS_PER_SPEAKER, sample_rate)
    if not voices:
        raise RuntimeError(f"{folder}: no word to make a background voice of")
    return voices


def voice_stream(words: Sequence[np.ndarray], length: int, sample_rate: int, rng: np.random.Generator
                 ) -> np.ndarray:
    """One background talker: ``words`` (at least one) in a random order, 0.1-0.4 s apart, looped
    to ``length`` samples from a random start, at unit RMS."""
    if not words:
        raise ValueError("a background talker needs at least one word")
    parts: List[np.ndarray] = []
    total = 0
    while total < 2 * length or not parts:
        for k in rng.permutation(len(words)):
            gap = np.zeros(int(rng.uniform(0.1, 0.4) * sample_rate), dtype=np.float32)
            parts += [gap, np.asarray(words[k], dtype=np.float32)]
            total += gap.size + words[k].size
    stream = np.concatenate(parts)
    start = int(rng.integers(0, stream.size - length + 1))
    piece = stream[start:start + length].astype(np.float64)
    level = float(np.sqrt(np.mean(piece ** 2))) if piece.size else 0.0
    return (piece / level if level > 0 else piece).astype(np.float32)


def voices_behind(bank: Sequence[Sequence[np.ndarray]], count: int, length: int, sample_rate: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct speakers of ``bank`` (all of them if it has fewer), each a
    :func:`voice_stream` of ``length`` samples, summed: the sound of other people talking."""
    chosen = rng.choice(len(bank), size=min(count, len(bank)), replace=False)
    return np.asarray(sum(voice_stream(bank[int(k)], length, sample_rate, rng) for k in chosen), dtype=np.float32)


def _talkers(count: int) -> Callable[[np.ndarray, int, np.random.Generator], np.ndarray]:
    """A condition: ``count`` background talkers (distinct speakers of :data:`BACKGROUND_VOICES_CORPUS`)
    summed and mixed at an SNR drawn from :data:`BACKGROUND_SNR_DB`: a TV or a room of people."""
    def behind(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        from .corpora import datasets_dir
        from .rooms import mix_at_snr

        x = np.asarray(signal, dtype=np.float32)
        voices = voices_behind(background_voices(str(datasets_dir()), sample_rate), count, x.size, sample_rate, rng)
        return mix_at_snr(x, voices, float(rng.uniform(*BACKGROUND_SNR_DB)))
    return behind


def _held_out_noise(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The far-field condition's held-out noise recordings alone, at the background SNR: the
    reference the background voices are read against."""
    from .rooms import load_bank, mix_at_snr, noise_segment

    x = np.asarray(signal, dtype=np.float32)
    noises = load_bank("test", sample_rate=sample_rate).noises
    noise = noise_segment(noises[int(rng.integers(len(noises)))], x.size, rng)
    return mix_at_snr(x, noise, float(rng.uniform(*BACKGROUND_SNR_DB)))


def _far_field(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The protocol's far-field condition, one copy: a held-out room, held-out noise at 5-20 dB
    against the reverberant speech, 0-20 dB quieter (:func:`converter.rooms.far_field`)."""
    from .rooms import far_field, load_bank

    return far_field(signal, load_bank("test", sample_rate=sample_rate), rng)


#: ``far-field-crowd``: how many people talk behind the speaker.
CROWD_VOICES = 4


def _far_field_crowd(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The far-field condition with a room of people in place of its noise: the same held-out room,
    SNR and attenuation, and behind the speaker :data:`CROWD_VOICES` voices of the unseen-language
    corpus (``babble``'s), as a TV or a gathering sounds across a room."""
    from .corpora import datasets_dir
    from .rooms import far_field, load_bank

    bank = background_voices(str(datasets_dir()), sample_rate)

    def crowd(length: int, generator: np.random.Generator) -> np.ndarray:
        return voices_behind(bank, CROWD_VOICES, length, sample_rate, generator)

    return far_field(signal, load_bank("test", sample_rate=sample_rate), rng, background=crowd)


#: ``mic``: where a cheap microphone's low end rolls off (a second-order high-pass), in Hz.
MIC_HIGH_PASS_HZ = (80.0, 300.0)
#: ``mic``: where its top rolls off (second-order low-pass), on :data:`MIC_LOW_PASS_SHARE` of the clips.
MIC_LOW_PASS_HZ = (4000.0, 7500.0)
MIC_LOW_PASS_SHARE = 0.5
#: ``mic``: the bumps and dips of a small capsule, its housing and a phone's or USB dongle's
#: filtering: a gain drawn from +-MIC_RIPPLE_DB at each of MIC_ANCHORS log-spaced frequencies
#: between MIC_ANCHOR_HZ, joined smoothly in log frequency.
MIC_RIPPLE_DB = 6.0
MIC_ANCHORS = 6
MIC_ANCHOR_HZ = (150.0, 7000.0)
#: ``mic``: the length of the linear-phase filter that applies the response (16 ms at 16 kHz).
MIC_TAPS = 257


def microphone_response(sample_rate: int, rng: np.random.Generator, points: int = 513
                        ) -> Tuple[np.ndarray, np.ndarray]:
    """One cheap microphone's magnitude response, drawn: (frequencies in Hz, linear gains).

    A roll-off below a drawn corner, on half the draws one above another, and a smooth ripple of
    a few dB: what separates a USB or phone capsule from the studio microphones of the corpora.
    The response has no phase of its own (the filter that applies it is linear-phase): a
    microphone's phase is not what a model on magnitudes can hear.
    """
    nyquist = sample_rate / 2.0
    hz = np.linspace(0.0, nyquist, points)
    low, high = (np.log(f) for f in MIC_ANCHOR_HZ)
    anchors = np.linspace(low, high, MIC_ANCHORS)
    ripple_db = rng.uniform(-MIC_RIPPLE_DB, MIC_RIPPLE_DB, MIC_ANCHORS)
    log_hz = np.log(np.maximum(hz, 1.0))
    gain = 10.0 ** (np.interp(log_hz, anchors, ripple_db) / 20.0)
    corner = float(rng.uniform(*MIC_HIGH_PASS_HZ))
    gain *= 1.0 / np.sqrt(1.0 + (corner / np.maximum(hz, 1e-3)) ** 4)
    if rng.random() < MIC_LOW_PASS_SHARE:
        top = min(float(rng.uniform(*MIC_LOW_PASS_HZ)), 0.95 * nyquist)
        gain *= 1.0 / np.sqrt(1.0 + (hz / top) ** 4)
    return hz, gain


def _microphone(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """The clip as a cheap microphone would have picked it up (:func:`microphone_response`), its
    peak kept."""
    from scipy.signal import fftconvolve, firwin2  # workstation only

    x = np.asarray(signal, dtype=np.float32)
    hz, gain = microphone_response(sample_rate, rng)
    taps = firwin2(MIC_TAPS, hz, gain, fs=sample_rate)
    delay = (MIC_TAPS - 1) // 2
    y = fftconvolve(x, taps)[delay:delay + x.size]
    return _scaled_to_peak(y, float(np.max(np.abs(x))) + 1e-12)


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
    "noise": _held_out_noise,
    "talker": _talkers(1),
    "babble": _talkers(4),
    "mic": _microphone,
    "far-field": _far_field,
    "far-field-crowd": _far_field_crowd,
}

#: The conditions of the listening-conditions tables: the independent evaluation's and the device's.
LISTENING = ("telephone", "pitch+2", "reverb", "short-1s", "short-0.5s")
#: ``pitch+2`` taken apart (see the module doc): the vocoder's and WSOLA's pitch shift, the
#: resampling alone, and each time stretch alone, all by :data:`PITCH_STEPS` semitones; and a
#: voice as much lower, by WSOLA.
VOICE_SHIFTS = ("pitch+2", "pitch+2-wsola", "speed+2", "tempo-vocoder", "tempo-wsola", "pitch-2-wsola")


#: Other voices behind the speaker (a TV, a room of people) against real noise at the same SNR:
#: ``noise`` (the held-out noise recordings), ``talker`` (one unseen-language voice) and
#: ``babble`` (four of them).
BACKGROUNDS = ("noise", "talker", "babble")
#: The microphone the device hears through: ``mic``, a cheap capsule's response (roll-offs and a
#: few dB of ripple, :func:`microphone_response`), beside ``telephone``, the narrowest channel.
MICROPHONES = ("telephone", "mic")
#: Across a room with people in it: the far-field condition (``far-field``, one copy per clip, as
#: the protocol's RAVDESS far-field) beside the same rooms, SNR and attenuation with four voices
#: behind the speaker in place of the noise (``far-field-crowd``).
CROWD = ("far-field", "far-field-crowd")
#: Conditions whose sound is taken from a corpus: never scored on that corpus's own clips.
BORROWS_FROM: Dict[str, str] = {"talker": BACKGROUND_VOICES_CORPUS, "babble": BACKGROUND_VOICES_CORPUS,
                                "far-field-crowd": BACKGROUND_VOICES_CORPUS}


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
