"""A training's state after each round, so a run stopped midway resumes where it stopped.

Why: a protocol run trains for about an hour on this machine, a full protocol is eight or
nine of them, and the process is ended when a working session stops. Results are already
written per run (:mod:`converter.protocol`), but a training cut at round 40 of 48 was lost
whole. A checkpoint holds everything the next round depends on: every model variable (the
dropout seed generators included), every optimizer variable (step count, moments, the
EMA copy), the NumPy generator that draws the batches, the rounds' history and the best
validation epoch. Resuming from it continues the same schedule with the same draws, so the
model is the one an uninterrupted run would have produced.

A checkpoint names what it belongs to (``key``: the recipe and the training clips); one
whose key does not match (``same``, equality unless the caller knows better) is ignored and
overwritten, never resumed into the wrong training.
It is written to a temporary file and renamed, so a process ended while writing leaves the
previous round's checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from edge_ser.atomic_write import atomic_path


@dataclass
class TrainingState:
    """What a resumed training continues from: the last round done and what it had found."""

    epoch: int
    history: List[Dict[str, float]] = field(default_factory=list)
    best_ua: float = -1.0
    best_epoch: int = 0
    best_weights: Optional[list] = None
    finished: bool = False  # stopped early: a resumed run trains no further


def checkpoint_for(model_file: Path) -> Path:
    """Where the training of the model to be saved as ``model_file`` keeps its state until then
    (``dev.keras`` -> ``dev.checkpoint.npz`` beside it)."""
    model_file = Path(model_file)
    return model_file.with_name(f"{model_file.stem}.checkpoint.npz")


class TrainingCheckpoint:
    """One training's checkpoint file, identified by ``key`` (any JSON-able description).

    ``same(stored key, key)`` says whether a stored checkpoint is this training's; both arrive as
    they read back from JSON.
    """

    def __init__(self, path: Path, key: Dict[str, object],
                 same: Optional[Callable[[object, object], bool]] = None) -> None:
        self.path = Path(path)
        self.key = json.dumps(key, sort_keys=True, default=str)
        self.same = same or (lambda stored, current: stored == current)

    def save(self, state: TrainingState, model, rng: np.random.Generator) -> None:
        arrays = {f"model{i}": np.asarray(v.numpy()) for i, v in enumerate(model.variables)}
        arrays.update({f"optimizer{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)})
        if state.best_weights is not None:
            arrays.update({f"best{i}": np.asarray(w) for i, w in enumerate(state.best_weights)})
        meta = {"key": self.key, "epoch": state.epoch, "history": state.history, "best_ua": state.best_ua,
                "best_epoch": state.best_epoch, "finished": state.finished, "rng": rng.bit_generator.state}
        with atomic_path(self.path) as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)

    def restore(self, model, rng: np.random.Generator, log=print) -> Optional[TrainingState]:
        """Load the checkpoint into ``model`` (compiled, optimizer built) and ``rng``; None when
        there is none or it belongs to another training."""
        if not self.path.exists():
            return None
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if not self.same(json.loads(meta["key"]), json.loads(self.key)):
                    log(f"  checkpoint {self.path} belongs to another training: starting afresh")
                    return None
                variables, optimizer = list(model.variables), list(model.optimizer.variables)
                names = [n for n in data.files if n != "meta"]
                count = {p: sum(n.startswith(p) and n[len(p):].isdigit() for n in names) for p in ("model", "optimizer")}
                if count != {"model": len(variables), "optimizer": len(optimizer)}:
                    log(f"  checkpoint {self.path} holds another network ({count}): starting afresh")
                    return None
                for prefix, targets in (("model", variables), ("optimizer", optimizer)):
                    for i, v in enumerate(targets):
                        v.assign(data[f"{prefix}{i}"])
                best = [data[f"best{i}"] for i in range(sum(n.startswith("best") for n in names))] or None
        except (OSError, ValueError, KeyError) as exc:  # a damaged file: the training starts over
            log(f"  checkpoint {self.path} unreadable ({exc}): starting afresh")
            return None
        rng.bit_generator.state = meta["rng"]
        return TrainingState(meta["epoch"], meta["history"], meta["best_ua"], meta["best_epoch"], best,
                             meta["finished"])
