"""``python -m converter {train,cv,quantize,convert}``: the workstation command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "edge-ser-int8.tflite"
DEFAULT_RESULTS = ROOT / "models" / "results"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _command(argv: List[str]) -> str:
    return "python -m converter " + " ".join(shlex.quote(a) for a in argv)


def _recipe(args):
    from .train import Recipe

    recipe = Recipe()
    for name in ("epochs", "seed", "batch_size", "learning_rate", "aug_variants", "hop_frames", "patience"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(recipe, name, value)
    if getattr(args, "channels", None):
        recipe.channels = tuple(int(c) for c in args.channels.split(","))
    if getattr(args, "head", None):
        recipe.head = args.head
    if getattr(args, "ema", None) is not None:
        recipe.ema = args.ema
    if getattr(args, "crops_per_clip", None):
        recipe.crops_per_clip = args.crops_per_clip
    if getattr(args, "nondeterministic", False):
        recipe.deterministic = False
    return recipe


def _data(args, recipe):
    from edge_ser.features import preset

    from .corpora import default_data_dir, read_corpus
    from .train import load_clipset

    location = Path(args.data) if args.data else default_data_dir()
    items = read_corpus(location)
    if args.max_per_speaker:
        kept, seen = [], {}
        for it in items:
            key = (it.speaker, it.label)
            if seen.get(key, 0) < args.max_per_speaker:
                kept.append(it)
                seen[key] = seen.get(key, 0) + 1
        items = kept
    _log(f"corpus {location}: {len(items)} clips, {len({i.speaker for i in items})} speakers")
    return load_clipset(items, preset("edge"), recipe.aug_variants, args.cache, seed=0)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="corpus: RAVDESS tree, label folders, or CSV manifest "
                                  "(default: $EDGE_SER_DATA or ../shared/datasets/ravdess)")
    p.add_argument("--cache", help="feature cache folder (default: .features-cache/ or $EDGE_SER_CACHE)")
    p.add_argument("--epochs", type=int, help="length of the cosine schedule (default 70)")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--aug-variants", type=int, help="augmented audio copies per clip (default 4)")
    p.add_argument("--hop-frames", type=int, help="hop between windows at inference (default 100)")
    p.add_argument("--patience", type=int)
    p.add_argument("--channels", help="conv widths, e.g. 24,32,48,64,96")
    p.add_argument("--head", choices=("time_pool", "gap"), help="classifier head (default time_pool)")
    p.add_argument("--ema", type=float, help="weight EMA momentum, e.g. 0.995 (default 0: off)")
    p.add_argument("--crops-per-clip", type=int, help="training crops per clip per epoch (default 1)")
    p.add_argument("--max-per-speaker", type=int, default=0, help="keep at most N clips per speaker and class (smoke tests)")
    p.add_argument("--nondeterministic", action="store_true", help="faster, not bit-reproducible")


def cmd_cv(args, argv) -> int:
    from .evaluate import run_cv, write_results

    recipe = _recipe(args)
    data = _data(args, recipe)
    only = [int(f) for f in args.folds.split(",")] if args.folds else None
    start = time.time()
    summary = run_cv(data, recipe, val_speakers=args.val_speakers, only=only, log=_log,
                     save_models=Path(args.save_models) if args.save_models else None)
    summary["wall_seconds"] = round(time.time() - start, 1)
    out = Path(args.results)
    write_results(summary, out, _command(argv))
    m = summary["mean"]
    _log(f"mean over {len(summary['folds'])} folds: float UA {m['float_ua']:.3f} WA {m['float_wa']:.3f} | "
         f"int8 UA {m['int8_ua']:.3f} WA {m['int8_wa']:.3f} | agreement {m['agreement']:.3f}")
    _log(f"wrote {out / 'cv.json'}, {out / 'cv.md'}, {out / 'confusion.png'}")
    return 0


def cmd_train(args, argv) -> int:
    from .evaluate import int8_model
    from .export import build_metadata, cv_digest, finish_tflite, load_cv, model_card, utc_now
    from .model import count_params
    from .train import choose_val_speakers, train_model

    recipe = _recipe(args)
    data = _data(args, recipe)
    cv = load_cv(Path(args.cv_results)) if args.cv_results else None
    # The final model runs the whole cosine schedule: cross-validation records the test UA
    # of the last epoch beside the early-stopped one, and they agree (see models/results/cv.md).
    stop_at = args.stop_at
    cv_matches = bool(cv) and recipes_match(cv.get("recipe") or {}, recipe)
    if cv and not cv_matches:
        _log("WARNING: the cross-validation results were made with a different recipe; "
             "they are embedded but marked as not matching")
    val_ids = choose_val_speakers(data.speakers, args.val_speakers, recipe.seed)
    val = data.subset(val_ids) if val_ids else None
    train = data.subset(val_ids, keep=False) if val_ids else data
    _log(f"training on {len(set(train.speakers))} speakers ({len(train.items)} clips); "
         f"early-stopping speakers: {','.join(val_ids) or 'none'}")
    result = train_model(train, val, recipe, log=_log, stop_at=stop_at)
    _log(f"trained {result.epochs_run} epochs in {result.seconds / 60:.1f} min (kept epoch {result.best_epoch})")
    if args.keras_out:
        Path(args.keras_out).parent.mkdir(parents=True, exist_ok=True)
        result.model.save(args.keras_out)
        _log(f"saved Keras model {args.keras_out}")
    tfl = int8_model(result.model, train, recipe)
    params = count_params(result.model)
    command = _command(argv)
    extra = {
        "corpora": sorted({it.corpus for it in data.items}),
        "train_speakers": sorted(set(train.speakers)),
        "early_stopping_speakers": val_ids,
        "protocol": (cv_digest(cv) or {}).get("protocol", "no cross-validation results available"),
        "cv": cv_digest(cv),
        "cv_recipe_matches": cv_matches,
        "command": command,
        "trained": utc_now(),
        "epochs": result.best_epoch,
        "params": params,
        "recipe": recipe.to_dict(),
    }
    sanity = fixed_set_accuracy(tfl, data, recipe)
    if sanity is not None:
        extra["training_clip_check"] = sanity
        _log(f"int8 top-1 on the fixed check set (training clips): {sanity['accuracy']:.3f}")
    metadata = build_metadata(data_config(), recipe.window_frames, recipe.hop_frames, extra)
    out = Path(args.out)
    report = finish_tflite(tfl, metadata, out)
    _log(f"wrote {out}: {report['size_bytes']} bytes, {params} params, ops {report['ops']}, "
         f"integer only: {report['integer_only']}")
    if not report["integer_only"]:
        _log(f"WARNING: non-integer tensors: {report['non_int_tensors'][:5]}")
    if args.card:
        info = {"date": extra["trained"], "speakers": len(set(train.speakers)), "clips": len(train.items),
                "epochs": result.epochs_run, "seconds": result.seconds,
                "channels": list(recipe.channels), "head": recipe.head, "check": sanity}
        Path(args.card).write_text(model_card(out, metadata, report, cv, params, command, info))
        _log(f"wrote {args.card}")
    return 0


def recipes_match(stored: dict, recipe) -> bool:
    """True if ``stored`` (from a cv.json) describes ``recipe``; knobs added since must be at defaults."""
    from .train import Recipe

    current = json.loads(json.dumps(recipe.to_dict()))
    defaults = json.loads(json.dumps(Recipe().to_dict()))
    return all(stored[k] == v if k in stored else v == defaults[k] for k, v in current.items())


CHECK_ACTORS = ("01", "02", "03", "04")


def fixed_set_accuracy(tflite_bytes: bytes, data, recipe, per_class: int = 2):
    """int8 top-1 on a fixed set (2 clips per class of actors 01-04, as tests/test_shipped_model.py).

    These clips are in the training data of the shipped model: the figure only shows that
    the exported file works (labels, features, quantization), not how it generalizes.
    """
    from .quantize import TFLiteRunner
    from .train import predict_clips

    chosen = []
    for actor in CHECK_ACTORS:
        for label in sorted({it.label for it in data.items}):
            group = sorted((i for i, it in enumerate(data.items) if it.speaker == actor and it.label == label),
                           key=lambda i: data.items[i].path)
            chosen += group[:per_class]
    if not chosen:
        return None
    probs = predict_clips(TFLiteRunner(tflite_bytes).predict, [data.feats[i][0] for i in chosen],
                          recipe.window_frames, recipe.hop_frames)
    labels = [data.items[i].label_index for i in chosen]
    accuracy = float((probs.argmax(1) == labels).mean())
    return {"actors": list(CHECK_ACTORS), "clips": len(chosen), "accuracy": round(accuracy, 4)}


def data_config():
    from edge_ser.features import preset

    return preset("edge")


def cmd_quantize(args, argv) -> int:
    import keras

    from edge_ser.features import preset

    from .corpora import default_data_dir, read_corpus
    from .evaluate import int8_model
    from .export import build_metadata, finish_tflite
    from .quantize import convert, graph_report
    from .train import Recipe, load_clipset

    model = keras.models.load_model(args.model, compile=False)
    recipe = Recipe()
    recipe.window_frames = int(model.input_shape[1])
    if args.hop_frames:
        recipe.hop_frames = args.hop_frames
    if args.variant == "int8":
        items = read_corpus(Path(args.data) if args.data else default_data_dir())
        data = load_clipset(items, preset("edge"), 0, args.cache)
        tfl = int8_model(model, data, recipe, count=args.calibration_windows)
    else:
        tfl = convert(model, None, args.variant)
    metadata = build_metadata(preset("edge"), recipe.window_frames, recipe.hop_frames,
                              {"command": _command(argv), "variant": args.variant})
    report = finish_tflite(tfl, metadata, Path(args.out))
    print(json.dumps({k: v for k, v in report.items() if k != "non_int_tensors"}, indent=1))
    if args.variant == "int8" and not report["integer_only"]:
        print(f"error: int8 model has non-integer tensors: {report['non_int_tensors'][:10]}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args, argv) -> int:
    """Rewrite cv.md and confusion.png from a cv.json (after a change of the report layout)."""
    from .evaluate import protocol_text, write_results

    path = Path(args.cv_json)
    summary = json.loads(path.read_text())
    summary["protocol"] = protocol_text(summary["folds"])
    write_results(summary, path.parent, summary.get("command", "python -m converter cv"))
    _log(f"rewrote {path.parent / 'cv.md'} and {path.parent / 'confusion.png'}")
    return 0


def cmd_convert(args, argv) -> int:
    from .convert_user import convert_user_model

    return convert_user_model(args, _command(argv), log=_log)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m converter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train on all speakers, quantize, write the shipped model + model card")
    _add_common(p)
    p.add_argument("--val-speakers", type=int, default=0,
                   help="hold out N speakers for early stopping (default 0: stop at the CV epoch count)")
    p.add_argument("--stop-at", type=int, help="stop after N epochs of the schedule (default: run it to the end)")
    p.add_argument("--cv-results", default=str(DEFAULT_RESULTS / "cv.json"),
                   help="cross-validation results to embed in the metadata and model card ('' for none)")
    p.add_argument("--out", default=str(DEFAULT_MODEL))
    p.add_argument("--card", default=str(ROOT / "models" / "MODEL_CARD.md"), help="model card path ('' for none)")
    p.add_argument("--keras-out", default=str(ROOT / "runs" / "edge-ser.keras"), help="also save the float Keras model")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cv", help="speaker-independent cross-validation (EmoBox folds), float and int8")
    _add_common(p)
    p.add_argument("--folds", help="only these fold numbers, e.g. 1,3")
    p.add_argument("--val-speakers", type=int, default=0,
                   help="also hold out N training speakers for early stopping (default 0: train on all "
                        "non-test speakers for the whole schedule, exactly like the shipped model)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="folder for cv.json, cv.md, confusion.png")
    p.add_argument("--save-models", help="folder to keep each fold's int8 model in (foldN.tflite)")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("report", help="rewrite cv.md and confusion.png from cv.json")
    p.add_argument("cv_json", nargs="?", default=str(DEFAULT_RESULTS / "cv.json"))
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("quantize", help="convert a Keras model trained on edge features to TFLite")
    p.add_argument("model", help="the .keras/.h5 model (e.g. runs/edge-ser.keras)")
    p.add_argument("--variant", choices=("int8", "float16", "dynamic"), default="int8")
    p.add_argument("--data", help="corpus for calibration windows (int8)")
    p.add_argument("--cache")
    p.add_argument("--calibration-windows", type=int, default=300)
    p.add_argument("--hop-frames", type=int)
    p.add_argument("--out", default=str(ROOT / "runs" / "edge-ser-quantized.tflite"))
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("convert", help="convert your own Keras SER model to an edge-ser int8 .tflite")
    p.add_argument("model", help="a .keras or .h5 model taking (frames, features[, 1]) windows")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--preset", help="feature preset name (edge, seed, librosa, psf, psf_mfcc)")
    group.add_argument("--feature-config", help="a JSON file with FeatureConfig fields")
    p.add_argument("--calibration", required=True, help="folder of .wav files for int8 calibration")
    p.add_argument("--labels", required=True, help="comma-separated output labels, in output order")
    p.add_argument("--hop-frames", type=int, help="hop between windows (default: half a window)")
    p.add_argument("--output", choices=("probabilities", "logits"), default="probabilities")
    p.add_argument("--name", default="user-model")
    p.add_argument("--variant", choices=("int8", "float16", "dynamic"), default="int8")
    p.add_argument("--max-windows", type=int, default=300, help="calibration windows to use")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from edge_ser.errors import EdgeSerError

    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_tf()
    args = build_parser().parse_args(argv)
    for name in ("card", "cv_results", "keras_out"):
        if getattr(args, name, None) == "":
            setattr(args, name, None)
    try:
        return int(args.func(args, argv) or 0)
    except EdgeSerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
