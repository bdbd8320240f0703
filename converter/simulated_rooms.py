"""Simulated shoebox rooms (pyroomacoustics): more rooms than the measured survey holds.

The measured impulse responses (:mod:`converter.rooms`) come from about 150 training
responses of everyday places; every augmented copy of a clip is heard in one of them. A
simulated room adds what the survey cannot: any size, any reverberation time, any
distance between talker and microphone. Each room is drawn at random (below), simulated
with pyroomacoustics' image source method, and prepared like a measured one (direct path
first, unit energy), so the two kinds are interchangeable in augmentation.

The bank is a pure function of ``(count, seed, sample rate)`` and :data:`BANK_VERSION`;
it is made once (about a minute) and kept beside the feature cache, so the processes that
fill the cache load it instead of simulating it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from edge_ser.atomic_write import atomic_path

BANK_VERSION = "v1"
BANK_SIZE = 300
#: Reflection order cap: enough for the drawn reverberation times (measured RT60 within about
#: 10 % of the target up to 1.2 s) at a tenth of a second per room.
MAX_ORDER = 40


@dataclass(frozen=True)
class RoomDraw:
    """One simulated room: size (m), reverberation time (s), talker and microphone positions (m)."""

    dims: Tuple[float, float, float]
    rt60: float
    source: Tuple[float, float, float]
    microphone: Tuple[float, float, float]


def draw_room(rng: np.random.Generator) -> RoomDraw:
    """A living room to a hall: 3-10 x 2.5-8 x 2.4-3.5 m, RT60 0.15-1.0 s, talker 0.5-5 m away.

    The talker stands or sits (mouth 1.0-1.8 m high); the microphone is on a table, a shelf
    or a wall (0.5-2.2 m); both at least 0.3 m from any wall.
    """
    while True:
        dims = (float(rng.uniform(3.0, 10.0)), float(rng.uniform(2.5, 8.0)), float(rng.uniform(2.4, 3.5)))
        margin = 0.3
        source = (float(rng.uniform(margin, dims[0] - margin)), float(rng.uniform(margin, dims[1] - margin)),
                  float(rng.uniform(1.0, 1.8)))
        microphone = (float(rng.uniform(margin, dims[0] - margin)), float(rng.uniform(margin, dims[1] - margin)),
                      float(rng.uniform(0.5, min(2.2, dims[2] - margin))))
        distance = float(np.linalg.norm(np.subtract(source, microphone)))
        rt60 = float(rng.uniform(0.15, 1.0))
        if 0.5 <= distance <= 5.0:
            return RoomDraw(dims, rt60, source, microphone)


def simulate(room: RoomDraw, sample_rate: int = 16000) -> Optional[np.ndarray]:
    """The impulse response of ``room`` (direct path first, unit energy), or None if the drawn
    reverberation time is impossible for its size (the walls would have to absorb more than all)."""
    import pyroomacoustics as pra  # workstation only

    from .rooms import prepare_rir

    try:
        absorption, order = pra.inverse_sabine(room.rt60, list(room.dims))
    except ValueError:
        return None
    shoebox = pra.ShoeBox(list(room.dims), fs=sample_rate, materials=pra.Material(absorption),
                          max_order=min(int(order), MAX_ORDER))
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.microphone))
    shoebox.compute_rir()
    return prepare_rir(np.asarray(shoebox.rir[0][0], dtype=np.float64))


def bank_path(count: int, seed: int, sample_rate: int, directory: Optional[Path] = None) -> Path:
    from .cache import default_cache_dir

    base = Path(directory) if directory else default_cache_dir()
    return base / f"simulated-rooms-{BANK_VERSION}-{count}-{seed}-{sample_rate}.npz"


@lru_cache(maxsize=2)
def simulated_bank(count: int = BANK_SIZE, seed: int = 0, sample_rate: int = 16000,
                   directory: Optional[str] = None) -> Tuple[np.ndarray, ...]:
    """``count`` simulated impulse responses: loaded from beside the cache, else made and kept there."""
    path = bank_path(count, seed, sample_rate, Path(directory) if directory else None)
    if path.exists():
        with np.load(path) as data:
            return tuple(data[f"rir{i}"] for i in range(count))
    rng = np.random.default_rng(seed)
    rirs = []
    while len(rirs) < count:
        rir = simulate(draw_room(rng), sample_rate)
        if rir is not None:
            rirs.append(rir.astype(np.float32))
    with atomic_path(path) as tmp:
        np.savez(tmp, **{f"rir{i}": r for i, r in enumerate(rirs)})
    return tuple(rirs)
