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
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from edge_ser.metadata import EMOTIONS
from edge_ser.windows import split_windows

from .augment import mixup, training_window
from .corpora import Item


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
    head: str = "time_pool"  # "time_pool" (mean+max over time, keep frequency) or "gap"
    aug_variants: int = 4  # augmented copies per clip (variant 0 is the clean clip)
    clean_probability: float = 0.3
    short_fraction: float = 0.2  # crops shortened to min_frames..window and padded
    min_frames: int = 100
    crops_per_clip: int = 1
    patience: int = 25
    ema: float = 0.0  # > 0: keep an exponential moving average of the weights and use it at the end
    seed: int = 1234
    deterministic: bool = True

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d


@dataclass
class ClipSet:
    """Clips with their features: ``feats[i][v]`` is variant ``v`` of clip ``i``."""

    items: List[Item]
    feats: List[List[np.ndarray]]

    @property
    def labels(self) -> np.ndarray:
        return np.array([it.label_index for it in self.items], dtype=np.int64)

    @property
    def speakers(self) -> List[str]:
        return [it.speaker for it in self.items]

    def subset(self, speakers: Sequence[str], keep: bool = True) -> "ClipSet":
        wanted = set(speakers)
        idx = [i for i, it in enumerate(self.items) if (it.speaker in wanted) == keep]
        return ClipSet([self.items[i] for i in idx], [self.feats[i] for i in idx])


def load_clipset(items: Sequence[Item], config, variants: int, cache_dir=None, seed: int = 0) -> ClipSet:
    from .cache import FeatureCache

    cache = FeatureCache(config, cache_dir, seed=seed)
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


# -- windows for evaluation ------------------------------------------------------------------


def clip_windows(feats: np.ndarray, window_frames: int, hop_frames: int) -> np.ndarray:
    windows, _ = split_windows(feats, window_frames, hop_frames)
    return windows


def predict_clips(predict_windows, clips: Sequence[np.ndarray], window_frames: int, hop_frames: int) -> np.ndarray:
    """Clip probabilities = mean of window probabilities (as the device computes them)."""
    per_clip = [clip_windows(f, window_frames, hop_frames) for f in clips]
    counts = [w.shape[0] for w in per_clip]
    probs = predict_windows(np.concatenate(per_clip)[..., None])
    out, pos = [], 0
    for n in counts:
        out.append(probs[pos:pos + n].mean(axis=0))
        pos += n
    return np.stack(out)


def keras_predictor(model, batch_size: int = 128):
    def run(windows: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(windows), batch_size):
            out.append(np.asarray(model(windows[i:i + batch_size], training=False)))
        return np.concatenate(out)

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
        for feats, label in zip(data.feats, labels):
            if len(feats) > 1 and rng.random() >= recipe.clean_probability:
                variant = feats[int(rng.integers(1, len(feats)))]
            else:
                variant = feats[0]
            xs.append(training_window(variant, recipe.window_frames, rng, recipe.short_fraction, recipe.min_frames))
            ys.append(label)
    order = rng.permutation(len(xs))
    x = np.stack([xs[i] for i in order])[..., None]
    y_idx = np.array([ys[i] for i in order])
    y = np.eye(len(EMOTIONS), dtype=np.float32)[y_idx]
    w = weights[y_idx]
    return mixup(x, y, w, rng, recipe.mixup_alpha)


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


def train_model(
    train: ClipSet, val: Optional[ClipSet], recipe: Recipe, log=print, stop_at: Optional[int] = None,
    n_features: Optional[int] = None,
) -> TrainResult:
    """Train one model. With ``val``, keep the best epoch by val UA (early stopping).

    ``stop_at`` ends training after that many epochs of the ``recipe.epochs``-long schedule
    (used for the final model, at the epoch count cross-validation found).
    """
    import keras

    from .model import build_model

    set_seeds(recipe)
    rng = np.random.default_rng(recipe.seed)
    n_features = n_features or train.feats[0][0].shape[1]
    model = build_model(recipe.window_frames, n_features, len(EMOTIONS), recipe.channels,
                        recipe.dropout, recipe.deltas, head=recipe.head)
    steps = math.ceil(len(train.items) * recipe.crops_per_clip / recipe.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=recipe.learning_rate * 0.05,
        decay_steps=max(1, steps * (recipe.epochs - recipe.warmup_epochs)),
        warmup_target=recipe.learning_rate,
        warmup_steps=steps * recipe.warmup_epochs,
        alpha=0.02,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay,
                                         use_ema=recipe.ema > 0, ema_momentum=recipe.ema or 0.99),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        weighted_metrics=[],
    )
    weights = class_weights(train.labels)
    last_epoch = min(recipe.epochs, stop_at or recipe.epochs)
    best = (-1.0, 0, None)  # (val UA, epoch, weights)
    history: List[Dict[str, float]] = []
    start = time.time()
    epoch = 0
    for epoch in range(1, last_epoch + 1):
        t0 = time.time()
        x, y, w = epoch_batch(train, recipe, weights, rng)
        losses = []
        for i in range(0, len(x), recipe.batch_size):
            sl = slice(i, i + recipe.batch_size)
            out = model.train_on_batch(x[sl], y[sl], sample_weight=w[sl])
            losses.append(float(out[0] if isinstance(out, (list, tuple)) else out))
        row = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val is not None and val.items:
            probs = predict_clips(keras_predictor(model), [f[0] for f in val.feats],
                                  recipe.window_frames, recipe.hop_frames)
            ua, wa = ua_wa(confusion(val.labels, probs.argmax(axis=1)))
            row.update(val_ua=ua, val_wa=wa)
            if ua > best[0]:
                best = (ua, epoch, model.get_weights())
        row["seconds"] = time.time() - t0
        history.append(row)
        extra = f" val UA {row['val_ua']:.3f} WA {row['val_wa']:.3f} (best {best[0]:.3f} @ {best[1]})" if "val_ua" in row else ""
        log(f"  epoch {epoch:3d}/{last_epoch} loss {row['loss']:.4f}{extra} [{row['seconds']:.1f}s]")
        if val is not None and recipe.patience and epoch - best[1] >= recipe.patience:
            log(f"  early stop: no val UA gain for {recipe.patience} epochs")
            break
    if recipe.ema > 0:
        # swap the averaged weights in (train_on_batch does not do it, unlike fit)
        model.optimizer.finalize_variable_values(model.trainable_variables)
    last_weights = model.get_weights()
    if best[2] is not None:
        model.set_weights(best[2])
    return TrainResult(model, best[1] if best[2] is not None else epoch, best[0] if best[2] is not None else None,
                       epoch, time.time() - start, history, last_weights)


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
