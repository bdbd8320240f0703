"""The window outputs a protocol run scored, kept beside its results file.

Why keep them: a verdict between two recipes is only as steady as the member files it scores.
Training fold 1's members again moved that fold by 4.3 points, several times the margins the
selection rules judge, so a fair comparison scores a candidate's ensemble against the reference
on the *same* reference member. A model file does not outlive the machine that trained it; a
few hundred kilobytes of outputs in ``models/results/protocol/`` do. An ensemble's output is
its members' window logits averaged (:func:`converter.ensemble.average_logits`), so stored
member outputs, combined by :func:`combine`, give an ensemble's float scores without any of
its model files.

One file per run, ``<run>.outputs.npz``: for each scored model (``float``, ``int8`` and
``member:<name>`` for an ensemble's members, each on its own features) and each scored set of
clips (:data:`OUTPUT_SETS`), the raw output of every window (logits for a masked recipe, else
probabilities), float32, clip after clip. Each set also records a digest of its clips (corpus,
speaker, file name and label, in order), so outputs are only ever combined or scored on the
clips they were computed on, whatever folder the corpora sit in on another machine.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from edge_ser.atomic_write import write_bytes_atomically

from .corpora import Item

__all__ = ["OUTPUT_SETS", "ScoredSet", "items_digest", "outputs_path", "save_outputs", "load_outputs", "combine",
           "member_key"]

OUTPUT_SETS = ("clean", "farfield", "farfield_all", "unseen_arousal")
_SEP = "|"


def items_digest(items: Sequence[Item]) -> str:
    """Which clips, in which order: 16 hex digits over corpus, speaker, file name and label."""
    text = "\n".join(f"{i.corpus}\t{i.speaker}\t{Path(i.path).name}\t{i.label}" for i in items)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class ScoredSet:
    """One model's window outputs on one set of clips: ``outputs[k]`` is clip ``k``'s
    ``(windows, classes)`` array; ``digest`` is :func:`items_digest` of the clips."""

    digest: str
    outputs: List[np.ndarray]

    @classmethod
    def of(cls, items: Sequence[Item], outputs: Sequence[np.ndarray]) -> "ScoredSet":
        if len(items) != len(outputs):
            raise ValueError(f"{len(items)} clips but {len(outputs)} outputs")
        return cls(items_digest(items), [np.asarray(o, dtype=np.float32) for o in outputs])

    def check(self, items: Sequence[Item], source: str = "outputs") -> None:
        """Raise ValueError unless these outputs were computed on ``items``, in this order."""
        if items_digest(items) != self.digest:
            raise ValueError(f"{source}: stored for other clips than these ({self.digest} != {items_digest(items)})")


def outputs_path(results_file: Path) -> Path:
    """``.../<label>/<run>.json`` -> ``.../<label>/<run>.outputs.npz``."""
    results_file = Path(results_file)
    return results_file.with_name(results_file.stem + ".outputs.npz")


def save_outputs(path: Path, models: Mapping[str, Mapping[str, ScoredSet]]) -> None:
    """Write ``{model: {set: ScoredSet}}`` to one compressed ``.npz`` (temporary file, then renamed,
    so a file that exists is whole)."""
    arrays: Dict[str, np.ndarray] = {}
    for model, sets in models.items():
        for name, scored in sets.items():
            if name not in OUTPUT_SETS or _SEP in model:
                raise ValueError(f"cannot store set {name!r} of model {model!r}")
            counts = np.array([len(o) for o in scored.outputs], dtype=np.int32)
            width = scored.outputs[0].shape[1] if scored.outputs else 0
            values = (np.concatenate(scored.outputs) if scored.outputs else np.zeros((0, width))).astype(np.float32)
            key = f"{model}{_SEP}{name}"
            arrays[f"{key}{_SEP}counts"], arrays[f"{key}{_SEP}values"] = counts, values
            arrays[f"{key}{_SEP}digest"] = np.array(scored.digest)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes_atomically(path, buffer.getvalue())


def load_outputs(path: Path) -> Dict[str, Dict[str, ScoredSet]]:
    """Read what :func:`save_outputs` wrote: ``{model: {set: ScoredSet}}``."""
    out: Dict[str, Dict[str, ScoredSet]] = {}
    with np.load(Path(path), allow_pickle=False) as data:
        keys = sorted({k.rsplit(_SEP, 1)[0] for k in data.files})
        for key in keys:
            model, name = key.split(_SEP)
            counts, values = data[f"{key}{_SEP}counts"], data[f"{key}{_SEP}values"]
            if int(counts.sum()) != len(values):
                raise ValueError(f"{path}: {key} holds {len(values)} windows, its counts say {int(counts.sum())}")
            clips = np.split(values, np.cumsum(counts)[:-1]) if len(counts) else []
            out.setdefault(model, {})[name] = ScoredSet(str(data[f"{key}{_SEP}digest"]), list(clips))
    return out


def combine(members: Sequence[ScoredSet], weights: Optional[Sequence[float]] = None) -> ScoredSet:
    """An ensemble's window logits from its members' stored ones: their (weighted) mean, window by
    window, as :func:`converter.ensemble.average_logits` computes inside one graph.

    Members must have been scored on the same clips with the same windows (the same window and hop):
    the digest and every clip's window count are checked.
    """
    if not members:
        raise ValueError("no members to combine")
    first = members[0]
    for other in members[1:]:
        if other.digest != first.digest:
            raise ValueError(f"members were scored on different clips ({first.digest} != {other.digest})")
        if [len(o) for o in other.outputs] != [len(o) for o in first.outputs]:
            raise ValueError("members were scored on different windows of the same clips")
    w = np.full(len(members), 1.0 / len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(w) != len(members) or np.any(w <= 0) or abs(float(w.sum()) - 1.0) > 1e-6:
        raise ValueError(f"weights {list(w)} for {len(members)} members: one positive weight each, summing to one")
    clips: List[np.ndarray] = []
    for k in range(len(first.outputs)):
        mixed = sum(float(wi) * m.outputs[k].astype(np.float64) for wi, m in zip(w, members))
        clips.append(np.asarray(mixed, dtype=np.float32))
    return ScoredSet(first.digest, clips)


def member_key(name: str) -> str:
    """The model key of ensemble member ``name`` in an outputs file."""
    return f"member:{name}"

