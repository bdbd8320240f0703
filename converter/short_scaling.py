"""Short utterances: the device's scaling of a short clip against the scaling training gave it.

The device normalizes every clip over itself (:func:`edge_ser.features.utterance_stage`), so a
word of 0.5 s is scaled by the statistics of that half second. Training shortened a fraction of
its crops to hear short input, but cut them from features already normalized over the whole,
longer clip: padded like the device's short clips, scaled unlike them. This measures what that
difference does to a model on the unseen language (BAVED, whose words no recipe hears).

Each word at least :data:`MIN_WORD_S` long is cut to its middle ``seconds`` (so even the longest
cut drops some of each end; the cut starts on a frame boundary, so its frames are rows of the
whole word's) and classified by the model through :class:`edge_ser.classify.Classifier` twice:
from the cut's own audio, as the device hears a short utterance (*device*), and from the rows of
the whole word's features that the cut covers (*as training cut*), then windowed and padded the
same way. The whole words are classified too. Each is scored by arousal
(:func:`converter.unseen_arousal.score_arousal`).

How far training's rows are from the device's features of the cut is measured per feature block
(the mean absolute difference, in the normalized features' units, over every frame and over the
first ten): the rows as cut, and the rows normalized over the cut (``Recipe.short_normalized``).
For log-mel the second is the device's own; for PCEN the smoother's state at the cut's first
frame still differs (``Recipe.short_from_mel`` computes the cut from its mel spectrogram instead).

A diagnosis run now and then, not a training input: nothing is cached.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from edge_ser.features import log_mel, normalize_utterance

from .audio_io import load_clip
from .corpora import Item
from .unseen_arousal import emotion_row, headline_cells, score_arousal

#: Only words at least this long are cut, so that the 1 s cut is a real cut.
MIN_WORD_S = 1.6
#: Lengths the words are cut to, in seconds (the daemon classifies utterances from 0.4 s on).
CUTS_S = (1.0, 0.5)
#: The first frames of a cut, where a PCEN smoother started on the cut differs most.
FIRST_FRAMES = 10


def measure(classifier, items: Sequence[Item], cuts: Sequence[float] = CUTS_S) -> Dict[str, object]:
    """Arousal scores of the words of ``items`` at least :data:`MIN_WORD_S` long: whole, and per cut
    the device's way and as training cut."""
    config = classifier.metadata.feature_config
    rate = config.sample_rate
    hop = config.hop_length
    blocks = [("PCEN" if b.log == "pcen" else "log-mel" if b.log == "db" else b.log, columns)
              for b, columns in zip(config.blocks(), config.block_columns())]
    kept: List[Item] = []
    probs: Dict[str, List[List[float]]] = {"whole": []}
    gaps: Dict[str, List[List[float]]] = {}
    for item in items:
        signal = load_clip(item.path, rate)
        if len(signal) < MIN_WORD_S * rate:
            continue
        kept.append(item)
        probs["whole"].append(emotion_row(classifier.classify_signal(signal, rate)))
        whole = log_mel(signal, config)
        for seconds in cuts:
            length = int(round(seconds * rate))
            first = (len(signal) - length) // 2 // hop  # the whole word's frames under the cut
            cut = signal[first * hop:first * hop + length]
            device_feats = log_mel(cut, config)
            rows = whole[first:first + device_feats.shape[0]]
            device = classifier.classify_signal(cut, rate)  # the device's own path
            as_trained = classifier.classify_features(rows, duration=seconds)
            probs.setdefault(f"{seconds:g} s device", []).append(emotion_row(device))
            probs.setdefault(f"{seconds:g} s as training cut", []).append(emotion_row(as_trained))
            for way, ours in (("as cut", rows), ("normalized over the cut", normalize_utterance(rows, config))):
                gap = np.abs(ours - device_feats)
                gaps.setdefault(f"{seconds:g} s|{way}", []).append(
                    [float(gap[:, c].mean()) for _, c in blocks] + [float(gap[:FIRST_FRAMES, c].mean()) for _, c in blocks])
    names = [name for name, _ in blocks]
    gap_table = {}
    for key, values in gaps.items():
        cut_name, way = key.split("|")
        mean = np.mean(values, axis=0)
        gap_table.setdefault(cut_name, {})[way] = {
            "all frames": dict(zip(names, map(float, mean[:len(names)]))),
            f"first {FIRST_FRAMES} frames": dict(zip(names, map(float, mean[len(names):])))}
    return {"min_word_s": MIN_WORD_S, "words": len(kept),
            "speakers": len({it.speaker for it in kept}),
            "scores": {name: score_arousal(np.array(p), kept) for name, p in probs.items()},
            "feature_gap": gap_table}


def markdown(result: Dict[str, object]) -> str:
    """The results as a table: UA, mid recall and normal voices answered angry, per way of hearing."""
    lines = [f"The unseen language (BAVED arousal, answered reading), the {result['words']} words of at least "
             f"{result['min_word_s']:g} s ({result['speakers']} speakers) of model `{result['model']}`: whole, "
             "and cut to their middle second or half second, scaled as the device scales a short clip (over "
             "itself) or as training scaled its shortened crops (by the whole word). "
             "`python -m converter short-scaling`.", "",
             "| words heard | UA | low | mid | high | normal voices answered angry |", "|---|---|---|---|---|---|"]
    for name, m in result["scores"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f} %" for v in headline_cells(m)) + " |")
    gap = result.get("feature_gap") or {}
    if gap:
        first = next(iter(next(iter(gap.values())).values()))
        spans = list(first)
        blocks = list(first[spans[0]])
        lines += ["", "How far training's rows of a cut are from the device's features of the cut audio: the mean "
                  "absolute difference per feature block, in the normalized features' units (standard deviations "
                  "of the clip), as cut from the whole word and normalized again over the cut "
                  "(`Recipe.short_normalized`).", "",
                  "| cut | training's rows | " + " | ".join(f"{b}, {span}" for span in spans for b in blocks) + " |",
                  "|---|---|" + "---|" * (len(spans) * len(blocks))]
        for cut_name, ways in gap.items():
            for way, by_span in ways.items():
                lines.append(f"| {cut_name} | {way} | " + " | ".join(
                    f"{by_span[span][b]:.2f}" for span in spans for b in blocks) + " |")
    return "\n".join(lines) + "\n"
