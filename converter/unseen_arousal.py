"""An unseen language on the development split: BAVED's arousal levels read off the 8 emotions.

Why: the independent evaluation's largest gap is languages the model never heard, and the
project's own measure of it, leave one corpus out, may not choose a recipe (its corpora are
test corpora). BAVED (Arabic, 59 speakers, words labelled low / mid / high arousal) is the one
corpus here that no shipped recipe trains on and no run tests on, so a development run can
score it as a language the model never heard, without reading a test corpus.

BAVED has no emotion labels, so the model's answer is read as an arousal level
(:data:`AROUSAL_OF`). BAVED's low level is a tired or exhausted voice, its mid level the
speaker's normal one, its high level a strong emotion. The grouping was written before any
model was scored on it:

* low: ``sad`` (the one low-arousal class every training corpus has);
* mid: ``neutral`` and ``calm`` (calm joins neutral, as the protocol scores a corpus that has
  neutral but no calm);
* high: ``happy``, ``angry``, ``fearful``, ``disgust`` and ``surprised``.

Two readings, both kept (:func:`score_arousal`):

* ``answered``: the level of the emotion with the largest clip probability, i.e. of what the
  device reports, as the independent evaluation takes the argmax. This is the headline ``ua``.
* ``summed``: the level with the largest sum of its emotions' probabilities. This was the
  first definition; reading the shipped model's scores showed that a level of five emotions
  wins nearly every clip by their sum (98 % of BAVED's words were "high"), which says more
  about the grouping than about the model, so the answered level was added and made the
  headline after that reading.

A recipe that trains on BAVED (an arousal head) has heard it: it gets no such score.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from edge_ser.metadata import EMOTIONS

from .corpora import AROUSAL_LEVELS, Item
from .train import confusion, recall_by_class, ua_wa

__all__ = ["AROUSAL_OF", "UNSEEN_LANGUAGE_CORPORA", "unseen_arousal_items", "arousal_probabilities",
           "score_arousal", "answered_share", "headline_cells"]

#: Corpora the protocol reads for this score when they are there (``../shared/datasets/<name>``);
#: a smoke run on the project's own clips has none, and its dev rows simply go without it.
UNSEEN_LANGUAGE_CORPORA = ("baved",)

#: The arousal level each of the 8 emotions counts towards.
AROUSAL_OF: Dict[str, str] = {
    "neutral": "mid", "calm": "mid", "happy": "high", "sad": "low",
    "angry": "high", "fearful": "high", "disgust": "high", "surprised": "high",
}
#: Per emotion (in :data:`EMOTIONS` order), the index of its level in :data:`AROUSAL_LEVELS`.
_LEVEL_INDEX = np.array([AROUSAL_LEVELS.index(AROUSAL_OF[e]) for e in EMOTIONS])


def unseen_arousal_items(items: Sequence[Item], corpora: Sequence[str]) -> List[Item]:
    """The arousal-only clips (no emotion label) of corpora a recipe trained on ``corpora`` never hears."""
    return [it for it in items if it.corpus not in corpora and it.label is None and it.arousal is not None]


def emotion_row(prediction) -> List[float]:
    """A clip's answer (an :class:`edge_ser.classify.Prediction`) as the row :func:`score_arousal`
    reads: its probabilities in :data:`~edge_ser.metadata.EMOTIONS` order, whatever order the
    model lists its labels in."""
    return [prediction.probabilities[e] for e in EMOTIONS]


def arousal_probabilities(probs: np.ndarray) -> np.ndarray:
    """``(clips, 8)`` emotion probabilities -> ``(clips, 3)`` summed per level of :data:`AROUSAL_LEVELS`."""
    return np.asarray(probs, dtype=np.float64) @ np.eye(len(AROUSAL_LEVELS))[_LEVEL_INDEX]


def score_arousal(probs: np.ndarray, items: Sequence[Item]) -> Dict[str, object]:
    """Arousal scores of clips from their 8 emotion probabilities: the ``answered`` and ``summed``
    readings (module doc), each with UA, WA, recall and confusion (rows true, columns answered),
    and which emotion was answered per true level (where the answers come from)."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.array([AROUSAL_LEVELS.index(it.arousal) for it in items], dtype=np.int64)
    top = probs.argmax(axis=1)
    answered = _level_scores(y_true, _LEVEL_INDEX[top])
    summed = _level_scores(y_true, arousal_probabilities(probs).argmax(axis=1))
    first = {level: {EMOTIONS[e]: int(np.sum((y_true == i) & (top == e))) for e in range(len(EMOTIONS))
                     if np.any((y_true == i) & (top == e))}
             for i, level in enumerate(AROUSAL_LEVELS) if np.any(y_true == i)}
    return {"clips": int(len(items)), "speakers": len({it.speaker for it in items}),
            "corpora": sorted({it.corpus for it in items}), "ua": answered["ua"],
            "answered": answered, "summed": summed, "first_emotion": first}


def answered_share(scores: Dict[str, object], level: str, emotion: str) -> Optional[float]:
    """Of the clips of true ``level`` in :func:`score_arousal`'s ``scores``, the share answered
    ``emotion`` (None when that level has no clips)."""
    counts = scores.get("first_emotion", {}).get(level) or {}
    return counts.get(emotion, 0) / sum(counts.values()) if counts else None


def headline_cells(scores: Dict[str, object]) -> List[float]:
    """What the unseen-language tables print of :func:`score_arousal`'s ``scores``: UA, the
    recall of each level (:data:`AROUSAL_LEVELS`) and the share of normal voices answered angry,
    NaN where there is none."""
    recall = scores["answered"]["recall"]
    angry = answered_share(scores, "mid", "angry")
    return [scores["ua"]] + [recall.get(level, float("nan")) for level in AROUSAL_LEVELS] + [
        float("nan") if angry is None else angry]


def _level_scores(y_true: np.ndarray, y_pred: np.ndarray) -> Dict[str, object]:
    cm = confusion(y_true, y_pred, len(AROUSAL_LEVELS))
    ua, wa = ua_wa(cm)
    return {"ua": ua, "wa": wa, "confusion": cm.tolist(), "recall": recall_by_class(cm, AROUSAL_LEVELS)}
