"""Where the far-field score goes: unseen rooms, or rooms and noise as such.

The protocol's far-field condition (:func:`converter.rooms.far_field`) adds three things at
once to every clip: a measured room of a place training never heard, real noise training
never heard, and attenuation. This splits it into parts, each scored like the protocol's dev
rows (restricted argmax, per corpus and pooled), so that a recipe can be aimed at the part
that costs the most:

* ``clean``: the clip as it is;
* ``reverb-heldout`` / ``reverb-train``: the room alone, drawn from the held-out places or from
  the training places (same peak as the dry clip, no noise, no attenuation);
* ``farfield-heldout`` / ``farfield-train``: the whole condition with held-out rooms and noise,
  or with the training side's, in the same SNR and attenuation ranges.

If the training-side parts score like the held-out ones, the model has not learnt its rooms
by heart: what it loses is to reverberation and noise themselves, and more rooms will not
win it back. Scoring the model's own *training* speakers (``speakers="train"``) says whether
the loss is one of fitting (it is there on speakers the model trained on) or of generalising.

Every clip's draws are seeded by its name (:func:`converter.rooms.clip_seed`), so every model
hears the same degraded clips. Features are computed here and not cached: a part is a
diagnosis, run now and then, not a training input.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import numpy as np

from .corpora import Item
from .rooms import RoomBank, clip_seed, far_field, through_room

PARTS = ("clean", "reverb-heldout", "reverb-train", "farfield-heldout", "farfield-train")
#: The draws of these parts are not the protocol's far-field draws (those use seeds 0-2).
PARTS_SEED = 101


def degrade(signal: np.ndarray, part: str, banks: Dict[str, RoomBank], rng: np.random.Generator) -> np.ndarray:
    """``signal`` under one part; ``banks`` holds the ``"train"`` and ``"test"`` room banks."""
    if part == "clean":
        return np.asarray(signal, dtype=np.float32)
    kind, side = part.split("-")
    bank = banks["test" if side == "heldout" else "train"]
    if kind == "reverb":
        return through_room(signal, bank.rirs[int(rng.integers(len(bank.rirs)))])
    return far_field(signal, bank, rng)


def clip_parts(signal: np.ndarray, name: str, banks: Dict[str, RoomBank],
               features: Callable[[np.ndarray], np.ndarray]) -> Dict[str, np.ndarray]:
    """The features of one clip under every part, each part's draws seeded by the clip's name."""
    return {part: features(degrade(signal, part, banks, np.random.default_rng(clip_seed(name, PARTS_SEED))))
            for part in PARTS}


def training_sample(items: Sequence[Item], per_corpus: int, seed: int = 0) -> List[Item]:
    """Up to ``per_corpus`` clips of each corpus, drawn without replacement (seeded)."""
    rng = np.random.default_rng(seed)
    out: List[Item] = []
    for corpus in sorted({it.corpus for it in items}):
        pool = [it for it in items if it.corpus == corpus]
        picked = rng.choice(len(pool), min(per_corpus, len(pool)), replace=False)
        out += [pool[i] for i in sorted(picked)]
    return out


def markdown(result: Dict[str, object]) -> str:
    """One table: a row per model, pooled UA (RAVDESS 8-way UA in brackets) per part."""
    features = "" if result.get("features", "edge") == "edge" else f", features {result['features']}"
    lines = [f"Far-field parts ({result['speakers']} speakers, {result['clips']} clips, one draw each{features}): "
             "pooled UA over the corpora, RAVDESS in brackets.", "",
             "| model | " + " | ".join(PARTS) + " |", "|---|" + "---|" * len(PARTS)]
    for model, parts in result["models"].items():
        cells = [f"{100 * parts[p]['ua']:.1f} % ({100 * parts[p]['ravdess']:.1f})" for p in PARTS]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
