"""Measured rooms and real background noise, split once into a training part and a held-out part.

A device hears speech a few metres away: convolved with a room's impulse response, under
a fridge, a TV or a street, and quieter than a close microphone. Training simulates that
with the measured impulse responses (``../shared/datasets/rirs``, MIT IR Survey) and the
real noise recordings (``../shared/datasets/noise``); evaluation does the same with rooms
and recordings that training never used, so the far-field score is not a memory test.

The split is a pure function of names, stable across machines and runs:

* rooms by **place**: the survey's ``hNNN`` id (one per place; a place may have several
  responses), so a held-out room is a place never heard in training;
* noise by **recording**: UrbanSound8K clips cut from the same freesound recording share the
  first number of their name (``101415-3-0-8``), so all cuts of one recording fall on one
  side. Other noise sources (a handful of long recordings) are training-only.

About a quarter of places and of UrbanSound8K recordings are held out
(:data:`HELD_OUT_PERCENT`), chosen by a CRC of the id.
"""

from __future__ import annotations

import csv
import re
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np

from edge_ser.errors import AudioError

from .audio_io import load_clip
from .corpora import datasets_dir

HELD_OUT_PERCENT = 25
SPLITS = ("train", "test")

_PLACE = re.compile(r"^(h\d+)_")
_URBANSOUND_RECORDING = re.compile(r"^(\d+)-\d+-\d+-\d+$")


def place_id(path: str) -> str:
    """The survey's place id of an impulse response file (``h001_Bedroom_65txts.flac`` -> ``h001``)."""
    match = _PLACE.match(Path(path).name)
    return match.group(1) if match else Path(path).stem


def noise_recording_id(path: str) -> Optional[str]:
    """The source recording of an UrbanSound8K clip (``101415-3-0-8`` -> ``us8k-101415``), else None."""
    match = _URBANSOUND_RECORDING.match(Path(path).stem)
    return f"us8k-{match.group(1)}" if match else None


def is_held_out(key: str) -> bool:
    """Whether a place or recording id belongs to the held-out (test) side."""
    return zlib.crc32(key.encode("utf-8")) % 100 < HELD_OUT_PERCENT


def _manifest_paths(folder: Path) -> List[str]:
    with open(folder / "manifest.csv", newline="", encoding="utf-8") as fh:
        return [str(folder / row["path"]) for row in csv.DictReader(fh)]


def rir_paths(split: str, root: Optional[Path] = None) -> List[str]:
    """Impulse responses of the training places or of the held-out places."""
    _check_split(split)
    paths = _manifest_paths(Path(root or datasets_dir()) / "rirs")
    return [p for p in paths if is_held_out(place_id(p)) == (split == "test")]


def noise_paths(split: str, root: Optional[Path] = None) -> List[str]:
    """Noise recordings of one side: held-out UrbanSound8K recordings, or everything else."""
    _check_split(split)
    out = []
    for p in _manifest_paths(Path(root or datasets_dir()) / "noise"):
        recording = noise_recording_id(p)
        held_out = recording is not None and is_held_out(recording)
        if held_out == (split == "test"):
            out.append(p)
    return out


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@dataclass(frozen=True)
class RoomBank:
    """Decoded impulse responses (direct path first, unit energy) and noise recordings."""

    rirs: Tuple[np.ndarray, ...]
    noises: Tuple[np.ndarray, ...]


def prepare_rir(rir: np.ndarray) -> np.ndarray:
    """Start at the direct path (the strongest tap) and scale to unit energy.

    Starting at the direct path keeps speech aligned with its labels' time axis; unit
    energy makes "how loud" a separate, explicit choice (the attenuation), not a property
    of whichever measurement was drawn.
    """
    rir = np.asarray(rir, dtype=np.float64)
    start = int(np.argmax(np.abs(rir)))
    rir = rir[start:]
    return (rir / (np.sqrt(np.sum(rir ** 2)) + 1e-12)).astype(np.float32)


@lru_cache(maxsize=4)
def load_bank(split: str, root: Optional[str] = None, sample_rate: int = 16000) -> RoomBank:
    """The decoded bank of one side (cached per process: about 200 MB for the training side)."""
    base = Path(root) if root else None
    rirs = tuple(prepare_rir(x) for x in _decodable(rir_paths(split, base), sample_rate))
    noises = tuple(n for n in _decodable(noise_paths(split, base), sample_rate)
                   if n.size >= sample_rate // 4 and float(np.max(np.abs(n))) > 0)
    return RoomBank(rirs, noises)


def _decodable(paths: List[str], sample_rate: int) -> List[np.ndarray]:
    """The recordings that decode; one malformed file in a shared folder is skipped, not fatal."""
    out = []
    for path in paths:
        try:
            out.append(load_clip(path, sample_rate))
        except AudioError as exc:
            warnings.warn(f"skipped: {exc}", stacklevel=2)
    return out


def convolve(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``signal`` heard through ``rir``, cut to the signal's length (the tail past the end is dropped)."""
    size = signal.size + rir.size - 1
    n_fft = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(signal, n_fft) * np.fft.rfft(rir, n_fft), n_fft)[: signal.size]
    return wet.astype(np.float32)


def through_room(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``signal`` convolved with ``rir`` and scaled back to the dry signal's peak.

    The same peak as the dry clip: how much quieter the talker is, is the attenuation's job.
    """
    x = np.asarray(signal, dtype=np.float32)
    wet = convolve(x, rir)
    peak_ratio = (float(np.max(np.abs(x))) + 1e-12) / (float(np.max(np.abs(wet))) + 1e-12)
    wet *= np.float32(peak_ratio)
    return wet


def noise_segment(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """A random stretch of ``length`` samples of a recording, looped when the recording is shorter."""
    if noise.size >= length:
        start = int(rng.integers(0, noise.size - length + 1))
        return noise[start:start + length]
    reps = -(-length // noise.size)
    start = int(rng.integers(0, noise.size))
    return np.tile(noise, reps + 1)[start:start + length]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + noise`` with the noise scaled to ``snr_db`` below the speech's RMS."""
    scale = rms(speech) / (rms(noise) + 1e-12) / (10.0 ** (snr_db / 20.0))
    return (speech + scale * noise).astype(np.float32)


@dataclass(frozen=True)
class FarField:
    """Ranges of one far-field condition: SNR against the reverberant speech, and attenuation."""

    snr_db: Tuple[float, float] = (5.0, 20.0)
    attenuation_db: Tuple[float, float] = (0.0, 20.0)


#: The evaluation condition of issue 12 (held-out rooms and noise).
EVALUATION = FarField()


#: What sounds behind the speaker in a far-field copy: (length in samples, generator) -> that many samples.
Background = Callable[[int, np.random.Generator], np.ndarray]


def far_field(
    signal: np.ndarray, bank: RoomBank, rng: np.random.Generator, condition: FarField = EVALUATION,
    background: Optional[Background] = None,
) -> np.ndarray:
    """One random room, one random background and one attenuation applied to ``signal``.

    The background is a stretch of one of ``bank``'s noise recordings, or what ``background``
    makes (other voices, say). The room is drawn first, so one generator puts a clip in the same
    room whichever sound is behind it; without ``background`` the draws are the evaluation
    condition's as they always were, so its cached copies stay what this function makes.
    The result is not clipped: attenuation makes it quieter, and a speech level that
    left room for noise stays within [-1, 1] in practice.
    """
    x = np.asarray(signal, dtype=np.float32)
    wet = through_room(x, bank.rirs[int(rng.integers(len(bank.rirs)))])
    if background is None:
        noise = noise_segment(bank.noises[int(rng.integers(len(bank.noises)))], wet.size, rng)
    else:
        noise = background(wet.size, rng)
    mixed = mix_at_snr(wet, noise, float(rng.uniform(*condition.snr_db)))
    gain = 10.0 ** (-float(rng.uniform(*condition.attenuation_db)) / 20.0)
    return (mixed * np.float32(gain)).astype(np.float32)


def clip_seed(path: str, seed: int) -> int:
    """A stable per-clip seed for the evaluation condition (independent of order and machine)."""
    return zlib.crc32(f"farfield|{Path(path).name}|{seed}".encode("utf-8"))


def split_summary(root: Optional[Path] = None) -> dict:
    """How many places, responses and noise recordings each side has (for the model card)."""
    out = {}
    for split in SPLITS:
        rirs = rir_paths(split, root)
        noises = noise_paths(split, root)
        out[split] = {"places": len({place_id(p) for p in rirs}), "rirs": len(rirs),
                      "noise_files": len(noises),
                      "urbansound_recordings": len({noise_recording_id(p) for p in noises} - {None})}
    return out

