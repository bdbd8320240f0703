"""Speaker-independent cross-validation: per-fold float and int8 scores, tables and plots.

For each fold (EmoBox folds by default) the fold's speakers are the test set, a few
other speakers are held out for early stopping, and the rest train. The fold model is
scored as Keras float model and again after full-int8 conversion, run in-process by
``tf.lite.Interpreter`` exactly as on the device (windows of the whole clip, averaged).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edge_ser.atomic_write import write_bytes_atomically
from edge_ser.metadata import EMOTIONS

from .checkpoint import checkpoint_for
from .corpora import EMOBOX_FOLDS, cv_folds
from .quantize import TFLiteRunner, convert, graph_report, representative_windows
from .train import (ClipSet, Recipe, choose_val_speakers, clip_windows, clipset_digest, confusion, feature_blocks,
                    keras_predictor, predict_clips, same_training, train_model, training_key, ua_wa)


def int8_model(model, train: ClipSet, recipe: Recipe, count: int = 300) -> bytes:
    """Full-int8 conversion calibrated on real windows of the training clips.

    Only clips with an emotion label calibrate: arousal-only clips (BAVED, one group per
    speaker) would otherwise take a large share of the round-robin over (class, speaker).
    """
    labelled = [i for i, label in enumerate(train.labels) if label >= 0] or list(range(len(train.items)))
    blocks = feature_blocks(recipe)
    windows = [clip_windows(train.feats[i][0], recipe.window_frames, recipe.hop_frames, blocks) for i in labelled]
    reps = representative_windows(windows, train.labels[labelled], [train.speakers[i] for i in labelled],
                                  count=count, seed=recipe.seed)
    return convert(model, reps, "int8")


def score(model, tflite_bytes: bytes, test: ClipSet, recipe: Recipe) -> Dict[str, object]:
    clips = [f[0] for f in test.feats]
    y = test.labels
    p_float = predict_clips(keras_predictor(model), clips, recipe.window_frames, recipe.hop_frames,
                            feature_blocks(recipe))
    p_int8 = predict_clips(TFLiteRunner(tflite_bytes).predict, clips, recipe.window_frames, recipe.hop_frames,
                            feature_blocks(recipe))
    cm_f, cm_q = confusion(y, p_float.argmax(1)), confusion(y, p_int8.argmax(1))
    ua_f, wa_f = ua_wa(cm_f)
    ua_q, wa_q = ua_wa(cm_q)
    return {
        "clips": int(len(y)),
        "float": {"ua": ua_f, "wa": wa_f, "confusion": cm_f.tolist()},
        "int8": {"ua": ua_q, "wa": wa_q, "confusion": cm_q.tolist()},
        "agreement": float(np.mean(p_float.argmax(1) == p_int8.argmax(1))),
    }


def fold_key(train: ClipSet, val: Optional[ClipSet], test: ClipSet, recipe: Recipe) -> Dict[str, object]:
    """What a finished fold's result must match to be reused: its training and its test clips."""
    return dict(training_key(train, val, recipe, recipe.epochs), test=clipset_digest(test))


def finished_fold(work: Path, number: int, key: Dict[str, object], log=print) -> Optional[Dict[str, object]]:
    """Fold ``number``'s result from an earlier run in ``work``, or None when there is none, it
    belongs to another training (recipe, clips) or its int8 model is gone."""
    path, model = work / f"fold{number}.json", work / f"fold{number}.tflite"
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log(f"fold {number}: {path} unreadable ({e}): trained again")
        return None
    if not same_training(stored.get("key"), key) or not model.exists():
        log(f"fold {number}: {path} is another training's (or its int8 model is gone): trained again")
        return None
    return stored["fold"]


def _keep_model(folder: Path, number: int, tflite_bytes: bytes) -> None:
    """Fold ``number``'s int8 model into ``--save-models``' folder, as ``foldN.tflite``."""
    write_bytes_atomically(folder / f"fold{number}.tflite", tflite_bytes)


def run_cv(
    data: ClipSet, recipe: Recipe, val_speakers: int = 2, folds: Sequence[Sequence[str]] = EMOBOX_FOLDS,
    only: Optional[Sequence[int]] = None, log=print, save_models: Optional[Path] = None,
    work: Optional[Path] = None,
) -> Dict[str, object]:
    """Train and score one model per fold; ``save_models`` keeps each fold's int8 file (for later evaluations).

    ``work``: a folder where each fold's training keeps a checkpoint after every epoch and each
    finished fold its result and int8 model. Why: five folds of a full schedule take hours, and
    a process ended midway (a working session that stops) lost all of them. Run again with the
    same folder, finished folds are read back and an unfinished one resumes from its last epoch;
    a fold whose recipe or clips differ is trained afresh.
    """
    present = cv_folds(data.items, folds)
    if not present:
        # not RAVDESS actors: split the speakers themselves into (up to 5) folds
        folds = speaker_folds(data.speakers)
        log(f"no EmoBox fold speakers in the data: {len(folds)} folds by speaker instead")
        present = cv_folds(data.items, folds)
    missing = [i for i, f in enumerate(folds, start=1) if i not in {n for n, _ in present}]
    if missing:
        log(f"folds {missing} skipped: none of their speakers are in the data")
    results: List[Dict[str, object]] = []
    for number, test_speakers in present:
        if only and number not in only:
            continue
        test = data.subset(test_speakers)
        rest = data.subset(test_speakers, keep=False)
        val_ids = choose_val_speakers(rest.speakers, val_speakers, recipe.seed + number)
        val = rest.subset(val_ids) if val_ids else None
        train = rest.subset(val_ids, keep=False) if val_ids else rest
        log(f"fold {number}: test {','.join(test_speakers)} ({len(test.items)} clips), val "
            f"{','.join(val_ids) or '-'}, train {len(set(train.speakers))} speakers ({len(train.items)} clips)")
        key = fold_key(train, val, test, recipe)
        done = finished_fold(work, number, key, log) if work is not None else None
        if done is not None:
            log(f"fold {number}: done already ({work / f'fold{number}.json'})")
            if save_models is not None:
                _keep_model(save_models, number, (work / f"fold{number}.tflite").read_bytes())
            results.append(done)
            continue
        checkpoint = checkpoint_for(work / f"fold{number}.keras") if work is not None else None
        t0 = time.time()
        result = train_model(train, val, recipe, log=log, checkpoint=checkpoint)
        tfl = int8_model(result.model, train, recipe)
        if save_models is not None:
            _keep_model(save_models, number, tfl)
        fold = {"fold": number, "test_speakers": list(test_speakers), "val_speakers": val_ids,
                "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "best_val_ua": result.best_val_ua, "train_seconds": round(result.seconds, 1),
                "int8_bytes": len(tfl), "integer_only": graph_report(tfl)["integer_only"]}
        fold.update(score(result.model, tfl, test, recipe))
        if result.last_weights is not None and result.epochs_run != result.best_epoch:
            # what training to the end (no early stopping) would have scored: this decides
            # whether the final model, trained on every speaker, may simply run the whole schedule
            best_weights = result.model.get_weights()
            result.model.set_weights(result.last_weights)
            p_last = predict_clips(keras_predictor(result.model), [f[0] for f in test.feats],
                                   recipe.window_frames, recipe.hop_frames, feature_blocks(recipe))
            result.model.set_weights(best_weights)
            fold["last_epoch_float_ua"], fold["last_epoch_float_wa"] = ua_wa(confusion(test.labels, p_last.argmax(1)))
        else:
            fold["last_epoch_float_ua"], fold["last_epoch_float_wa"] = fold["float"]["ua"], fold["float"]["wa"]
        fold["seconds"] = round(time.time() - t0, 1)
        if work is not None:  # the model first: a result without its model is not a finished fold
            write_bytes_atomically(work / f"fold{number}.tflite", tfl)
            write_bytes_atomically(work / f"fold{number}.json", json.dumps({"key": key, "fold": fold}, indent=1))
            checkpoint.unlink(missing_ok=True)
        results.append(fold)
        log(f"fold {number}: float UA {fold['float']['ua']:.3f} WA {fold['float']['wa']:.3f} | int8 UA "
            f"{fold['int8']['ua']:.3f} WA {fold['int8']['wa']:.3f} | agreement {fold['agreement']:.3f} "
            f"| best epoch {result.best_epoch} | last-epoch float UA {fold['last_epoch_float_ua']:.3f} "
            f"| {fold['seconds']:.0f}s")
    return summarize(results, recipe)


def speaker_folds(speakers: Sequence[str], count: int = 5) -> List[List[str]]:
    """Sorted speakers dealt round-robin into ``count`` folds (fewer if fewer speakers)."""
    unique = sorted(set(speakers))
    count = max(1, min(count, len(unique)))
    return [unique[i::count] for i in range(count)]


def protocol_text(results: List[Dict[str, object]]) -> str:
    """Say in words how the fold models were trained (depends on early stopping)."""
    ravdess = results and all(r.get("test_speakers") == list(f)[: len(r["test_speakers"])]
                              for r in results for f in [EMOBOX_FOLDS[r["fold"] - 1]] if r["fold"] <= len(EMOBOX_FOLDS))
    base = (("speaker-independent cross-validation on RAVDESS with the EmoBox folds: the 4 test actors of a "
             "fold are never seen" if ravdess else
             "speaker-independent cross-validation: the test speakers of a fold are never seen")
            + " in training or model selection; a clip's score is the mean of its window "
            "probabilities, as on the device")
    if results and any(r.get("val_speakers") for r in results):
        return base + ("; each fold model trains on the remaining actors minus 2 held out for early stopping "
                       "(best epoch by their UA)")
    if ravdess:
        return base + ("; each fold model trains on all 16 remaining actors for the whole schedule, exactly like "
                       "the final model of the same recipe (which trains on all 20)")
    return base + ("; each fold model trains on all remaining speakers for the whole schedule, exactly like the "
                   "final model of the same recipe (which trains on all of them)")


def summarize(results: List[Dict[str, object]], recipe: Recipe) -> Dict[str, object]:
    def mean(kind: str, metric: str) -> float:
        return float(np.mean([r[kind][metric] for r in results])) if results else float("nan")

    total_f = np.sum([r["float"]["confusion"] for r in results], axis=0) if results else np.zeros((8, 8))
    total_q = np.sum([r["int8"]["confusion"] for r in results], axis=0) if results else np.zeros((8, 8))
    per_class = {}
    for i, name in enumerate(EMOTIONS):
        support = int(total_q[i].sum())
        per_class[name] = {
            "support": support,
            "recall_float": float(total_f[i, i] / support) if support else None,
            "recall_int8": float(total_q[i, i] / support) if support else None,
            "precision_int8": float(total_q[i, i] / total_q[:, i].sum()) if total_q[:, i].sum() else None,
        }
    return {
        "protocol": protocol_text(results),
        "labels": list(EMOTIONS),
        "recipe": recipe.to_dict(),
        "folds": results,
        "mean": {
            "float_ua": mean("float", "ua"), "float_wa": mean("float", "wa"),
            "int8_ua": mean("int8", "ua"), "int8_wa": mean("int8", "wa"),
            "agreement": float(np.mean([r["agreement"] for r in results])) if results else float("nan"),
            "best_epoch_median": int(np.median([r["best_epoch"] for r in results])) if results else None,
            "last_epoch_float_ua": float(np.mean([r["last_epoch_float_ua"] for r in results])) if results else float("nan"),
        },
        "pooled_confusion_float": total_f.tolist(),
        "pooled_confusion_int8": total_q.tolist(),
        "per_class": per_class,
    }


def markdown_table(summary: Dict[str, object]) -> str:
    lines = ["| fold | test actors | clips | float UA | float WA | int8 UA | int8 WA | float/int8 agreement | epochs kept |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["folds"]:
        lines.append(
            f"| {r['fold']} | {', '.join(r['test_speakers'])} | {r['clips']} | {100 * r['float']['ua']:.1f} % | "
            f"{100 * r['float']['wa']:.1f} % | {100 * r['int8']['ua']:.1f} % | {100 * r['int8']['wa']:.1f} % | "
            f"{100 * r['agreement']:.1f} % | {r['best_epoch']} |")
    m = summary["mean"]
    lines.append(f"| **mean** | | | **{100 * m['float_ua']:.1f} %** | {100 * m['float_wa']:.1f} % | "
                 f"**{100 * m['int8_ua']:.1f} %** | {100 * m['int8_wa']:.1f} % | {100 * m['agreement']:.1f} % | "
                 f"{m['best_epoch_median']} (median) |")
    if "random_split" in summary:
        r = summary["random_split"]
        lines.append("")
        lines.append(f"For comparison only (NOT speaker-independent: the same actors appear in training and "
                     f"test): a random {r['description']} gives int8 UA {100 * r['int8_ua']:.1f} %.")
    return "\n".join(lines)


def per_class_table(summary: Dict[str, object]) -> str:
    lines = ["| class | clips | recall (float) | recall (int8) | precision (int8) |", "|---|---|---|---|---|"]
    for name, row in summary["per_class"].items():
        def pct(v):
            return "-" if v is None else f"{100 * v:.1f} %"
        lines.append(f"| {name} | {row['support']} | {pct(row['recall_float'])} | {pct(row['recall_int8'])} | "
                     f"{pct(row['precision_int8'])} |")
    return "\n".join(lines)


def confusion_text(cm: Sequence[Sequence[int]]) -> str:
    cm = np.asarray(cm)
    short = [e[:5] for e in EMOTIONS]
    head = "true\\pred " + " ".join(f"{s:>5}" for s in short)
    rows = [head] + [f"{short[i]:>9} " + " ".join(f"{v:5d}" for v in cm[i]) for i in range(len(short))]
    return "\n".join(rows)


def plot_confusion(cm: Sequence[Sequence[int]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.6), dpi=100)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall (row-normalized)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_results(summary: Dict[str, object], out_dir: Path, command: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(summary, command=command)
    write_bytes_atomically(out_dir / "cv.json", json.dumps(summary, indent=1) + "\n")
    m = summary["mean"]
    md = [
        "# Speaker-independent cross-validation",
        "",
        summary["protocol"] + ".",
        "",
        f"Reproduce: `{command}`",
        "",
        markdown_table(summary),
        "",
        "UA = unweighted average recall (mean of per-class recalls), WA = accuracy over clips.",
        "",
        "## Per class (pooled over folds)",
        "",
        per_class_table(summary),
        "",
        "## Confusion matrix, int8 model (pooled over folds; rows = true class)",
        "",
        "```",
        confusion_text(summary["pooled_confusion_int8"]),
        "```",
        "",
        "![confusion matrix](confusion.png)",
        "",
    ]
    write_bytes_atomically(out_dir / "cv.md", "\n".join(md))
    plot_confusion(summary["pooled_confusion_int8"], out_dir / "confusion.png",
                   f"int8, speaker-independent CV (UA {100 * m['int8_ua']:.1f} %, WA {100 * m['int8_wa']:.1f} %)")
