"""Data augmentation, in the audio domain (precomputed) and the feature domain (online).

Audio-domain variants are deterministic functions of ``(clip, variant number, seed)``
so they can be cached on disk. Six recipes exist (:data:`AUGMENTATIONS`, and ``room-voices``):

* ``studio`` (the first shipped model): gain, synthetic white/pink/brown noise at
  10-35 dB SNR, a mild synthetic reverberation and a speed perturbation;
* ``room`` (issue 12): what a Pi across a room hears. Measured impulse responses of the
  *training* places, real noise recordings of the training side at 0-25 dB SNR, strong
  attenuation, telephone band and low-bit-rate Opus, plus speed perturbation
  (:mod:`converter.rooms` keeps the held-out places and recordings for evaluation);
* ``room-sim``: ``room`` with simulated shoebox rooms (pyroomacoustics) for a third of the
  copies, beside the measured ones (:mod:`converter.simulated_rooms`);
* ``room-voices``: ``room`` with other voices behind the speaker in place of a share of the real
  noise, voices of the run's own training speakers (:func:`register_voices`; the cache key
  names the bank, ``room-voices:<digest>``);
* ``room-mic``: ``room`` with half of its copies heard through another microphone, a random
  equalizer drawn by audiomentations (:func:`another_microphone`);
* ``room-pitch``: ``room`` with half of its copies spoken by a voice pitched higher or lower, its
  formants and timing kept (:func:`transpose_voice`, Praat's PSOLA).

Variant 0 is always the clean clip.

Feature-domain augmentation runs on every training step: random crops (through
:func:`edge_ser.windows.random_window`, so padding matches the device), optionally a warp of
the mel axis (another vocal tract length), SpecAugment time/frequency masks, and mixup of whole
windows and their labels.
"""

from __future__ import annotations

import functools
import zlib
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from edge_ser.windows import pad_value, random_window

from .corpora import Item

# -- audio domain ---------------------------------------------------------------------------


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise whose power spectrum falls as 1/f^0 (white), 1/f (pink) or 1/f^2 (brown)."""
    exponent = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.arange(spectrum.size, dtype=np.float64)
    freqs[0] = 1.0
    spectrum /= freqs ** (exponent / 2)
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise ** 2)) + 1e-12)).astype(np.float32)


def add_noise(signal: np.ndarray, snr_db: float, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Mix noise at ``snr_db`` relative to the clip's RMS."""
    rms = float(np.sqrt(np.mean(signal.astype(np.float64) ** 2))) + 1e-9
    noise = coloured_noise(signal.size, colour, rng) * rms / (10.0 ** (snr_db / 20.0))
    return signal + noise


def synthetic_rir(sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: direct path plus exponentially decaying noise (-60 dB at rt60)."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    decay = np.exp(-6.9078 * t / rt60)  # ln(1000): amplitude -60 dB at rt60
    rir = rng.standard_normal(n) * decay
    rir[: int(0.002 * sample_rate)] = 0.0  # a short gap before the first reflections
    rir *= 0.3 / (np.sqrt(np.sum(rir ** 2)) + 1e-12)  # diffuse energy below the direct path
    rir[0] = 1.0
    return rir.astype(np.float32)


def reverberate(signal: np.ndarray, sample_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    from .rooms import convolve

    return convolve(signal, synthetic_rir(sample_rate, rt60, rng))


def change_speed(signal: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch rises with it), by polyphase resampling."""
    from fractions import Fraction

    from scipy.signal import resample_poly  # workstation only

    ratio = Fraction(1.0 / factor).limit_denominator(100)
    return resample_poly(signal, ratio.numerator, ratio.denominator).astype(np.float32)


def variant_seed(path: str, variant: int, seed: int) -> int:
    """A stable seed per (clip, variant): independent of file order and of Python's hash()."""
    return zlib.crc32(f"{path}|{variant}|{seed}".encode("utf-8"))


def augment_audio(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """One random audio-domain variant of ``signal`` and a short description of it."""
    x = np.asarray(signal, dtype=np.float32)
    steps = []
    if rng.random() < 0.6:
        factor = float(rng.choice([0.9, 0.95, 1.05, 1.1]))
        x = change_speed(x, factor)
        steps.append(f"speed{factor:g}")
    if rng.random() < 0.35:
        rt60 = float(rng.uniform(0.15, 0.5))
        x = reverberate(x, sample_rate, rt60, rng)
        steps.append(f"rt60={rt60:.2f}")
    if rng.random() < 0.6:
        x = _coloured_noise_step(x, rng, (10.0, 35.0), steps)
    x = _gain_step(x, rng, (-12.0, 6.0), steps)
    return x.astype(np.float32), ",".join(steps)


def _coloured_noise_step(x: np.ndarray, rng: np.random.Generator, snr_db: Tuple[float, float], steps: list
                         ) -> np.ndarray:
    """White, pink or brown noise at a random SNR in ``snr_db`` (one augmentation step)."""
    colour = str(rng.choice(["white", "pink", "brown"]))
    snr = float(rng.uniform(*snr_db))
    steps.append(f"{colour}@{snr:.0f}dB")
    return add_noise(x, snr, colour, rng)


def _gain_step(x: np.ndarray, rng: np.random.Generator, gain_db: Tuple[float, float], steps: list) -> np.ndarray:
    """A random level change in ``gain_db``, scaled back below full scale if it would clip."""
    gain = float(rng.uniform(*gain_db))
    x = x * np.float32(10.0 ** (gain / 20.0))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.99:  # keep it a plausible recording: no clipping
        x *= np.float32(0.99 / peak)
    steps.append(f"gain{gain:+.0f}dB")
    return x


def telephone_band(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """A narrow-band call: 300-3400 Hz band-pass at 8 kHz, then back to ``sample_rate``."""
    from scipy.signal import butter, resample_poly, sosfilt  # workstation only

    narrow = resample_poly(signal, 8000, sample_rate)
    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=8000, output="sos")
    narrow = sosfilt(sos, narrow)
    wide = resample_poly(narrow, sample_rate, 8000)[: signal.size]
    out = np.zeros(signal.size, dtype=np.float32)
    out[: wide.size] = wide
    return out


def augment_room(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """One random far-field variant: room, real noise, level, band and codec (see the module doc).

    Rooms: a measured one 60 % of the time, a synthetic exponential decay 15 %, none 25 %.
    """
    return _far_field_variant(signal, sample_rate, rng, measured=0.6, simulated=0.0, synthetic=0.15)


def augment_room_sim(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """:func:`augment_room` with simulated shoebox rooms (:mod:`converter.simulated_rooms`) beside the measured.

    Rooms: measured 45 %, simulated 35 %, synthetic decay 5 %, none 15 %.
    """
    return _far_field_variant(signal, sample_rate, rng, measured=0.45, simulated=0.35, synthetic=0.05)


#: ``room-voices``: of the variants given real noise, the share whose noise is other voices instead.
VOICES_SHARE = 0.4
#: ``room-voices``: how many background voices, drawn uniformly.
VOICES_COUNT = (1, 4)
#: ``room-voices``: clips kept per training speaker in a run's voice bank.
VOICE_CLIPS_PER_SPEAKER = 4
#: Voice banks registered in this process (:func:`register_voices`), by digest; forked workers
#: filling the feature cache inherit them.
_VOICE_BANKS: Dict[str, Tuple[Tuple[np.ndarray, ...], ...]] = {}


def register_voices(items: Sequence[Item], sample_rate: int) -> str:
    """Decode a voice bank for ``room-voices`` from a run's training clips (``items``: the first
    :data:`VOICE_CLIPS_PER_SPEAKER` clips of each speaker, by path) and return its digest: the
    augmentation is then named ``room-voices:<digest>``, so each run's variants are cached apart
    and a variant only ever carries voices of that run's training speakers."""
    import hashlib

    from .conditions import voice_bank

    ordered = sorted(items, key=lambda it: (it.corpus, it.speaker, it.path))
    text = "\n".join(f"{it.corpus}|{it.speaker}\t{it.path}" for it in ordered)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    if digest not in _VOICE_BANKS:
        _VOICE_BANKS[digest] = voice_bank(ordered, VOICE_CLIPS_PER_SPEAKER, sample_rate)
        if not _VOICE_BANKS[digest]:
            raise ValueError("room-voices: no training clip to make a background voice of")
    return digest


def augment_room_voices(signal: np.ndarray, sample_rate: int, rng: np.random.Generator, digest: str
                        ) -> Tuple[np.ndarray, str]:
    """:func:`augment_room` with other voices behind the speaker: of the copies given real noise,
    :data:`VOICES_SHARE` hear 1-4 voices of the run's training speakers instead (the voice bank
    ``digest``, :func:`register_voices`; now and then the clip's own speaker among them), at the
    same SNR."""
    if digest not in _VOICE_BANKS:
        raise RuntimeError(f"voice bank {digest} is not registered in this process (register_voices)")
    return _far_field_variant(signal, sample_rate, rng, measured=0.6, simulated=0.0, synthetic=0.15,
                              voices=_VOICE_BANKS[digest])


def _at_peak_of(changed: np.ndarray, original: np.ndarray) -> np.ndarray:
    """``changed`` scaled so that its largest magnitude is ``original``'s. An equalizer or a pitch
    shifter changes the level as a side effect, and the level is a step of its own in a copy
    (:func:`_gain_step`); a silent ``changed`` stays as it is."""
    peak = float(np.max(np.abs(original))) if original.size else 0.0
    level = float(np.max(np.abs(changed))) if changed.size else 0.0
    return changed * np.float32(peak / level) if level > 0 else changed


#: ``room-mic``: the share of its copies heard through another microphone (:func:`another_microphone`).
MICROPHONE_SHARE = 0.5


@functools.lru_cache(maxsize=1)
def _microphone_chain():
    """The audiomentations chain :func:`another_microphone` draws from (built once per process).

    A 7-band parametric equalizer (a low shelf, five peaks, a high shelf; each band +-6 dB at a
    drawn centre and Q), a high-pass at 50-400 Hz always and a low-pass at 3.5-7.5 kHz on half the
    draws, each 12-24 dB per octave. The ranges are what small capsules, their housings and USB
    dongles span; they were set before any training, not tuned. The family is audiomentations',
    not the one the ``mic`` listening condition draws (:func:`converter.conditions.microphone_response`:
    a smooth ripple through six anchors and second-order roll-offs), so that condition still
    measures microphones the training never drew from.
    """
    import audiomentations as am  # workstation only

    return am.Compose([
        am.SevenBandParametricEQ(min_gain_db=-6.0, max_gain_db=6.0, p=1.0),
        am.HighPassFilter(min_cutoff_freq=50.0, max_cutoff_freq=400.0, min_rolloff=12, max_rolloff=24, p=1.0),
        am.LowPassFilter(min_cutoff_freq=3500.0, max_cutoff_freq=7500.0, min_rolloff=12, max_rolloff=24, p=0.5),
    ])


def another_microphone(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``signal`` as another microphone would have picked it up: a random equalizer and roll-offs
    (:func:`_microphone_chain`), its peak kept. audiomentations draws from Python's and NumPy's
    global generators, so both are seeded from ``rng`` first: the copy stays a function of the
    clip, its variant and the seed, as a cached copy must; their states are put back afterwards,
    so nothing else in the process draws differently for it."""
    import random

    x = np.asarray(signal, dtype=np.float32)
    seed = int(rng.integers(2 ** 32))
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        y = np.asarray(_microphone_chain()(samples=x, sample_rate=sample_rate), dtype=np.float32)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return _at_peak_of(y, x)


def augment_room_mic(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """:func:`augment_room` with :data:`MICROPHONE_SHARE` of the copies heard through another
    microphone (:func:`another_microphone`): the room and the noise reach the capsule together, so
    the equalizer follows them, before the level, the telephone band and the codec."""
    return _far_field_variant(signal, sample_rate, rng, measured=0.6, simulated=0.0, synthetic=0.15,
                              microphone=MICROPHONE_SHARE)


#: ``room-pitch``: the share of its copies whose voice is transposed (:func:`transpose_voice`).
TRANSPOSE_SHARE = 0.5
#: ``room-pitch``: a transposed copy's shift, drawn uniformly within +- this many semitones.
TRANSPOSE_SEMITONES = 3.0
#: Praat's pitch analysis range for :func:`transpose_voice` (Hz): low men to high, excited women.
_PITCH_FLOOR, _PITCH_CEILING = 60.0, 600.0


def transpose_voice(signal: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """The same utterance spoken ``semitones`` higher (or lower), its formants and timing kept.

    Why this and not a resampling or a phase vocoder: those move the formants with the pitch, as
    a shorter or longer vocal tract would (the cached speed changes and ``warp_bands`` already
    give those), while a speaker whose normal voice sits higher or lower keeps vowels of the same
    shape. Praat's pitch-synchronous overlap-add (through parselmouth, workstation only) moves
    each voiced period and leaves the spectral envelope and the unvoiced sounds where they are.
    The peak is kept; a clip too short or too quiet for Praat's pitch analysis keeps its pitch.
    """
    import parselmouth  # workstation only
    from parselmouth.praat import call

    x = np.asarray(signal, dtype=np.float32)
    try:
        sound = parselmouth.Sound(x.astype(np.float64), sampling_frequency=float(sample_rate))
        manipulation = call(sound, "To Manipulation", 0.01, _PITCH_FLOOR, _PITCH_CEILING)
        contour = call(manipulation, "Extract pitch tier")
        call(contour, "Multiply frequencies", sound.xmin, sound.xmax, 2.0 ** (semitones / 12.0))
        call([contour, manipulation], "Replace pitch tier")
        y = call(manipulation, "Get resynthesis (overlap-add)").values[0].astype(np.float32)
    except parselmouth.PraatError:
        return x.copy()
    return _at_peak_of(np.pad(y[: x.size], (0, max(0, x.size - y.size))), x)


def augment_room_pitch(signal: np.ndarray, sample_rate: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    """:func:`augment_room` with :data:`TRANSPOSE_SHARE` of the copies spoken a little higher or
    lower (:func:`transpose_voice`, within +- :data:`TRANSPOSE_SEMITONES`): the voice changes before
    it reaches the room, after the speed change."""
    return _far_field_variant(signal, sample_rate, rng, measured=0.6, simulated=0.0, synthetic=0.15,
                              transpose=TRANSPOSE_SHARE)


def _far_field_variant(signal: np.ndarray, sample_rate: int, rng: np.random.Generator, measured: float,
                       simulated: float, synthetic: float,
                       voices: Optional[Sequence[Sequence[np.ndarray]]] = None,
                       microphone: float = 0.0, transpose: float = 0.0) -> Tuple[np.ndarray, str]:
    """Speed, a transposed voice (on a ``transpose`` share), then a room (measured, simulated or
    synthetic, with these shares), noise, a microphone (on a ``microphone`` share), level, band,
    codec.

    With ``simulated=0`` the random draws are exactly those of the first ``room`` recipe, so
    its cached copies stay what this function makes. ``voices`` (a voice bank): a share of the
    real noise is other voices instead; without it no draw is added. With ``microphone=0`` or
    ``transpose=0`` no draw is added either.
    """
    from .audio_io import opus_round_trip
    from .rooms import convolve, load_bank, mix_at_snr, noise_segment

    bank = load_bank("train", sample_rate=sample_rate)
    x = np.asarray(signal, dtype=np.float32)
    steps = []
    if rng.random() < 0.5:
        factor = float(rng.uniform(0.88, 1.12))
        x = change_speed(x, factor)
        steps.append(f"speed{factor:.2f}")
    if transpose > 0 and rng.random() < transpose:
        semitones = float(rng.uniform(-TRANSPOSE_SEMITONES, TRANSPOSE_SEMITONES))
        x = transpose_voice(x, sample_rate, semitones)
        steps.append(f"pitch{semitones:+.1f}")
    peak = float(np.max(np.abs(x))) + 1e-12
    room = rng.random()
    if room < measured:
        x = convolve(x, bank.rirs[int(rng.integers(len(bank.rirs)))])
        steps.append("rir")
    elif room < measured + simulated:
        from .simulated_rooms import simulated_bank

        rirs = simulated_bank(sample_rate=sample_rate)
        x = convolve(x, rirs[int(rng.integers(len(rirs)))])
        steps.append("simulated-room")
    elif room < measured + simulated + synthetic:
        rt60 = float(rng.uniform(0.2, 0.9))
        x = reverberate(x, sample_rate, rt60, rng)
        steps.append(f"rt60={rt60:.2f}")
    x *= np.float32(peak / (float(np.max(np.abs(x))) + 1e-12))
    if rng.random() < 0.8:
        snr = float(rng.uniform(0.0, 25.0))
        if voices and rng.random() < VOICES_SHARE:
            from .conditions import voices_behind

            count = int(rng.integers(VOICES_COUNT[0], VOICES_COUNT[1] + 1))
            x = mix_at_snr(x, voices_behind(voices, count, x.size, sample_rate, rng), snr)
            steps.append(f"voices@{snr:.0f}dB")
        else:
            noise = noise_segment(bank.noises[int(rng.integers(len(bank.noises)))], x.size, rng)
            x = mix_at_snr(x, noise, snr)
            steps.append(f"noise@{snr:.0f}dB")
    elif rng.random() < 0.5:
        x = _coloured_noise_step(x, rng, (5.0, 30.0), steps)
    if microphone > 0 and rng.random() < microphone:
        x = another_microphone(x, sample_rate, rng)
        steps.append("mic")
    x = _gain_step(x, rng, (-25.0, 3.0), steps)
    if rng.random() < 0.15:
        x = telephone_band(x, sample_rate)
        steps.append("phone")
    if rng.random() < 0.1:
        level = float(rng.uniform(0.85, 0.97))
        x = opus_round_trip(x, sample_rate, level)
        steps.append(f"opus{level:.2f}")
    return x.astype(np.float32), ",".join(steps)


#: Audio-domain recipes by name (the name is part of the feature cache key).
AUGMENTATIONS: Dict[str, Callable[[np.ndarray, int, np.random.Generator], Tuple[np.ndarray, str]]] = {
    "studio": augment_audio,
    "room": augment_room,
    "room-sim": augment_room_sim,
    "room-mic": augment_room_mic,
    "room-pitch": augment_room_pitch,
}


def augmentation_function(name: str) -> Callable[[np.ndarray, int, np.random.Generator], Tuple[np.ndarray, str]]:
    """The audio-domain recipe ``name``: an :data:`AUGMENTATIONS` key, or ``room-voices:<digest>``."""
    if name.startswith("room-voices:"):
        return functools.partial(augment_room_voices, digest=name.split(":", 1)[1])
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; known: {', '.join(AUGMENTATIONS)}, room-voices:<digest>")
    return AUGMENTATIONS[name]


def prepare_augmentation(name: str, sample_rate: int) -> None:
    """Make once, in this process, what each worker filling the cache would otherwise make itself.

    ``room-sim`` needs the simulated room bank: made here, it is kept beside the cache and the
    workers load it.
    """
    if name == "room-sim":
        from .simulated_rooms import simulated_bank

        simulated_bank(sample_rate=sample_rate)


# -- feature domain -------------------------------------------------------------------------


def spec_augment(
    window: np.ndarray, rng: np.random.Generator, time_masks: int = 2, time_width: int = 30,
    freq_masks: int = 2, freq_width: int = 8, blocks: int = 1,
) -> np.ndarray:
    """SpecAugment masks on a ``(frames, features)`` window, filled with the window minimum.

    The minimum is what padding uses too, so a mask looks like a silent stretch or a
    missing band rather than an impossible value. With ``blocks`` > 1 (two views of one mel
    spectrogram side by side), each block is filled with its own minimum, as padding does,
    and a band mask takes the same bands out of every block: a band missing from the
    spectrogram is missing from both of its views. One block draws exactly as before.
    """
    out = window.copy()
    fill = pad_value(window, blocks)
    n_t, n_f = out.shape
    band_count = n_f // blocks
    for _ in range(time_masks):
        width = int(rng.integers(0, time_width + 1))
        if width:
            start = int(rng.integers(0, max(1, n_t - width)))
            out[start:start + width] = fill
    for _ in range(freq_masks):
        width = int(rng.integers(0, freq_width + 1))
        if width:
            start = int(rng.integers(0, max(1, band_count - width)))
            for block in range(blocks):
                columns = slice(block * band_count + start, block * band_count + start + width)
                out[:, columns] = fill if blocks == 1 else fill[columns]
    return out


def warp_bands(window: np.ndarray, factor: float, centres_hz: np.ndarray, blocks: int = 1) -> np.ndarray:
    """Move a ``(frames, features)`` window's spectrum along frequency by ``factor`` (in Hz).

    Band ``b``, centred on ``centres_hz[b]``, takes the value the spectrogram has at
    ``centres_hz[b] / factor``, interpolated linearly between the two bands around it; bands
    that would read below the lowest or above the highest band repeat the edge band. A factor
    above 1 moves formants up, as a shorter vocal tract does (VTLP, Jaitly and Hinton 2013).
    Why here rather than in the audio: speed perturbation in the cached copies moves pitch and
    formants together, and only on some degraded copies; a warp on every window costs one
    interpolation and gives each window a voice of its own. With ``blocks`` > 1 every block
    (two views of one mel spectrogram) moves by the same factor.
    """
    n_bands = centres_hz.size
    if window.shape[1] != n_bands * blocks:
        raise ValueError(f"window has {window.shape[1]} columns, not {blocks} blocks of {n_bands} bands")
    source = np.interp(centres_hz / factor, centres_hz, np.arange(n_bands, dtype=np.float64))
    low = np.minimum(np.floor(source).astype(np.int64), n_bands - 2)
    weight = (source - low).astype(window.dtype)
    out = np.empty_like(window)
    for block in range(blocks):
        view = window[:, block * n_bands:(block + 1) * n_bands]
        out[:, block * n_bands:(block + 1) * n_bands] = view[:, low] * (1 - weight) + view[:, low + 1] * weight
    return out


def training_window(
    features: np.ndarray, window_frames: int, rng: np.random.Generator,
    short_fraction: float = 0.2, min_frames: int = 100, specaugment: bool = True, blocks: int = 1,
    band_warp: float = 0.0, centres_hz: Optional[np.ndarray] = None,
    shortened: Optional[Callable[[int, int], np.ndarray]] = None,
) -> np.ndarray:
    """A random crop (a fraction of them shortened and padded like the device does; with
    ``shortened``, a shortened crop's features are those it gives for the stretch, e.g. the
    stretch computed as the device computes a short clip: :func:`edge_ser.windows.random_window`),
    a warp of the mel axis by a factor drawn from ``1 +- band_warp`` (none when 0: the random
    draws are then those of windows cut before the warp existed), then masks."""
    use_min = min_frames if rng.random() < short_fraction else None
    window = random_window(features, window_frames, rng, min_frames=use_min, blocks=blocks, shortened=shortened)
    if band_warp > 0:
        if centres_hz is None:
            raise ValueError("a band warp needs the mel bands' centre frequencies")
        window = warp_bands(window, float(rng.uniform(1 - band_warp, 1 + band_warp)), centres_hz, blocks)
    if specaugment:
        window = spec_augment(window, rng, blocks=blocks)
    return window


def mixup(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, rng: np.random.Generator, alpha: float = 0.2,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mix each example with a random partner: inputs, one-hot labels and sample weights."""
    if alpha <= 0:
        return x, y, w
    lam = rng.beta(alpha, alpha, size=x.shape[0]).astype(np.float32)
    lam = np.maximum(lam, 1.0 - lam)  # the original example stays dominant
    perm = rng.permutation(x.shape[0])
    shape = (-1,) + (1,) * (x.ndim - 1)
    x_mix = lam.reshape(shape) * x + (1.0 - lam).reshape(shape) * x[perm]
    y_mix = lam[:, None] * y + (1.0 - lam)[:, None] * y[perm]
    w_mix = lam * w + (1.0 - lam) * w[perm]
    return x_mix.astype(np.float32), y_mix.astype(np.float32), w_mix.astype(np.float32)
