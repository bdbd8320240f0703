"""On-disk cache of clip features (clean and augmented variants).

Computing features for a corpus and its augmented copies takes minutes; a training
run or a cross-validation fold should not redo it. An entry is keyed by everything that
determines its contents: the feature config hash, the clip's absolute path (augmentation
seeds derive from it) and a digest of its bytes, the :class:`Treatment` (augmentation
recipe, codec), the variant and its seed. Change any of them and the old entry is simply
not found (stale files can be deleted with the folder). The digest, not the file's
modification time, identifies the audio: a corpus copied again (same bytes, new times)
keeps its cache, which otherwise costs half an hour to rebuild.

Entries are lean: the clean variant is stored as float32 (evaluation scores it, so it
must be what the device computes), augmented variants as float16 (training material:
half the memory for ten thousand clips, and far below the noise the augmentation adds).

Several runs may share the cache (two folds training side by side need the same corpora's room
copies). Each entry is computed under an advisory lock of its own, so the runs split the missing
entries between them instead of each computing all of them: a run skips an entry another run is
computing, fills the others, then waits for the ones it skipped.

Default folder: ``.features-cache/`` in the repository (git-ignored); override with
``--cache DIR`` or ``EDGE_SER_CACHE``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edge_ser.atomic_write import atomic_path
from edge_ser.features import FeatureConfig, log_mel

from .audio_io import is_wav, load_clip, opus_round_trip
from .augment import augmentation_function, prepare_augmentation, variant_seed

AUGMENT_VERSION = "a1"  # bump when an augmentation recipe changes meaning


@dataclass(frozen=True)
class Treatment:
    """What is done to a clip's audio before its features: augmentation recipe and codec.

    ``opus_wav``: the clean copy (variant 0) of a WAV clip gets an Opus round trip (RAVDESS
    in training, so that it sounds like the Opus corpora beside it); augmented copies start
    from the WAV, because their noise and rooms mask the codec's traces and an Opus encode
    costs more than the rest of a variant. Evaluation uses the untouched WAV, as the device
    hears it. ``farfield``: the held-out far-field evaluation condition instead of
    an augmentation (:func:`converter.rooms.far_field` with held-out rooms and noise).
    ``condition``: another evaluation condition (:data:`converter.conditions.CONDITIONS`:
    telephone band, a higher voice, synthetic reverberation), seeded per clip like far-field.
    """

    augmentation: str = "studio"
    opus_wav: bool = False
    farfield: bool = False
    condition: str = ""

    def key(self, path: str, variant: int) -> str:
        """The cache-key part for one entry; the default treatment adds nothing (older entries stay valid)."""
        parts = []
        if variant and self.augmentation != "studio" and not self.farfield:
            parts.append(f"aug={self.augmentation}")
        if self.opus_wav and not variant and is_wav(path):
            parts.append("opus-wav")
        if self.farfield:
            parts.append("farfield-v1")
        if self.condition:
            parts.append(f"condition={self.condition}-v1")
        return ",".join(parts)


def default_cache_dir() -> Path:
    env = os.environ.get("EDGE_SER_CACHE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / ".features-cache"


def content_digest(path: str) -> str:
    """A digest of the file's bytes, read in blocks.

    Remembered in this process while the file's inode, size and change time stay the same
    (the change time moves on every write and cannot be set back, unlike the modification time).
    """
    st = os.stat(path)
    return _digest(os.path.abspath(path), st.st_ino, st.st_size, st.st_ctime_ns)


@functools.lru_cache(maxsize=65536)
def _digest(path: str, inode: int, size: int, ctime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"{size}:{h.hexdigest()}"


def entry_key(path: str, config: FeatureConfig, variant: int, seed: int, treatment: Treatment = Treatment()) -> str:
    parts = [config.hash(), os.path.abspath(path), content_digest(path), str(variant)]
    if variant:
        parts += [AUGMENT_VERSION, str(seed)]
    extra = treatment.key(path, variant)
    if extra:
        parts.append(extra)
    if treatment.farfield and seed:
        parts.append(f"draw={seed}")  # another far-field draw of the clip; draw 0 keeps its older key
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:24]


def compute_features(
    path: str, config: FeatureConfig, variant: int, seed: int, treatment: Treatment = Treatment(),
) -> np.ndarray:
    """Features of a clip (variant 0) or of one augmented copy of it (variant >= 1)."""
    signal = load_clip(path, config.sample_rate)
    if treatment.opus_wav and not variant and is_wav(path):
        signal = opus_round_trip(signal, config.sample_rate)
    if treatment.farfield and treatment.condition:
        raise ValueError("a clip is scored far-field or under another condition, not both")
    if treatment.farfield or treatment.condition:
        from .conditions import apply_condition
        from .rooms import clip_seed

        rng = np.random.default_rng(clip_seed(path, seed))  # the same copy for every model scored
        # the protocol's far-field copy is the ``far-field`` condition's, by construction
        signal = apply_condition("far-field" if treatment.farfield else treatment.condition, signal,
                                 config.sample_rate, rng)
    elif variant:
        rng = np.random.default_rng(variant_seed(os.path.abspath(path), variant, seed))
        signal, _ = augmentation_function(treatment.augmentation)(signal, config.sample_rate, rng)
    return log_mel(signal, config)


@contextlib.contextmanager
def _entry_lock(target: str, wait: bool) -> Iterator[bool]:
    """Hold ``target``'s lock (``target + ".lock"``) for the block; yields False, holding nothing,
    when another process holds it and ``wait`` is False.

    The lock file is removed by its holder once the entry exists. A process that opened the old
    file meanwhile, or creates a new one, then finds the entry written and computes nothing, so
    two writers never compute one entry at once. A killed holder's lock dies with its process.
    """
    lock_path = target + ".lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
        if os.path.exists(target):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
    finally:
        os.close(fd)  # releases the lock


def _fill(job: Tuple[str, str, dict, int, int, dict], wait: bool = False) -> Optional[str]:
    """Compute and store one entry unless it exists; None when another process is computing it
    (``wait`` False) so that the caller can come back to it after the rest."""
    target, path, config_dict, variant, seed, treatment = job
    with _entry_lock(target, wait) as held:
        if not held:
            return None
        if not os.path.exists(target):  # another run may have written it since the caller looked
            feats = compute_features(path, FeatureConfig.from_dict(config_dict), variant, seed,
                                     Treatment(**treatment))
            with atomic_path(target) as tmp:
                np.save(tmp, feats.astype(np.float16 if variant else np.float32))
    return target


class FeatureCache:
    """Get features for many (clip, variant) pairs, computing only what is missing."""

    def __init__(
        self, config: FeatureConfig, directory: Optional[Path] = None, seed: int = 0,
        treatment: Treatment = Treatment(),
    ) -> None:
        self.config = config
        self.directory = Path(directory) if directory else default_cache_dir()
        self.seed = seed
        self.treatment = treatment

    def _target(self, path: str, variant: int) -> str:
        key = entry_key(path, self.config, variant, self.seed, self.treatment)
        return str(self.directory / key[:2] / f"{key}.npy")

    def get_many(
        self, paths: Sequence[str], variants: Sequence[int] = (0,), workers: int = 2, progress: bool = True,
    ) -> Dict[Tuple[str, int], np.ndarray]:
        """``{(path, variant): features}`` for every path and variant."""
        jobs = []
        targets: Dict[Tuple[str, int], str] = {}
        for path in paths:
            for variant in variants:
                target = self._target(path, variant)
                targets[(path, variant)] = target
                if not os.path.exists(target):
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    jobs.append((target, path, self.config.to_dict(), variant, self.seed, asdict(self.treatment)))
        if jobs:
            if any(job[3] for job in jobs) and not self.treatment.farfield:
                prepare_augmentation(self.treatment.augmentation, self.config.sample_rate)
            self._run(jobs, workers, progress)
        return {k: np.load(t) for k, t in targets.items()}

    @staticmethod
    def _run(jobs: List[tuple], workers: int, progress: bool) -> None:
        bar = None
        if progress:
            import sys

            from tqdm import tqdm

            # a live bar on a terminal, a line every 20 s in a log file
            bar = tqdm(total=len(jobs), desc="features", unit="clip",
                       mininterval=0.5 if sys.stderr.isatty() else 20.0)
        busy = FeatureCache._fill_all(_fill, jobs, workers, bar)  # entries another run was computing
        FeatureCache._fill_all(functools.partial(_fill, wait=True), busy, workers, bar)
        if bar:
            bar.close()

    @staticmethod
    def _fill_all(fill, jobs: List[tuple], workers: int, bar) -> List[tuple]:
        """Run ``fill`` on every job, in a process pool when there are enough; the jobs it skipped."""
        pooled = workers > 1 and len(jobs) >= 8
        skipped = []
        with ProcessPoolExecutor(max_workers=workers) if pooled else contextlib.nullcontext() as pool:
            done = pool.map(fill, jobs, chunksize=8) if pooled else map(fill, jobs)
            for job, target in zip(jobs, done):
                if target is None:
                    skipped.append(job)
                elif bar:
                    bar.update(1)
        return skipped
