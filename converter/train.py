"""Training: data preparation, the training loop, evaluation as the device evaluates.

One recipe serves cross-validation and the shipped model (:class:`Recipe`). Training
data per epoch: every training clip once, as a random audio variant (clean or one of
the cached augmented copies), randomly cropped to one window (some shortened and padded
like the device pads short utterances), SpecAugment-masked, then mixed up in pairs.
Loss: categorical cross-entropy with label smoothing, weighted per class so that the
rarer ``neutral`` counts as much as the others. Optimizer: AdamW with a warm-up and a
cosine decay over ``epochs``.

Model selection: whole speakers are held out from the training speakers and scored
every epoch (UA on whole clips, windows averaged like the device does); the weights of
the best epoch are kept (early stopping with patience). Evaluation always runs on whole
clips cut with :func:`edge_ser.windows.split_windows`, never on single crops.

Several corpora (``sampling="balanced"``, ``masked=True``): corpora differ in size and in
the classes they have, so each training window is drawn by picking a corpus uniformly,
then one of *its* classes uniformly, then a clip; a training run is a fixed number of
such draws (``steps`` batches), not epochs over an uneven pool. The model then outputs
logits, and the loss lets a clip compete only among the classes of its corpus (the
others' logits are masked out), so a Polish "neutral" never teaches that calm does not
exist; mixup pairs clips of the same corpus and label smoothing spreads over that
corpus's classes, by the same rule.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_ser.features import clip_features_from_mel_db, mel_db_config, normalize_utterance, preset
from edge_ser.metadata import EMOTIONS
from edge_ser.windows import split_windows

from .augment import mixup, training_window
from .corpora import AROUSAL_LEVELS, Item, corpus_classes


@dataclass
class Recipe:
    """Every knob of a training run (stored in the model metadata)."""

    window_frames: int = 300
    hop_frames: int = 100
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 5e-3
    warmup_epochs: int = 3
    label_smoothing: float = 0.1
    mixup_alpha: float = 0.3
    dropout: float = 0.3
    channels: Tuple[int, ...] = (24, 32, 48, 64, 96)
    deltas: bool = True
    head: str = "time_pool"  # converter.model.HEADS: "time_pool" (mean+max over time, keep frequency),
    # "time_attention" (mean and a learned weighted mean over time) or "gap"
    aug_variants: int = 4  # augmented copies per clip (variant 0 is the clean clip)
    clean_probability: float = 0.3
    short_fraction: float = 0.2  # crops shortened to min_frames..window and padded
    min_frames: int = 100
    # the shortened crops normalized over themselves, as the device normalizes a short clip
    # (edge_ser.features.normalize_utterance); off: they keep their whole clip's normalization
    short_normalized: bool = False
    # the shortened crops computed as the device computes a clip of that stretch alone, from the
    # clip's cached mel spectrogram (edge_ser.features.clip_features_from_mel_db): normalized
    # over themselves and, for PCEN, smoothed from their own first frame; implies short_normalized
    short_from_mel: bool = False
    crops_per_clip: int = 1
    patience: int = 25
    ema: float = 0.0  # > 0: keep an exponential moving average of the weights and use it at the end
    seed: int = 1234
    deterministic: bool = True
    augmentation: str = "studio"  # audio-domain recipe (converter.augment.AUGMENTATIONS)
    opus_wav: bool = False  # WAV corpora get an Opus round trip in training (like the Opus corpora)
    sampling: str = "clips"  # "clips": each clip once per epoch; "balanced": corpus, class, clip
    steps: int = 0  # balanced sampling: batches in all (epochs are then rounds of ROUND_STEPS)
    masked: bool = False  # logits out; loss over the classes of each clip's corpus only
    # balanced sampling: relative draw weight per corpus (a corpus not named weighs 1)
    corpus_weights: Dict[str, float] = field(default_factory=dict)
    # > 0: an auxiliary arousal head (low/mid/high) trained on arousal-only clips (BAVED), its
    # loss weighted by this; the head is dropped from the model that is evaluated and exported
    arousal_weight: float = 0.0
    # > 0 (masked, balanced recipes): a corpus discriminator behind a gradient reversal on the pooled
    # features (converter.model.build_model with ``adversary_classes``); the reversal's strength rises
    # from 0 to this over training (reversal_strength); the head is dropped like the arousal head
    corpus_adversary: float = 0.0
    # > 0: the same, with a discriminator of the training speakers (each speaker of each corpus a
    # class) instead of the corpora; not together with corpus_adversary
    speaker_adversary: float = 0.0
    # "band_mean": the network first subtracts each mel band's mean over the window
    # (converter.model.build_model)
    input_norm: str = "none"
    # > 0 (masked, balanced recipes): every batch is half clean windows and half a room-degraded
    # copy of the same clips at the same place; the degraded half is also pulled towards the clean
    # half's prediction (KL divergence, weighted by this; the clean side is not moved by it)
    consistency: float = 0.0
    # the feature preset (edge_ser.features.PRESETS) the model hears: it travels in the model
    # file, and the device computes exactly it
    features: str = "edge"
    # > 0: every training window's mel axis is warped by a factor drawn from 1 +- this, in Hz
    # (converter.augment.warp_bands: another vocal tract length); the device hears no warp
    band_warp: float = 0.0
    # an ensemble (converter.protocol.ENSEMBLES) whose members' models of the same run teach this
    # model: the ensemble's logits on each training window are a second target (knowledge
    # distillation, weighted by distill_weight, both sides softened by distill_temperature);
    # a one-network model learns what the two-network one answers, at half its device cost
    teacher: str = ""
    distill_weight: float = 0.0
    distill_temperature: float = 2.0

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


@dataclass
class ClipSet:
    """Clips with their features: ``feats[i][v]`` is variant ``v`` of clip ``i``.

    ``mel_db[i][v]`` (loaded for a recipe with ``short_from_mel``) is the same variant's mel
    spectrogram in dB (:func:`edge_ser.features.mel_db_config`), row for row with ``feats[i][v]``.
    """

    items: List[Item]
    feats: List[List[np.ndarray]]
    mel_db: Optional[List[List[np.ndarray]]] = None

    @property
    def labels(self) -> np.ndarray:
        return np.array([it.label_index for it in self.items], dtype=np.int64)

    @property
    def speakers(self) -> List[str]:
        return [it.speaker for it in self.items]

    def subset(self, speakers: Sequence[str], keep: bool = True) -> "ClipSet":
        wanted = set(speakers)
        idx = [i for i, it in enumerate(self.items) if (it.speaker in wanted) == keep]
        return ClipSet([self.items[i] for i in idx], [self.feats[i] for i in idx],
                       None if self.mel_db is None else [self.mel_db[i] for i in idx])


#: Batches per logging/validation round when training by balanced draws.
ROUND_STEPS = 250


def load_clipset(
    items: Sequence[Item], config, variants: int, cache_dir=None, seed: int = 0, treatment=None,
    with_mel_db: bool = False,
) -> ClipSet:
    """Features of ``items``: the clean clip and ``variants`` augmented copies of each.

    A config of several blocks (``log="db+pcen"``) is loaded as its blocks, side by side:
    each block equals its own config's features bit for bit, so the blocks' cache entries
    serve it and nothing is computed or stored twice. ``with_mel_db`` also loads each
    variant's mel spectrogram in dB (``ClipSet.mel_db``; its own cache entries, from the same
    augmented audio), for shortened crops computed as the device computes a short clip.
    """
    data = _load_features(items, config, variants, cache_dir, seed, treatment)
    if with_mel_db:
        data.mel_db = _load_features(items, mel_db_config(config), variants, cache_dir, seed, treatment).feats
    return data


def _load_features(items: Sequence[Item], config, variants: int, cache_dir, seed: int, treatment) -> ClipSet:
    from .cache import FeatureCache, Treatment

    if config.n_blocks > 1:
        parts = [_load_features(items, block, variants, cache_dir, seed, treatment) for block in config.blocks()]
        return ClipSet(list(items), [[np.concatenate(views, axis=1) for views in zip(*clips)]
                                     for clips in zip(*(part.feats for part in parts))])
    cache = FeatureCache(config, cache_dir, seed=seed, treatment=treatment or Treatment())
    wanted = tuple(range(variants + 1))
    got = cache.get_many([it.path for it in items], wanted)
    return ClipSet(list(items), [[got[(it.path, v)] for v in wanted] for it in items])


# -- metrics ------------------------------------------------------------------------------


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def ua_wa(cm: np.ndarray) -> Tuple[float, float]:
    """Unweighted average recall (mean over classes present) and accuracy."""
    support = cm.sum(axis=1)
    present = support > 0
    recall = np.diag(cm)[present] / support[present]
    return float(recall.mean()), float(np.trace(cm) / max(1, cm.sum()))


def recall_by_class(cm: np.ndarray, names: Sequence[str]) -> Dict[str, float]:
    """Recall of each class (row of ``cm``, named by ``names``) that has clips, to 4 decimals."""
    support = cm.sum(axis=1)
    return {name: round(float(cm[i, i] / support[i]), 4) for i, name in enumerate(names) if support[i]}


# -- windows for evaluation ------------------------------------------------------------------


def feature_blocks(recipe: "Recipe") -> int:
    """Blocks of columns in the recipe's features (padding fills each with its own minimum)."""
    from edge_ser.features import preset

    return preset(recipe.features).n_blocks


def clip_windows(feats: np.ndarray, window_frames: int, hop_frames: int, blocks: int = 1) -> np.ndarray:
    windows, _ = split_windows(feats, window_frames, hop_frames, blocks)
    return windows


def window_outputs(predict_windows, clips: Sequence[np.ndarray], window_frames: int, hop_frames: int,
                   blocks: int = 1) -> List[np.ndarray]:
    """The model's output for every window of every clip (one batch), one array per clip."""
    per_clip = [clip_windows(f, window_frames, hop_frames, blocks) for f in clips]
    counts = [w.shape[0] for w in per_clip]
    flat = predict_windows(np.concatenate(per_clip)[..., None])
    return list(np.split(flat, np.cumsum(counts)[:-1]))


def predict_clips(predict_windows, clips: Sequence[np.ndarray], window_frames: int, hop_frames: int,
                  blocks: int = 1) -> np.ndarray:
    """Clip probabilities = mean of window probabilities (as the device computes them)."""
    return np.stack([w.mean(axis=0)
                     for w in window_outputs(predict_windows, clips, window_frames, hop_frames, blocks)])


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def keras_predictor(model, batch_size: int = 128, logits: bool = False):
    """Window probabilities from a Keras model (softmax applied here when it outputs logits)."""
    def run(windows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(windows), batch_size):
            out.append(np.asarray(model(windows[i:i + batch_size], training=False)))
        out = np.concatenate(out)
        return softmax(out) if logits else out

    return run


# -- training -----------------------------------------------------------------------------


def class_weights(labels: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def epoch_batch(data: ClipSet, recipe: Recipe, weights: np.ndarray, rng: np.random.Generator):
    """One epoch of augmented training windows, one-hot labels and sample weights."""
    xs, ys = [], []
    labels = data.labels
    for _ in range(recipe.crops_per_clip):
        for clip, label in enumerate(labels):
            xs.append(clip_window(data, clip, pick_variant(data.feats[clip], recipe, rng), recipe, rng))
            ys.append(label)
    order = rng.permutation(len(xs))
    x = np.stack([xs[i] for i in order])[..., None]
    y_idx = np.array([ys[i] for i in order])
    y = np.eye(len(EMOTIONS), dtype=np.float32)[y_idx]
    w = weights[y_idx]
    return mixup(x, y, w, rng, recipe.mixup_alpha)


class BalancedSampler:
    """Draw clips corpus-uniformly (or by ``weights``), then class-uniformly within the corpus.

    Only clips with an emotion label take part, unless ``arousal``: then corpora labelled by
    arousal only (BAVED) take part too, their arousal levels standing in for classes (their
    emotion mask is all zero: they teach the arousal head alone). ``masks[corpus]``
    (:func:`class_mask`) tells the masked loss which classes the corpus has. ``weights``
    (corpus -> relative weight, 1 for a corpus not named) lets one corpus be drawn more often
    than the others: uniform draws give a corpus 1/n of the batches however rich it is.
    """

    def __init__(self, data: ClipSet, weights: Optional[Dict[str, float]] = None, arousal: bool = False) -> None:
        self.classes = corpus_classes(it for it in data.items if it.label is not None)
        arousal_only = {}
        if arousal:
            for it in data.items:
                if it.label is None and it.arousal is not None and it.corpus not in self.classes:
                    arousal_only.setdefault(it.corpus, set()).add(it.arousal)
        self.corpora = sorted(set(self.classes) | set(arousal_only))
        w = np.array([float((weights or {}).get(name, 1.0)) for name in self.corpora])
        if not np.all(w >= 0) or w.sum() <= 0:
            raise ValueError(f"corpus weights must be >= 0 with a positive sum, got {weights}")
        self.probabilities = w / w.sum()
        # equal weights draw with rng.integers, as before weights existed: the same seed then
        # gives the same batches, so the results of recipes made before stay reproducible
        self._uniform = bool(np.all(w == w[0]))
        self.groups: Dict[str, List[np.ndarray]] = {}
        for name in self.corpora:
            if name in arousal_only:
                levels = [a for a in AROUSAL_LEVELS if a in arousal_only[name]]
                self.groups[name] = [np.array([i for i, it in enumerate(data.items)
                                               if it.corpus == name and it.label is None and it.arousal == level])
                                     for level in levels]
                continue
            by_label = [np.array([i for i, it in enumerate(data.items) if it.corpus == name and it.label == label])
                        for label in self.classes[name]]
            self.groups[name] = by_label
        self.masks = {name: class_mask(self.classes.get(name, ())) for name in self.corpora}
        # every speaker drawn from, as ``corpus/speaker`` (speaker ids repeat across corpora)
        self.speakers = sorted({speaker_key(data.items[i]) for groups in self.groups.values()
                                for group in groups for i in group})

    def draw(self, count: int, rng: np.random.Generator) -> Tuple[np.ndarray, List[str]]:
        """``count`` clip indices and their corpus names."""
        idx, names = [], []
        for _ in range(count):
            n = len(self.corpora)
            name = self.corpora[int(rng.integers(n) if self._uniform else rng.choice(n, p=self.probabilities))]
            group = self.groups[name][int(rng.integers(len(self.groups[name])))]
            idx.append(int(group[int(rng.integers(len(group)))]))
            names.append(name)
        return np.array(idx), names


#: Mask value of calm in a corpus that has neutral but no calm: calm counts as part of neutral.
MERGED_INTO_NEUTRAL = 2.0


def class_mask(classes: Sequence[str]) -> np.ndarray:
    """Per label: 1 the corpus has it, 0 it is absent (masked out), 2 calm merged into neutral.

    A corpus without calm still has calm speech: its "neutral" clips are neutral *or* calm.
    So there calm is not masked out but joins neutral, exactly as the scoring rule adds calm
    to neutral; calm then competes with (and is pushed below) the other classes on that
    corpus's angry or happy clips, instead of floating free.
    """
    mask = np.array([1.0 if e in classes else 0.0 for e in EMOTIONS], dtype=np.float32)
    if "neutral" in classes and "calm" not in classes:
        mask[EMOTIONS.index("calm")] = MERGED_INTO_NEUTRAL
    return mask


def pick_variant(feats: Sequence[np.ndarray], recipe: Recipe, rng: np.random.Generator) -> int:
    """The clean clip (0) with ``clean_probability``, else one of its augmented copies."""
    if len(feats) > 1 and rng.random() >= recipe.clean_probability:
        return int(rng.integers(1, len(feats)))
    return 0


def grouped_permutation(groups: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """A permutation that maps every position to one of the same group (mixup partners)."""
    groups = np.asarray(groups)
    perm = np.arange(len(groups))
    for name in np.unique(groups):
        where = np.flatnonzero(groups == name)
        perm[where] = where[rng.permutation(len(where))]
    return perm


def one_hot(indices: np.ndarray, n: int) -> np.ndarray:
    """One-hot rows; an index of -1 (no label) gives a row of zeros."""
    indices = np.asarray(indices)
    out = np.zeros((indices.size, n), dtype=np.float32)
    known = indices >= 0
    out[np.flatnonzero(known), indices[known]] = 1.0
    return out


def arousal_targets(items: Sequence[Item], idx: np.ndarray) -> np.ndarray:
    """``[one-hot arousal level | 1]`` per drawn clip, or a row of zeros for a clip without one."""
    levels = np.array([AROUSAL_LEVELS.index(items[i].arousal) if items[i].arousal is not None else -1 for i in idx])
    return np.concatenate([one_hot(levels, len(AROUSAL_LEVELS)), (levels >= 0)[:, None].astype(np.float32)], axis=1)


def speaker_key(item: Item) -> str:
    """A speaker named so that it is one speaker across corpora (``corpus/speaker``)."""
    return f"{item.corpus}/{item.speaker}"


def adversary_peak(recipe: Recipe) -> float:
    """The reversal strength the recipe's adversary rises to (0: none); one adversary at a time."""
    if recipe.corpus_adversary > 0 and recipe.speaker_adversary > 0:
        raise ValueError("a recipe has a corpus adversary or a speaker adversary, not both")
    return max(recipe.corpus_adversary, recipe.speaker_adversary, 0.0)


def adversary_classes(sampler: "BalancedSampler", recipe: Recipe) -> List[str]:
    """What the recipe's discriminator tells apart: the sampler's corpora or its speakers."""
    return sampler.speakers if recipe.speaker_adversary > 0 else sampler.corpora


def adversary_targets(items: Sequence[Item], idx: np.ndarray, names: Sequence[str], sampler: "BalancedSampler",
                      recipe: Recipe) -> np.ndarray:
    """One-hot rows of each drawn clip's corpus (``names``) or speaker, in :func:`adversary_classes`' order."""
    classes = adversary_classes(sampler, recipe)
    position = {c: k for k, c in enumerate(classes)}
    keys = [speaker_key(items[i]) for i in idx] if recipe.speaker_adversary > 0 else list(names)
    return one_hot(np.array([position[k] for k in keys]), len(classes))


def reversal_strength(recipe: Recipe, epoch: int, epochs: int) -> float:
    """The gradient reversal's strength for round ``epoch`` (from 1) of ``epochs``.

    Ganin & Lempitsky's schedule, ``peak * (2 / (1 + exp(-10 p)) - 1)`` with ``p`` the share of
    training done: 0 at the start, so the discriminator first learns what tells the corpora
    apart, and near the peak from about half way on. Set per round, so a resumed training sets
    the same strengths.
    """
    done = (epoch - 1) / max(1, epochs)
    return float(adversary_peak(recipe) * (2.0 / (1.0 + math.exp(-10.0 * done)) - 1.0))


def balanced_batch(data: ClipSet, sampler: BalancedSampler, recipe: Recipe, rng: np.random.Generator):
    """One batch of balanced draws: windows, ``[targets | class mask]`` and unit weights.

    With an arousal head (``recipe.arousal_weight > 0``) the targets go on with
    ``[arousal levels | has arousal]`` (:func:`arousal_targets`); with an adversary
    (``recipe.corpus_adversary`` or ``speaker_adversary > 0``), with the clips' corpora or speakers
    (:func:`adversary_targets`), mixed up like the emotions (corpora stay one-hot: mixup pairs clips
    of one corpus). Neither draws a random number, so a recipe with a head draws the same batches
    as the one without. Windows are cut here, batch
    by batch, so memory holds the cached features and one batch, never an epoch of windows.

    With ``recipe.consistency > 0`` the batch is :func:`paired_windows`: ``batch_size // 2``
    clips, their clean windows first and the same windows of a degraded copy after them, in
    the same order; mixup then mixes both halves with the same partners and weights, so row
    ``i + half`` stays the degraded twin of row ``i``.
    """
    paired = recipe.consistency > 0
    idx, names = sampler.draw(recipe.batch_size // 2 if paired else recipe.batch_size, rng)
    labels = data.labels
    if paired:
        x = paired_windows([data.feats[i] for i in idx], recipe, rng)
    else:
        x = np.stack([clip_window(data, i, pick_variant(data.feats[i], recipe, rng), recipe, rng)
                      for i in idx])[..., None]
    y = one_hot(labels[idx], len(EMOTIONS))
    if recipe.arousal_weight > 0:
        y = np.concatenate([y, arousal_targets(data.items, idx)], axis=1)
    if adversary_peak(recipe) > 0:
        y = np.concatenate([y, adversary_targets(data.items, idx, names, sampler, recipe)], axis=1)
    mask = np.stack([sampler.masks[n] for n in names])
    if recipe.mixup_alpha > 0:
        lam = rng.beta(recipe.mixup_alpha, recipe.mixup_alpha, size=len(idx)).astype(np.float32)
        lam = np.maximum(lam, 1.0 - lam)
        perm = grouped_permutation(names, rng)  # same corpus: arousal-only clips mix among themselves
        if paired:
            lam_x, perm_x = np.concatenate([lam, lam]), np.concatenate([perm, perm + len(idx)])
        else:
            lam_x, perm_x = lam, perm
        x = lam_x[:, None, None, None] * x + (1.0 - lam_x)[:, None, None, None] * x[perm_x]
        y = lam[:, None] * y + (1.0 - lam)[:, None] * y[perm]
    n = len(EMOTIONS)
    target = np.concatenate([y[:, :n], mask, y[:, n:]], axis=1)
    if paired:
        target = np.concatenate([target, target])
    return x.astype(np.float32), target.astype(np.float32), np.ones(len(target), dtype=np.float32)


def clip_window(data: ClipSet, clip: int, variant: int, recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """One training window of variant ``variant`` of clip ``clip`` (:func:`recipe_window`)."""
    mel_db = data.mel_db[clip][variant] if data.mel_db is not None else None
    return recipe_window(data.feats[clip][variant], recipe, rng, mel_db=mel_db)


def recipe_window(features: np.ndarray, recipe: Recipe, rng: np.random.Generator,
                  mel_db: Optional[np.ndarray] = None) -> np.ndarray:
    """One training window of a clip's features, cropped, warped and masked as the recipe says.

    ``mel_db``: the clip's mel spectrogram in dB, which a recipe with ``short_from_mel`` needs.
    """
    return training_window(features.astype(np.float32, copy=False), recipe.window_frames, rng,
                           recipe.short_fraction, recipe.min_frames, blocks=feature_blocks(recipe),
                           band_warp=recipe.band_warp,
                           centres_hz=band_centres(recipe.features) if recipe.band_warp > 0 else None,
                           shortened=shortened_crop(features, recipe, mel_db))


def shortened_crop(features: np.ndarray, recipe: Recipe, mel_db: Optional[np.ndarray]
                   ) -> Optional[Callable[[int, int], np.ndarray]]:
    """How a recipe computes a shortened crop's features from its stretch (start, length).

    ``short_from_mel``: from the stretch's mel spectrogram, as the device computes a clip of it;
    ``short_normalized``: the stretch's rows normalized over themselves; neither: ``None``,
    the rows as cut from the whole clip's features.
    """
    if recipe.short_from_mel:
        if mel_db is None:
            raise ValueError("recipe.short_from_mel needs the clips' mel spectrograms "
                             "(load_clipset(..., with_mel_db=True))")
        if mel_db.shape[0] != features.shape[0]:
            raise ValueError(f"mel spectrogram of {mel_db.shape[0]} frames beside {features.shape[0]} feature frames")
        config = preset(recipe.features)
        return lambda start, length: clip_features_from_mel_db(mel_db[start:start + length], config)
    if recipe.short_normalized:
        normalize = short_normalizer(recipe.features)
        return lambda start, length: normalize(features[start:start + length].astype(np.float32))
    return None


@functools.lru_cache(maxsize=None)
def short_normalizer(features: str) -> Callable[[np.ndarray], np.ndarray]:
    """The device's per-utterance normalization for a feature preset, for shortened crops."""
    return functools.partial(normalize_utterance, config=preset(features))


@functools.lru_cache(maxsize=None)
def band_centres(features: str) -> np.ndarray:
    """The mel bands' centre frequencies of a feature preset (one array per preset and process)."""
    from edge_ser.features import mel_band_centres, preset

    centres = mel_band_centres(preset(features))
    centres.flags.writeable = False  # shared by every caller
    return centres


def paired_windows(clips: Sequence[Sequence[np.ndarray]], recipe: Recipe, rng: np.random.Generator) -> np.ndarray:
    """``(2 * len(clips), frames, features, 1)``: each clip's clean window, then a degraded twin.

    The twin is one of the clip's augmented copies (variant 1 or later), cut with the same
    random draws (the same place, shortening and SpecAugment masks), so the pair differs by
    the room, noise, level, band and codec alone. A copy whose speed was changed is a few
    frames longer or shorter; its window then starts at the same draw, not the same sound.
    """
    clean, degraded = [], []
    for feats in clips:
        if len(feats) < 2:
            raise ValueError("consistency training needs augmented copies of every clip (aug_variants > 0)")
        seed = int(rng.integers(2 ** 32))
        clean.append(recipe_window(feats[0], recipe, np.random.default_rng(seed)))
        degraded.append(recipe_window(feats[int(rng.integers(1, len(feats)))], recipe, np.random.default_rng(seed)))
    return np.stack(clean + degraded)[..., None]


#: Batches of training draws the discriminator is probed on after every round.
PROBE_BATCHES = 8


def adversary_probe(data: ClipSet, sampler: BalancedSampler, recipe: Recipe) -> Tuple[np.ndarray, np.ndarray]:
    """Fixed training draws (windows, the discriminator's class of each: the larger share of a mixed-up
    window) on which training logs how well the discriminator tells them apart: a diagnostic of the
    adversary, not a score. Its own random numbers (the recipe's seed + 1), so the training's
    batches are those of the recipe without the adversary."""
    rng = np.random.default_rng(recipe.seed + 1)
    batches = [balanced_batch(data, sampler, recipe, rng) for _ in range(PROBE_BATCHES)]
    n = len(EMOTIONS)
    x = np.concatenate([b[0] for b in batches])
    told = np.concatenate([b[1][:, 2 * n:] for b in batches]).argmax(axis=1)
    return x, told


def adversary_accuracy(model, probe: Tuple[np.ndarray, np.ndarray], emotions: int) -> float:
    """Share of the probe windows whose class the discriminator names (inference mode)."""
    x, told = probe
    logits = np.concatenate([np.asarray(model(x[i:i + 64], training=False)) for i in range(0, len(x), 64)])
    return float(np.mean(logits[:, emotions:].argmax(axis=1) == told))


def teacher_targets(teacher, windows: np.ndarray) -> np.ndarray:
    """A teacher model's logits for a batch of training windows, in inference mode (its dropout
    off, its batch statistics frozen): the targets :func:`masked_crossentropy` distils from."""
    logits = np.asarray(teacher.predict_on_batch(windows), dtype=np.float32)
    if logits.ndim != 2 or logits.shape[1] != len(EMOTIONS):
        raise ValueError(f"a teacher must give {len(EMOTIONS)} logits per window, it gives shape {logits.shape}")
    return logits


def masked_crossentropy(label_smoothing: float, arousal_weight: float = 0.0, consistency: float = 0.0,
                        adversary_classes: int = 0, distill_weight: float = 0.0, distill_temperature: float = 2.0):
    """Cross-entropy over the classes a clip's corpus has; ``y_true`` is ``[targets | mask]``.

    Absent classes (mask 0) get a logit of -1e9 (probability 0) and no target mass, so they
    are neither rewarded nor punished. Calm merged into neutral (mask 2) adds its
    probability to neutral's. Label smoothing spreads over the present classes only.

    With ``arousal_weight > 0`` the model's output is ``[8 emotion logits | 3 arousal
    logits]`` and ``y_true`` goes on with ``[arousal targets | has arousal]``: a clip with an
    arousal level adds ``arousal_weight`` times the cross-entropy of the arousal head; an
    arousal-only clip (mask all zero) adds nothing through the emotion term.

    With ``adversary_classes > 0`` the output is ``[8 emotion logits | discriminator logits]`` and
    ``y_true`` goes on with the clip's corpus or speaker (:func:`adversary_targets`): the
    discriminator's cross-entropy (unsmoothed) is added with weight 1. The discriminator minimizes
    it; the gradient reversal in front of it (:func:`converter.model.gradient_reversal_class`) makes
    the shared layers work against it.

    With ``consistency > 0`` the batch is :func:`balanced_batch`'s pairs (clean half, then
    the degraded twins in the same order): each twin adds ``consistency`` times the KL
    divergence from its clean row's probabilities (over the corpus's classes, held fixed) to
    its own. The term only pulls the degraded prediction towards the clean one, never the
    other way, so the clean prediction stays what the labels teach.

    With ``distill_weight > 0`` ``y_true`` goes on with a teacher's logits for the same window
    (:func:`teacher_targets`): each window adds ``distill_weight`` times ``T**2`` times the KL
    divergence from the teacher's probabilities to the model's, both at temperature ``T`` =
    ``distill_temperature`` and over the corpus's classes only (Hinton et al.'s knowledge
    distillation; the ``T**2`` keeps the term's gradients the size of the label term's).
    """
    from keras import ops

    neutral, calm = EMOTIONS.index("neutral"), EMOTIONS.index("calm")
    n = len(EMOTIONS)

    def emotion_loss(target, mask, logits):
        kept = mask > 0
        probs = ops.softmax(ops.where(kept, logits, -1e9), axis=-1)
        merged = ops.cast(mask[:, calm:calm + 1] > 1.5, probs.dtype)  # (batch, 1)
        to_neutral = ops.one_hot(ops.full((1,), neutral, dtype="int32"), n, dtype=probs.dtype)  # (1, n)
        grouped = probs + merged * probs[:, calm:calm + 1] * to_neutral
        present = ops.cast(mask > 0.5, probs.dtype) * ops.cast(mask < 1.5, probs.dtype)
        count = ops.maximum(ops.sum(present, axis=-1, keepdims=True), 1.0)
        target = (1.0 - label_smoothing) * target + label_smoothing * present / count
        return -ops.sum(target * ops.log(ops.clip(grouped, 1e-7, 1.0)) * present, axis=-1)

    def twin_divergence(mask, logits):
        kept = mask > 0
        log_probs = ops.log_softmax(ops.where(kept, logits, -1e9), axis=-1)
        clean, degraded = ops.split(log_probs, 2, axis=0)
        teacher = ops.stop_gradient(ops.exp(clean))
        kept_half = ops.cast(ops.split(kept, 2, axis=0)[0], log_probs.dtype)
        kl = ops.sum(kept_half * teacher * (ops.stop_gradient(clean) - degraded), axis=-1)
        return ops.concatenate([ops.zeros_like(kl), kl], axis=0)

    def teacher_divergence(mask, teacher_logits, logits):
        kept = mask > 0
        t = distill_temperature
        log_teacher = ops.log_softmax(ops.where(kept, teacher_logits / t, -1e9), axis=-1)
        log_student = ops.log_softmax(ops.where(kept, logits / t, -1e9), axis=-1)
        kl = ops.sum(ops.cast(kept, logits.dtype) * ops.exp(log_teacher) * (log_teacher - log_student), axis=-1)
        return t * t * kl

    def loss(y_true, logits):
        value = emotion_loss(y_true[:, :n], y_true[:, n:2 * n], logits[:, :n])
        if distill_weight > 0:
            value = value + distill_weight * teacher_divergence(y_true[:, n:2 * n], y_true[:, 2 * n:3 * n],
                                                                logits[:, :n])
        if consistency > 0:
            value = value + consistency * twin_divergence(y_true[:, n:2 * n], logits[:, :n])
        if arousal_weight > 0:
            levels = len(AROUSAL_LEVELS)
            target, has = y_true[:, 2 * n:2 * n + levels], y_true[:, 2 * n + levels]
            target = (1.0 - label_smoothing) * target + label_smoothing * has[:, None] / levels
            log_probs = ops.log_softmax(logits[:, n:n + levels], axis=-1)
            value = value - arousal_weight * ops.sum(target * log_probs, axis=-1)
        if adversary_classes:
            log_probs = ops.log_softmax(logits[:, n:n + adversary_classes], axis=-1)
            value = value - ops.sum(y_true[:, 2 * n:2 * n + adversary_classes] * log_probs, axis=-1)
        return value

    return loss


@dataclass
class TrainResult:
    model: object
    best_epoch: int
    best_val_ua: Optional[float]
    epochs_run: int
    seconds: float
    history: List[Dict[str, float]] = field(default_factory=list)
    last_weights: Optional[list] = None  # weights after the last epoch run (before restoring the best)


def set_seeds(recipe: Recipe) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(recipe.seed)
    if recipe.deterministic:
        tf.config.experimental.enable_op_determinism()


def clipset_digest(data: Optional[ClipSet]) -> Optional[str]:
    """Which clips a set holds (path, label, corpus, copies per clip), as 16 hex digits."""
    if data is None:
        return None
    text = "\n".join(f"{i.path}\t{i.label}\t{i.corpus}\t{len(f)}" for i, f in zip(data.items, data.feats))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_key(train: ClipSet, val: Optional[ClipSet], recipe: Recipe, last_epoch: int) -> Dict[str, object]:
    """What a checkpoint must match to be resumed: the recipe, its length and the clips it draws from."""
    return {"recipe": recipe.to_dict(), "epochs": last_epoch, "train": clipset_digest(train),
            "val": clipset_digest(val)}


def same_training(stored: Dict[str, object], current: Dict[str, object]) -> bool:
    """Whether a stored :func:`training_key` (a checkpoint's, a finished fold's) names the training
    ``current`` describes.

    Why not plain equality: the key holds every :class:`Recipe` field, so adding a field (a new
    knob) made every checkpoint and finished fold written before it "another training's", and an
    hour of training started over. A field the stored key lacks is the same training when the
    current recipe leaves it at its default, which is what every recipe before the field did.
    Every other difference, a default changed since included, is another training.
    """
    stored, current = _plain(stored), _plain(current)
    if not isinstance(stored, dict) or not isinstance(stored.get("recipe"), dict) or "recipe" not in current:
        return stored == current
    defaults = _plain(Recipe().to_dict())
    recipe = {k: v for k, v in current["recipe"].items()
              if k in stored["recipe"] or k not in defaults or defaults[k] != v}
    return stored == dict(current, recipe=recipe)


def _plain(value: object) -> object:
    """``value`` as it reads back from JSON (tuples become lists, other objects their text)."""
    return json.loads(json.dumps(value, default=str))


def train_model(
    train: ClipSet, val: Optional[ClipSet], recipe: Recipe, log=print, stop_at: Optional[int] = None,
    n_features: Optional[int] = None, checkpoint: Optional[Path] = None, teacher: Optional[object] = None,
) -> TrainResult:
    """Train one model. With ``val``, keep the best epoch by val UA (early stopping).

    ``teacher``: for a recipe with ``distill_weight > 0``, a model that takes the same windows and
    gives logits (the ensemble of ``recipe.teacher``'s members trained on the same clips); its
    logits for every training window become a second target (:func:`teacher_targets`).

    ``stop_at`` ends training after that many epochs of the ``recipe.epochs``-long schedule
    (used for the final model, at the epoch count cross-validation found). ``checkpoint``: a
    file the training's state is written to after every epoch and resumed from when it
    exists for this very training (:mod:`converter.checkpoint`); the caller removes it once
    the model it protected is saved.
    """
    import keras

    from .checkpoint import TrainingCheckpoint, TrainingState
    from .model import REVERSAL_LAYER, build_model, emotion_only

    set_seeds(recipe)
    rng = np.random.default_rng(recipe.seed)
    n_features = n_features or train.feats[0][0].shape[1]
    arousal = recipe.arousal_weight > 0
    if arousal and not (recipe.masked and recipe.sampling == "balanced"):
        raise ValueError("an arousal head needs a masked recipe with balanced sampling")
    if recipe.consistency > 0 and not (recipe.masked and recipe.sampling == "balanced" and recipe.aug_variants > 0
                                       and recipe.batch_size % 2 == 0):
        raise ValueError("consistency training needs a masked recipe with balanced sampling, augmented copies "
                         "and an even batch size")
    if recipe.short_from_mel and (recipe.consistency > 0 or train.mel_db is None):
        raise ValueError("short_from_mel needs the clips' mel spectrograms (load_clipset(..., with_mel_db=True)) "
                         "and no consistency twins")
    adversary = adversary_peak(recipe) > 0
    if adversary and not (recipe.masked and recipe.sampling == "balanced" and not arousal and recipe.consistency == 0):
        raise ValueError("an adversary needs a masked recipe with balanced sampling, and no arousal head "
                         "or consistency twins")
    distilled = recipe.distill_weight > 0
    if distilled and not (recipe.masked and recipe.sampling == "balanced" and not arousal and not adversary
                          and recipe.consistency == 0):
        raise ValueError("distillation needs a masked recipe with balanced sampling, and no arousal head, "
                         "adversary or consistency twins")
    if distilled != (teacher is not None):
        raise ValueError("a recipe with distill_weight > 0 needs a teacher model, and only such a recipe takes one")
    balanced = recipe.sampling == "balanced"
    sampler = BalancedSampler(train, recipe.corpus_weights, arousal=arousal) if balanced else None
    told_apart = adversary_classes(sampler, recipe) if adversary else []
    if adversary and len(told_apart) < 2:
        raise ValueError("an adversary needs at least two corpora or speakers to tell apart")
    model = build_model(recipe.window_frames, n_features, len(EMOTIONS), recipe.channels,
                        recipe.dropout, recipe.deltas, head=recipe.head,
                        output="logits" if recipe.masked else "probabilities",
                        arousal_levels=len(AROUSAL_LEVELS) if arousal else 0, input_norm=recipe.input_norm,
                        blocks=feature_blocks(recipe), adversary_classes=len(told_apart))
    # the emotion output alone (the same layers and weights): what is validated and exported
    emotions = emotion_only(model) if arousal or adversary else model
    if balanced:
        steps = max(1, min(ROUND_STEPS, recipe.steps))
        recipe_epochs = max(recipe.warmup_epochs + 1, math.ceil(recipe.steps / steps))
        log(f"  balanced draws: {recipe_epochs} rounds of {steps} batches; corpora "
            + ", ".join(f"{c} ({len(sampler.classes[c])} classes)" if c in sampler.classes
                        else f"{c} (arousal only, {len(sampler.groups[c])} levels)" for c in sampler.corpora))
    else:
        steps = math.ceil(len(train.items) * recipe.crops_per_clip / recipe.batch_size)
        recipe_epochs = recipe.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate * 0.05,
        decay_steps=max(1, steps * (recipe_epochs - recipe.warmup_epochs)),
        warmup_target=recipe.learning_rate,
        warmup_steps=steps * recipe.warmup_epochs,
        alpha=0.02,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay,
                                         use_ema=recipe.ema > 0, ema_momentum=recipe.ema or 0.99),
        loss=(masked_crossentropy(recipe.label_smoothing, recipe.arousal_weight, recipe.consistency, len(told_apart),
                                  recipe.distill_weight, recipe.distill_temperature)
              if recipe.masked
              else keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)),
        weighted_metrics=[],
    )
    weights = class_weights(train.labels[train.labels >= 0]) if not balanced else None
    last_epoch = min(recipe_epochs, stop_at or recipe_epochs)
    best = (-1.0, 0, None)  # (val UA, epoch, weights)
    history: List[Dict[str, float]] = []
    start, earlier_seconds = time.time(), 0.0
    saver = (TrainingCheckpoint(checkpoint, training_key(train, val, recipe, last_epoch), same_training)
             if checkpoint else None)
    state = None
    if saver is not None:
        model.optimizer.build(model.trainable_variables)  # its variables must exist to be restored
        state = saver.restore(model, rng, log)
    if state is not None:
        history, best = state.history, (state.best_ua, state.best_epoch, state.best_weights)
        earlier_seconds = sum(row.get("seconds", 0.0) for row in history)
        log(f"  resumed from {checkpoint} after epoch {state.epoch}/{last_epoch}")
    probe = adversary_probe(train, sampler, recipe) if adversary else None
    done = state.epoch if state is not None else 0
    stop = done if state is not None and state.finished else last_epoch  # stopped early: train no further
    epoch = done
    for epoch in range(done + 1, stop + 1):
        t0 = time.time()
        if adversary:
            strength = reversal_strength(recipe, epoch, recipe_epochs)
            model.get_layer(REVERSAL_LAYER).strength.assign(strength)
        if balanced:
            batches = (balanced_batch(train, sampler, recipe, rng) for _ in range(steps))
        else:
            x, y, w = epoch_batch(train, recipe, weights, rng)
            batches = ((x[i:i + recipe.batch_size], y[i:i + recipe.batch_size], w[i:i + recipe.batch_size])
                       for i in range(0, len(x), recipe.batch_size))
        losses = []
        for xb, yb, wb in batches:
            if teacher is not None:
                yb = np.concatenate([yb, teacher_targets(teacher, xb)], axis=1)
            out = model.train_on_batch(xb, yb, sample_weight=wb)
            losses.append(float(out[0] if isinstance(out, (list, tuple)) else out))
        row = {"epoch": epoch, "loss": float(np.mean(losses))}
        if probe is not None:
            row["reversal_strength"] = strength
            row["adversary_told_apart"] = adversary_accuracy(model, probe, len(EMOTIONS))
        if val is not None and val.items:
            probs = predict_clips(keras_predictor(emotions, logits=recipe.masked), [f[0] for f in val.feats],
                                  recipe.window_frames, recipe.hop_frames, feature_blocks(recipe))
            ua, wa = ua_wa(confusion(val.labels, probs.argmax(axis=1)))
            row.update(val_ua=ua, val_wa=wa)
            if ua > best[0]:
                best = (ua, epoch, model.get_weights())
        row["seconds"] = time.time() - t0
        history.append(row)
        finished = val is not None and bool(recipe.patience) and epoch - best[1] >= recipe.patience
        if saver is not None:  # before the round is logged: a logged round is a saved round
            saver.save(TrainingState(epoch, history, best[0], best[1], best[2], finished), model, rng)
        if probe is not None:
            what = "speakers" if recipe.speaker_adversary > 0 else "corpora"
            log(f"  reversal {strength:.3f}: the discriminator tells {row['adversary_told_apart']:.1%} of "
                f"{len(probe[0])} probe windows' {what} apart (chance {1 / len(told_apart):.1%})")
        extra = f" val UA {row['val_ua']:.3f} WA {row['val_wa']:.3f} (best {best[0]:.3f} @ {best[1]})" if "val_ua" in row else ""
        log(f"  epoch {epoch:3d}/{last_epoch} loss {row['loss']:.4f}{extra} [{row['seconds']:.1f}s]")
        if finished:
            log(f"  early stop: no val UA gain for {recipe.patience} epochs")
            break
    if recipe.ema > 0:
        # swap the averaged weights in (train_on_batch does not do it, unlike fit)
        model.optimizer.finalize_variable_values(model.trainable_variables)
    last_weights = emotions.get_weights()
    if best[2] is not None:
        model.set_weights(best[2])
    # an arousal head or an adversary is training material only: the model handed on has the emotion output alone
    return TrainResult(emotions, best[1] if best[2] is not None else epoch, best[0] if best[2] is not None else None,
                       epoch, earlier_seconds + time.time() - start, history, last_weights)


def choose_val_speakers(speakers: Sequence[str], count: int, seed: int) -> List[str]:
    """Hold out ``count`` training speakers, alternating odd/even actor numbers (sex, in RAVDESS)."""
    unique = sorted(set(speakers))
    if count <= 0 or len(unique) <= count:
        return []
    rng = np.random.default_rng(seed)
    order = [unique[i] for i in rng.permutation(len(unique))]
    odd = [s for s in order if s.isdigit() and int(s) % 2 == 1]
    even = [s for s in order if s.isdigit() and int(s) % 2 == 0]
    if not odd or not even:
        return order[:count]
    chosen: List[str] = []
    while len(chosen) < count and (odd or even):
        for group in (odd, even):
            if group and len(chosen) < count:
                chosen.append(group.pop(0))
    return sorted(chosen)
