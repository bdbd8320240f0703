"""``python -m converter {train,cv,quantize,convert}``: the workstation command line."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from edge_ser.atomic_write import write_bytes_atomically
from edge_ser.features import PRESETS

from .model import HEADS

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
    from .protocol import RECIPES

    recipe = RECIPES[getattr(args, "recipe", None) or "baseline"][0]()
    for name in ("epochs", "seed", "batch_size", "learning_rate", "aug_variants", "hop_frames", "patience",
                 "steps"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(recipe, name, value)
    if getattr(args, "channels", None):
        recipe.channels = tuple(int(c) for c in args.channels.split(","))
    if getattr(args, "head", None):
        recipe.head = args.head
    if getattr(args, "features", None):
        recipe.features = args.features
    if getattr(args, "ema", None) is not None:
        recipe.ema = args.ema
    if getattr(args, "crops_per_clip", None):
        recipe.crops_per_clip = args.crops_per_clip
    if getattr(args, "nondeterministic", False):
        recipe.deterministic = False
    return recipe


def _data(args, recipe):
    from edge_ser.features import preset

    from .corpora import datasets_dir, default_data_dir, read_corpora
    from .protocol import RECIPES, training_treatment
    from .train import load_clipset

    corpora = RECIPES[getattr(args, "recipe", None) or "baseline"][1]
    if args.data:
        locations = [Path(d) for d in args.data]
    elif corpora == ("ravdess",):
        locations = [default_data_dir()]
    else:
        locations = [datasets_dir() / name for name in corpora]
    items = read_corpora(locations)
    unlabelled = [it for it in items if it.label is None]
    if unlabelled and recipe.arousal_weight <= 0:
        # arousal-only corpora (BAVED) train an arousal head, which this recipe has not
        _log(f"left out {len(unlabelled)} clips with an arousal level but no emotion label "
             f"({', '.join(sorted({it.corpus for it in unlabelled}))})")
        items = [it for it in items if it.label is not None]
    if args.max_per_speaker:
        kept, seen = [], {}
        for it in items:
            key = (it.speaker, it.label)
            if seen.get(key, 0) < args.max_per_speaker:
                kept.append(it)
                seen[key] = seen.get(key, 0) + 1
        items = kept
    for name in sorted({it.corpus for it in items}):
        part = [it for it in items if it.corpus == name]
        _log(f"corpus {name}: {len(part)} clips, {len({i.speaker for i in part})} speakers")
    treatment = training_treatment(recipe, items, preset(recipe.features).sample_rate)
    return load_clipset(items, preset(recipe.features), recipe.aug_variants, args.cache, seed=0,
                        treatment=treatment, with_mel_db=recipe.short_from_mel)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="baseline", help="named recipe (converter.protocol.RECIPES): baseline "
                                                        "(the first model: RAVDESS, studio augmentation) or rooms")
    p.add_argument("--data", action="append", help="a corpus: RAVDESS tree, label folders, CSV manifest or a folder "
                   "with manifest.csv; repeat for several (default: the recipe's corpora in ../shared/datasets; "
                   "baseline: $EDGE_SER_DATA or ../shared/datasets/ravdess)")
    p.add_argument("--steps", type=int, help="balanced-draw recipes: batches in all")
    p.add_argument("--cache", help="feature cache folder (default: .features-cache/ or $EDGE_SER_CACHE)")
    p.add_argument("--epochs", type=int, help="length of the cosine schedule (default 70)")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--aug-variants", type=int, help="augmented audio copies per clip (default 4)")
    p.add_argument("--hop-frames", type=int, help="hop between windows at inference (default 100)")
    p.add_argument("--patience", type=int)
    p.add_argument("--channels", help="conv widths, e.g. 24,32,48,64,96")
    p.add_argument("--head", choices=HEADS, help="classifier head (default time_pool)")
    p.add_argument("--features", choices=sorted(PRESETS), help="feature preset the model hears "
                                                               "(edge_ser.features.PRESETS; default edge)")
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
    work = Path(args.work) if args.work else ROOT / "runs" / "cv" / args.recipe
    summary = run_cv(data, recipe, val_speakers=args.val_speakers, only=only, log=_log,
                     save_models=Path(args.save_models) if args.save_models else None, work=work)
    summary["wall_seconds"] = round(time.time() - start, 1)
    out = Path(args.results)
    write_results(summary, out, _command(argv))
    m = summary["mean"]
    _log(f"mean over {len(summary['folds'])} folds: float UA {m['float_ua']:.3f} WA {m['float_wa']:.3f} | "
         f"int8 UA {m['int8_ua']:.3f} WA {m['int8_wa']:.3f} | agreement {m['agreement']:.3f}")
    _log(f"wrote {out / 'cv.json'}, {out / 'cv.md'}, {out / 'confusion.png'}")
    return 0


def member_keras_path(path: Path, member: str) -> Path:
    """Where an ensemble's member is saved beside ``--keras-out`` / looked for beside ``--from-keras``."""
    return path.with_name(f"{path.stem}.{member}{path.suffix or '.keras'}")


def _write_model(tfl: bytes, data, recipe, extra: Dict[str, object], info: Dict[str, object], out: Path,
                 params: int):
    """The export both ``train`` paths end with: the fixed-set check, the metadata (with ``info``,
    what `stamp` needs to rewrite the card without retraining), the file. ``(metadata, report)``."""
    from .export import build_metadata, finish_tflite

    sanity = fixed_set_accuracy(tfl, data, recipe)
    if sanity is not None:
        extra["training_clip_check"] = sanity
        _log(f"int8 top-1 on the fixed check set (training clips): {sanity['accuracy']:.3f}")
    info["check"] = sanity
    extra["card"] = info
    metadata = build_metadata(data_config(recipe), recipe.window_frames, recipe.hop_frames, extra,
                              output="logits" if recipe.masked else "probabilities")
    report = finish_tflite(tfl, metadata, out)
    _log(f"wrote {out}: {report['size_bytes']} bytes, {params} params, ops {report['ops']}, "
         f"integer only: {report['integer_only']}")
    if not report["integer_only"]:
        _log(f"WARNING: non-integer tensors: {report['non_int_tensors'][:5]}")
    return metadata, report


def _train_ensemble(args, argv) -> int:
    """``train --recipe ENSEMBLE``: each member trained on all the data with its own features (or
    loaded from an earlier run: a member saved beside ``--from-keras`` is not trained again, so an
    interrupted ensemble resumes), their logits averaged in one int8 graph on both views."""
    import copy
    from dataclasses import replace

    from edge_ser.features import preset

    from .cache import Treatment
    from .checkpoint import checkpoint_for
    from .evaluate import int8_model
    from .export import load_cv, utc_now
    from .model import count_params
    from .protocol import ENSEMBLES, ensemble_features, ensemble_model, ensemble_spec, ensemble_weights
    from .train import choose_val_speakers, load_clipset, train_model

    name, members = args.recipe, ENSEMBLES[args.recipe]
    if getattr(args, "features", None):
        raise SystemExit(f"error: --features does not apply to the ensemble {name}: each member hears its own "
                         "recipe's preset")
    command, trained_at = _command(argv), utc_now()
    recipes, models, infos, data = [], [], [], None
    for member in members:
        member_args = copy.copy(args)
        member_args.recipe = member
        recipe = _recipe(member_args)
        data = _data(member_args, recipe)
        val_ids = choose_val_speakers(data.speakers, args.val_speakers, recipe.seed)
        train = data.subset(val_ids, keep=False) if val_ids else data
        saved = member_keras_path(Path(args.from_keras), member) if args.from_keras else None
        if saved is not None and saved.exists():
            result, member_command, when = load_trained(saved, recipe)
            _log(f"{name}: member {member} loaded from {saved} (trained {when}); no training")
        else:
            _log(f"{name}: member {member} trains on {len(set(train.speakers))} speakers ({len(train.items)} clips)")
            target = member_keras_path(Path(args.keras_out), member) if args.keras_out else None
            result = train_model(train, data.subset(val_ids) if val_ids else None, recipe, log=_log,
                                 stop_at=args.stop_at, checkpoint=checkpoint_for(target) if target else None)
            if target is not None:
                save_trained(result, target, recipe, command, trained_at)
                checkpoint_for(target).unlink(missing_ok=True)
        recipes.append(recipe)
        models.append(result.model)
        infos.append({"member": member, "seconds": round(result.seconds, 1), "epochs": result.epochs_run,
                      "steps": recipe.steps, "channels": list(recipe.channels), "head": recipe.head,
                      "features": recipe.features})
    features = ensemble_features(recipes)
    temperature = args.temperature or protocol_temperature(Path(args.protocol), name)
    for model in models:  # the mean of logits / T is the ensemble's logits / T
        fold_temperature(model, temperature)
    _log(f"logits divided by the temperature {temperature:.3f} (folded into each member's last layer)")
    ensemble = ensemble_model(models, recipes, ensemble_weights(name))
    recipe = replace(recipes[0], features=features)  # every member drew the same speakers (same items, seed)
    treatment = Treatment(augmentation=recipe.augmentation, opus_wav=recipe.opus_wav)
    both = load_clipset(data.items, preset(features), 0, args.cache, seed=0, treatment=treatment)
    train = both.subset(val_ids, keep=False) if val_ids else both
    tfl = int8_model(ensemble, train, recipe)
    spec = ensemble_spec(name, recipes)
    cv = load_cv(Path(args.cv_results)) if args.cv_results else None
    params = count_params(ensemble)
    extra = {
        "corpora": sorted({it.corpus for it in data.items}),
        "train_speakers": sorted(set(train.speakers)),
        "early_stopping_speakers": val_ids,
        **evaluation_extras(cv, spec, name, Path(args.protocol)),
        "command": command, "trained": trained_at, "params": params, "recipe": spec, "recipe_name": name,
        "temperature": round(temperature, 4),
    }
    info = {"date": trained_at, "speakers": len(set(train.speakers)), "clips": len(train.items),
            "seconds": round(sum(i["seconds"] for i in infos), 1), "corpora": extra["corpora"],
            "steps": recipes[0].steps, "channels": list(recipes[0].channels), "head": recipes[0].head,
            "members": infos}
    out = Path(args.out)
    metadata, report = _write_model(tfl, both, recipe, extra, info, out, params)
    if args.card:
        write_bytes_atomically(Path(args.card), _rooms_card(out, metadata, report, Path(args.protocol)))
        _log(f"wrote {args.card}")
    return 0


def cmd_train(args, argv) -> int:
    from .checkpoint import checkpoint_for
    from .evaluate import int8_model
    from .export import load_cv, model_card, utc_now
    from .model import count_params
    from .protocol import ENSEMBLES
    from .train import choose_val_speakers, train_model

    if args.recipe in ENSEMBLES:
        return _train_ensemble(args, argv)
    recipe = _recipe(args)
    if recipe.teacher:
        print(f"error: recipe {args.recipe} learns from ensemble {recipe.teacher}'s models trained on the same clips; "
              f"train it with: python -m converter protocol --recipe {args.recipe}", file=sys.stderr)
        return 2
    data = _data(args, recipe)
    cv = load_cv(Path(args.cv_results)) if args.cv_results else None
    # The final model runs the whole cosine schedule: cross-validation records the test UA
    # of the last epoch beside the early-stopped one, and they agree (see models/results/cv.md).
    stop_at = args.stop_at
    evaluation = evaluation_extras(cv, recipe.to_dict(), args.recipe, Path(args.protocol))
    if cv and not evaluation["cv_recipe_matches"]:
        _log("note: the cross-validation results were made with another recipe; they are not embedded")
    val_ids = choose_val_speakers(data.speakers, args.val_speakers, recipe.seed)
    val = data.subset(val_ids) if val_ids else None
    train = data.subset(val_ids, keep=False) if val_ids else data
    _log(f"training on {len(set(train.speakers))} speakers ({len(train.items)} clips); "
         f"early-stopping speakers: {','.join(val_ids) or 'none'}")
    command, trained = _command(argv), None
    if args.from_keras:
        result, command, trained = load_trained(Path(args.from_keras), recipe)
        _log(f"exporting {args.from_keras} (trained {result.epochs_run} epochs in {result.seconds / 60:.1f} min); "
             "no training")
    else:
        target = Path(args.keras_out) if args.keras_out else None
        result = train_model(train, val, recipe, log=_log, stop_at=stop_at,
                             checkpoint=checkpoint_for(target) if target else None)
        _log(f"trained {result.epochs_run} epochs in {result.seconds / 60:.1f} min (kept epoch {result.best_epoch})")
        if target is not None:
            save_trained(result, target, recipe, command, utc_now())
            checkpoint_for(target).unlink(missing_ok=True)
            _log(f"saved Keras model {args.keras_out}")
    temperature = None
    if recipe.masked:
        temperature = args.temperature or protocol_temperature(Path(args.protocol), args.recipe)
        fold_temperature(result.model, temperature)
        _log(f"logits divided by the temperature {temperature:.3f} (folded into the last layer)")
    tfl = int8_model(result.model, train, recipe)
    params = count_params(result.model)
    extra = {
        "corpora": sorted({it.corpus for it in data.items}),
        "train_speakers": sorted(set(train.speakers)),
        "early_stopping_speakers": val_ids,
        **evaluation,
        "command": command,
        "trained": trained or utc_now(),
        "epochs": result.best_epoch,
        "params": params,
        "recipe": recipe.to_dict(),
        "recipe_name": args.recipe,
    }
    if temperature is not None:
        extra["temperature"] = round(temperature, 4)
    info = {"date": extra["trained"], "speakers": len(set(train.speakers)), "clips": len(train.items),
            "epochs": result.epochs_run, "seconds": round(result.seconds, 1), "corpora": extra["corpora"],
            "steps": recipe.steps if recipe.sampling == "balanced" else None,
            "channels": list(recipe.channels), "head": recipe.head}
    out = Path(args.out)
    metadata, report = _write_model(tfl, data, recipe, extra, info, out, params)
    if args.card:
        if recipe.sampling == "balanced":
            card = _rooms_card(out, metadata, report, Path(args.protocol))
        else:
            card = model_card(out, metadata, report, cv, params, command, info)
        write_bytes_atomically(Path(args.card), card)
        _log(f"wrote {args.card}")
    return 0


def _rooms_card(out: Path, metadata, report, protocol_dir: Path) -> str:
    from .export import rooms_model_card
    from .report import write_report

    protocol_md = write_report(protocol_dir).read_text() if protocol_dir.is_dir() else ""
    extra = metadata.extra
    return rooms_model_card(out, metadata, report, protocol_md, extra["params"], extra["command"], extra["card"])


def cmd_stamp(args, argv) -> int:
    """Refresh the protocol figures inside a model file and rewrite its card, without retraining.

    The protocol runs go on after the final model is trained (they take hours); stamping
    carries their latest digest into the file's metadata. Weights and tensors stay as
    they are: the graph bytes are the same, only the metadata table changes.

    When the model's own figures are what the file already carries (new results were
    other recipes' rows), the file is left byte for byte as it is and only the card is
    rewritten: a new timestamp alone would change the model's sha256 and so its id, which
    events, logs and the README name, for a model that did not change.
    """
    import dataclasses

    from edge_ser.metadata import ModelMetadata

    from .export import finish_tflite, load_cv, utc_now
    from .quantize import graph_report

    path = Path(args.model)
    data = path.read_bytes()
    metadata = ModelMetadata.from_tflite(data, str(path))
    extra = dict(metadata.extra)
    recipe_name = extra.get("recipe_name", "baseline")  # models from before recipes had names
    cv = load_cv(Path(args.cv_results)) if args.cv_results else None
    extra.update(evaluation_extras(cv, extra.get("recipe") or {}, recipe_name, Path(args.protocol)))
    if "stamped" in metadata.extra and json.dumps(extra, sort_keys=True) == json.dumps(metadata.extra, sort_keys=True):
        report = graph_report(data)
        _log(f"{path}: its {recipe_name} protocol figures are unchanged; the model file is left as it is")
    else:
        extra["stamped"] = utc_now()
        metadata = dataclasses.replace(metadata, extra=extra)
        report = finish_tflite(data, metadata, path)
        _log(f"re-stamped {path} with the {recipe_name} protocol results ({report['size_bytes']} bytes)")
    if args.card and "card" in extra:
        write_bytes_atomically(Path(args.card), _rooms_card(path, metadata, report, Path(args.protocol)))
        _log(f"wrote {args.card}")
    return 0


def protocol_temperature(directory: Path, recipe_name: str) -> float:
    """The median temperature the recipe's cv/loco runs fitted on held-out training speakers.

    Before any such run exists: the one fitted on the development speakers (held out from
    the dev model); 1.0 without either.
    """
    from .report import calibration_summary, load_results

    runs = load_results(directory).get(recipe_name, {}) if directory.is_dir() else {}
    summary = calibration_summary(runs)
    if summary.get("temperature_median"):
        return float(summary["temperature_median"])
    return float(runs.get("dev", {}).get("dev_temperature") or 1.0)


def fold_temperature(model, temperature: float) -> None:
    """Divide the logits by ``temperature`` inside the model: scale the last dense layer's weights."""
    layer = model.layers[-1]
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel / temperature, bias / temperature])


def _training_record(keras_path: Path) -> Path:
    return keras_path.with_name(keras_path.name + ".json")


def save_trained(result, keras_path: Path, recipe, command: str, trained: str) -> None:
    """The float model and, beside it, how it was trained: ``--from-keras`` exports it later.

    Why: quantizing, stamping and writing the card come after a training of half an hour;
    when any of them fails (or is improved), the export is redone from this file instead
    of training again.
    """
    keras_path.parent.mkdir(parents=True, exist_ok=True)
    result.model.save(keras_path)
    record = {"recipe": recipe.to_dict(), "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
              "seconds": round(result.seconds, 1), "command": command, "trained": trained}
    write_bytes_atomically(_training_record(keras_path), json.dumps(record, indent=1) + "\n")


def load_trained(keras_path: Path, recipe):
    """``(TrainResult, training command, when trained)`` from :func:`save_trained`'s files; the recipe
    must be the one the model was trained with. The command is the training run's: that is what
    reproduces it."""
    import keras

    from .train import TrainResult

    try:
        record = json.loads(_training_record(keras_path).read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {keras_path}: no readable training record beside it ({exc})") from None
    if not recipes_match(record["recipe"], recipe.to_dict()):
        raise SystemExit(f"error: {keras_path} was trained with another recipe than --recipe/options give now")
    model = keras.models.load_model(keras_path, compile=False)
    result = TrainResult(model, record["best_epoch"], None, record["epochs_run"], record["seconds"])
    return result, record["command"], record.get("trained")


def recipes_match(stored: dict, recipe: dict) -> bool:
    """True if ``stored`` (from a cv.json) describes ``recipe`` (a ``Recipe.to_dict()``); knobs
    added since must be at their defaults on both sides."""
    from .train import Recipe

    current = json.loads(json.dumps(recipe))
    defaults = json.loads(json.dumps(Recipe().to_dict()))
    return all(stored[k] == v if k in stored else v == defaults.get(k) for k, v in current.items())


#: What a model made by a protocol recipe says about how it was evaluated.
PROTOCOL_TEXT = ("room-ready protocol (converter/protocol.py): RAVDESS speaker-independent EmoBox folds, clean and "
                 "through held-out measured rooms and real noise; leave one corpus out over ravdess, nemo, ased; "
                 "calibration on held-out training speakers; recipes chosen on a fixed development split only")


def evaluation_extras(cv: Optional[dict], recipe: dict, recipe_name: str, protocol_dir: Path) -> Dict[str, object]:
    """The evaluation a model file carries: the cross-validation digest only when ``cv`` was
    made with this very recipe (another recipe's figures would describe another model), and
    the recipe's protocol results when there are any."""
    from .export import cv_digest
    from .report import digest, load_results

    matches = bool(cv) and recipes_match(cv.get("recipe") or {}, recipe)
    out: Dict[str, object] = {"cv": cv_digest(cv) if matches else None, "cv_recipe_matches": matches}
    results = load_results(protocol_dir) if protocol_dir.is_dir() else {}
    if recipe_name in results:
        out["protocol_results"] = digest(results, recipe_name)
    out["protocol"] = (out["cv"] or {}).get("protocol") or (
        PROTOCOL_TEXT if "protocol_results" in out else "no evaluation results available")
    return out


CHECK_ACTORS = ("01", "02", "03", "04")


def fixed_set_accuracy(tflite_bytes: bytes, data, recipe, per_class: int = 2):
    """int8 top-1 on a fixed set (2 clips per class of actors 01-04, as tests/test_shipped_model.py).

    These clips are in the training data of the shipped model: the figure only shows that
    the exported file works (labels, features, quantization), not how it generalizes.
    """
    from .quantize import TFLiteRunner
    from .train import feature_blocks, predict_clips

    chosen = []
    for actor in CHECK_ACTORS:
        for label in sorted({it.label for it in data.items if it.label is not None}):
            group = sorted((i for i, it in enumerate(data.items) if it.speaker == actor and it.label == label),
                           key=lambda i: data.items[i].path)
            chosen += group[:per_class]
    if not chosen:
        return None
    probs = predict_clips(TFLiteRunner(tflite_bytes).predict, [data.feats[i][0] for i in chosen],
                          recipe.window_frames, recipe.hop_frames, feature_blocks(recipe))
    labels = [data.items[i].label_index for i in chosen]
    accuracy = float((probs.argmax(1) == labels).mean())
    return {"actors": list(CHECK_ACTORS), "clips": len(chosen), "accuracy": round(accuracy, 4)}


def data_config(recipe=None):
    """The feature config a model trained with ``recipe`` hears (the edge preset without one)."""
    from edge_ser.features import preset

    return preset(recipe.features if recipe is not None else "edge")


def quantize_features(keras_path: Path, named: Optional[str]) -> str:
    """The feature preset a Keras model to quantize heard: ``--features`` if given, else the
    recipe in its training record (``--keras-out`` writes one beside it), else ``edge``.

    Why: the preset goes into the model file and the device computes exactly it, so a
    model trained on PCEN must not be labelled log-mel because it was quantized later.
    """
    if named:
        return named
    try:
        return json.loads(_training_record(keras_path).read_text())["recipe"].get("features") or "edge"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "edge"


def cmd_quantize(args, argv) -> int:
    import keras

    from edge_ser.features import preset

    from .corpora import default_data_dir, read_corpus
    from .evaluate import int8_model
    from .export import build_metadata, finish_tflite
    from .quantize import convert, graph_report
    from .train import Recipe, load_clipset

    model = keras.models.load_model(args.model, compile=False)
    features = quantize_features(Path(args.model), args.features)
    config = preset(features)
    width = int(model.input_shape[2])
    if width != config.n_features:
        raise SystemExit(f"error: {args.model}: the model takes {width} feature columns, preset {features!r} "
                         f"gives {config.n_features}; name the model's preset with --features")
    recipe = Recipe(features=features)
    recipe.window_frames = int(model.input_shape[1])
    if args.hop_frames:
        recipe.hop_frames = args.hop_frames
    if args.variant == "int8":
        items = read_corpus(Path(args.data) if args.data else default_data_dir())
        data = load_clipset(items, config, 0, args.cache)
        tfl = int8_model(model, data, recipe, count=args.calibration_windows)
    else:
        tfl = convert(model, None, args.variant)
    metadata = build_metadata(config, recipe.window_frames, recipe.hop_frames,
                              {"command": _command(argv), "variant": args.variant})
    report = finish_tflite(tfl, metadata, Path(args.out))
    print(json.dumps({k: v for k, v in report.items() if k != "non_int_tensors"}, indent=1))
    if args.variant == "int8" and not report["integer_only"]:
        print(f"error: int8 model has non-integer tensors: {report['non_int_tensors'][:10]}", file=sys.stderr)
        return 1
    return 0


def cmd_report(args, argv) -> int:
    """Rewrite cv.md/confusion.png from cv.json, and protocol.md from the protocol's per-run files."""
    from .evaluate import protocol_text, write_results
    from .report import write_report

    path = Path(args.cv_json)
    if path.is_file():
        summary = json.loads(path.read_text())
        summary["protocol"] = protocol_text(summary["folds"])
        write_results(summary, path.parent, summary.get("command", "python -m converter cv"))
        _log(f"rewrote {path.parent / 'cv.md'} and {path.parent / 'confusion.png'}")
    protocol_dir = Path(args.protocol)
    if protocol_dir.is_dir():
        target = write_report(protocol_dir)
        print(target.read_text())
        _log(f"wrote {target}")
    return 0


def _protocol_items(args):
    """The protocol's corpora, any other corpus the recipe trains on (BAVED for an arousal head),
    and the development split's unseen language (:data:`UNSEEN_LANGUAGE_CORPORA`) where it is there."""
    from .corpora import datasets_dir, read_corpora
    from .protocol import ENSEMBLES, LOCO_CORPORA, RECIPES, recipe_corpora
    from .unseen_arousal import UNSEEN_LANGUAGE_CORPORA

    root = Path(args.datasets) if args.datasets else datasets_dir()
    names = list(LOCO_CORPORA)
    recipe = getattr(args, "recipe", None)
    if recipe in RECIPES or recipe in ENSEMBLES:
        names += [c for c in recipe_corpora(recipe) if c not in names]
    names += [c for c in UNSEEN_LANGUAGE_CORPORA if c not in names and (root / c).is_dir()]
    return read_corpora([root / name for name in names])


def _expand_runs(spec: str, corpora) -> List[str]:
    from .protocol import run_names

    every = run_names(corpora)
    if spec == "all":
        return every
    out: List[str] = []
    for part in spec.split(","):
        part = part.strip()
        group = [r for r in every if r == part or (part in ("cv", "loco") and r.startswith(part))]
        if not group:
            raise SystemExit(f"error: unknown run {part!r}; this recipe has {', '.join(every)}")
        out += [r for r in group if r not in out]
    return out


def cmd_farfield_parts(args, argv) -> int:
    """Score saved float models on the far-field condition's parts (converter.farfield_parts)."""
    import keras
    import numpy as np
    from edge_ser.features import log_mel, preset

    from .audio_io import load_clip
    from .farfield_parts import PARTS, clip_parts, markdown, training_sample
    from .protocol import LOCO_CORPORA, plan_run, score, window_outputs
    from .rooms import load_bank
    from .train import Recipe, keras_predictor

    config = preset(args.features)
    plan = plan_run("dev", _protocol_items(args), LOCO_CORPORA)
    clips = list(plan.test) if args.speakers == "dev" else training_sample(plan.train, args.per_corpus)
    banks = {side: load_bank(side, sample_rate=config.sample_rate) for side in ("train", "test")}
    feats: Dict[str, list] = {part: [] for part in PARTS}
    for item in clips:
        for part, f in clip_parts(load_clip(item.path, config.sample_rate), item.path, banks,
                                  lambda x: log_mel(x, config)).items():
            feats[part].append(f.astype(np.float32))
    recipe = Recipe(masked=True, features=args.features)  # the masked recipes' 300-frame windows, logits
    result = {"speakers": args.speakers, "clips": len(clips), "features": args.features, "models": {}}
    for path in args.models:
        predict = keras_predictor(keras.models.load_model(path, compile=False), logits=False)
        label = f"{Path(path).parent.name}/{Path(path).stem}"
        rows = {}
        for part in PARTS:
            s = score(window_outputs(predict, feats[part], recipe), clips, plan.classes, True)
            rows[part] = {"ua": s["ua"], "ravdess": s["by_corpus"]["ravdess"]["ua"],
                          "by_corpus": {c: v["ua"] for c, v in s["by_corpus"].items()}}
        result["models"][label] = rows
        _log(f"{label}: " + ", ".join(f"{p} {100 * rows[p]['ua']:.1f}" for p in PARTS))
    _write_results(Path(args.out or DEFAULT_RESULTS / f"farfield-parts-{args.speakers}.json"), result,
                   markdown(result))
    return 0


def _write_results(out: Path, result: dict, table: str) -> None:
    """A diagnosis's results: JSON at ``out``, its markdown table beside it and on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out, json.dumps(result, indent=1) + "\n")
    write_bytes_atomically(out.with_suffix(".md"), table)
    print(table)
    _log(f"wrote {out} and {out.with_suffix('.md')}")


def _unseen_language_plan(args):
    """The ``unseen`` run's plan over the protocol's corpora: every labelled clip trains, the unseen
    language's words are scored; none of those words is a one-line error."""
    from .protocol import LOCO_CORPORA, plan_run

    plan = plan_run("unseen", _protocol_items(args), LOCO_CORPORA)
    if not plan.unseen_arousal:
        raise SystemExit("error: no unseen-language corpus (BAVED) under the datasets folder")
    return plan


def _shown_path(path: Path) -> str:
    """``path`` as a results file names it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def cmd_short_scaling(args, argv) -> int:
    """Short utterances scaled the device's way against training's (converter.short_scaling)."""
    from edge_ser.classify import Classifier

    from .short_scaling import markdown, measure

    words = _unseen_language_plan(args).unseen_arousal
    model = Path(args.model).resolve()
    result = {"model": _shown_path(model), **measure(Classifier(str(model)), words)}
    if not result["words"]:
        raise SystemExit("error: no unseen-language word is long enough to cut")
    _write_results(Path(args.out), result, markdown(result))
    return 0


def cmd_speaker_pitch(args, argv) -> int:
    """A speaker's own pitch on the unseen language: the answers' fit, and an oracle normalization
    against a control (converter.speaker_pitch)."""
    from edge_ser.classify import Classifier

    from .cache import default_cache_dir
    from .corpora import datasets_dir, speaker_genders
    from .speaker_pitch import markdown, measure

    root = Path(args.datasets) if args.datasets else datasets_dir()
    plan = _unseen_language_plan(args)
    genders: Dict[str, str] = {}
    for corpus in sorted({it.corpus for it in plan.train + plan.unseen_arousal}):
        genders.update(speaker_genders(root / corpus))
    model = Path(args.model).resolve()
    cache = Path(args.cache) if args.cache else default_cache_dir()
    classifier = Classifier(str(model))
    result = {"model": _shown_path(model), "backend": classifier.backend_name,
              **measure(classifier, plan.unseen_arousal, plan.train, genders, cache)}
    _write_results(Path(args.out), result, markdown(result))
    return 0


def cmd_window_restart(args, argv) -> int:
    """Continuous mode on a PCEN model: smoother restarted per window vs carried (converter.window_restart)."""
    from edge_ser.features import preset

    from .protocol import LOCO_CORPORA, plan_run
    from .quantize import TFLiteRunner
    from .rooms import load_bank
    from .train import Recipe
    from .window_restart import DAEMON_HOP_S, DAEMON_WINDOW_S, markdown, measure_run

    config = preset(args.features)
    items = _protocol_items(args)
    bank = load_bank("test", sample_rate=config.sample_rate)
    recipe = Recipe()  # every protocol recipe's 300-frame windows, 100-frame hop
    result = {"features": args.features, "window_s": DAEMON_WINDOW_S, "hop_s": DAEMON_HOP_S, "runs": {}}
    for pair in args.pairs:
        run, _, model = pair.partition("=")
        test = [it for it in plan_run(run, items, LOCO_CORPORA).test if it.corpus == "ravdess"]
        rows = measure_run(TFLiteRunner(Path(model).read_bytes()).predict, test, config, bank,
                           recipe.window_frames, recipe.hop_frames)
        for condition, row in rows.items():
            _log(f"{run} {condition}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        result["runs"][run] = {"model": model, "speakers": sorted({it.speaker for it in test}), **rows}
    _write_results(Path(args.out), result, markdown(result))
    return 0


def cmd_protocol(args, argv) -> int:
    from .protocol import ENSEMBLES, RECIPES, recipe_corpora, run_protocol

    if args.recipe not in RECIPES and args.recipe not in ENSEMBLES:
        raise SystemExit(f"error: unknown recipe {args.recipe!r}; recipes: {', '.join(RECIPES)}; "
                         f"ensembles: {', '.join(ENSEMBLES)}")
    items = _protocol_items(args)
    runs = _expand_runs(args.runs, recipe_corpora(args.recipe))
    _log(f"protocol {args.recipe}: runs {', '.join(runs)}")
    run_protocol(args.recipe, items, runs, Path(args.results), Path(args.cache) if args.cache else None,
                 Path(args.models) if args.models else None, steps=args.steps, log=_log, seed=args.seed)
    return 0


def cmd_score(args, argv) -> int:
    """Score existing model files on protocol runs (baseline rows that need no training; kept models
    under other listening conditions)."""
    from .conditions import check_conditions
    from .protocol import LOCO_CORPORA, score_model_file, summary_line

    try:
        conditions = check_conditions(args.conditions.split(",") if args.conditions else ())
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    items = _protocol_items(args)
    corpora = tuple(args.corpora.split(",")) if args.corpora else LOCO_CORPORA
    for spec in args.pairs:
        run, _, path = spec.partition("=")
        recipe = _row_recipe(Path(args.rows), args.recipe_from, run) if args.recipe_from else None
        target = score_model_file(Path(path), run, args.label, items, Path(args.results), corpora,
                                  Path(args.cache) if args.cache else None, note=args.note or path,
                                  conditions=conditions, spec=recipe)
        _log(f"{args.label}/{run}: {summary_line(json.loads(target.read_text()))} -> {target}")
    return 0


def _row_recipe(rows: Path, recipe_from: str, run: str) -> dict:
    """The ``recipe`` of run ``run`` in the results row ``recipe_from`` names (``LABEL`` or
    ``LABEL:MEMBER``, a member of an ensemble's row): what a model without metadata is scored as."""
    label, _, member = recipe_from.partition(":")
    path = rows / label / f"{run}.json"
    try:
        recipe = json.loads(path.read_text())["recipe"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"error: {path}: no protocol row with a recipe ({type(exc).__name__})")
    if member:
        if member not in recipe.get("members", {}):
            raise SystemExit(f"error: {label}/{run} has no member {member!r}")
        recipe = recipe["members"][member]
    return recipe


def cmd_pair(args, argv) -> int:
    """Score an ensemble from members' stored window outputs (paired comparisons, no model files)."""
    from .protocol import LOCO_CORPORA, pair_run, summary_line

    items = _protocol_items(args)
    corpora = tuple(args.corpora.split(",")) if args.corpora else LOCO_CORPORA
    sources = [(spec.partition(":")[0], spec.partition(":")[2] or None) for spec in args.members]
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    for run in _expand_runs(args.runs, corpora):
        try:
            target = pair_run(sources, run, args.label, items, Path(args.results), corpora, weights, args.note or "")
        except ValueError as exc:
            raise SystemExit(f"error: {exc}")
        _log(f"{args.label}/{run}: {summary_line(json.loads(target.read_text()))} -> {target}")
    return 0


def cmd_rescore(args, argv) -> int:
    """Add the development scores a dev row was written without (far-field over every corpus, the
    unseen language's arousal), from the run's kept models."""
    from .protocol import add_dev_scores, summary_line

    items = _protocol_items(args)
    row = add_dev_scores(Path(args.row), [Path(m) for m in args.models], items,
                           Path(args.cache) if args.cache else None)
    _log(f"{row['recipe_name']}/dev: {summary_line(row)} -> {args.row}")
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
    p.add_argument("--keras-out", default=str(ROOT / "runs" / "edge-ser.keras"),
                   help="also save the float Keras model (and FILE.json: how it was trained)")
    p.add_argument("--from-keras", help="do not train: export this model saved by an earlier run's --keras-out "
                                        "(an ensemble: its members saved beside it, FILE-STEM.MEMBER.keras; a "
                                        "member not saved yet trains)")
    p.add_argument("--protocol", default=str(DEFAULT_RESULTS / "protocol"),
                   help="protocol results (their digest goes into the metadata; their median temperature is used)")
    p.add_argument("--temperature", type=float, help="logits models: divide logits by this (default: protocol median)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("cv", help="speaker-independent cross-validation (EmoBox folds), float and int8")
    _add_common(p)
    p.add_argument("--folds", help="only these fold numbers, e.g. 1,3")
    p.add_argument("--val-speakers", type=int, default=0,
                   help="also hold out N training speakers for early stopping (default 0: train on all "
                        "non-test speakers for the whole schedule, exactly like the shipped model)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="folder for cv.json, cv.md, confusion.png")
    p.add_argument("--save-models", help="folder to keep each fold's int8 model in (foldN.tflite)")
    p.add_argument("--work", help="folder for each fold's training checkpoint and finished result, so a run "
                                  "stopped midway resumes (default: runs/cv/RECIPE)")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("protocol", help="the room-ready evaluation protocol: dev split, RAVDESS folds "
                                        "(clean + far-field), leave-one-corpus-out, calibration")
    p.add_argument("--recipe", default="rooms", help="recipe name (converter.protocol.RECIPES) or ensemble "
                                                     "(converter.protocol.ENSEMBLES)")
    p.add_argument("--runs", default="all", help="comma list of dev, cv, cv1..cv5, loco, loco-<corpus>, or all")
    p.add_argument("--results", default=str(DEFAULT_RESULTS / "protocol"), help="one JSON per run, here")
    p.add_argument("--models", default=str(ROOT / "runs" / "protocol"), help="keep each run's int8 model here")
    p.add_argument("--steps", type=int, help="override the recipe's training length (smoke tests)")
    p.add_argument("--seed", type=int, help="train with this seed instead of the recipe's own; results and models "
                                            "go under RECIPE-seedN")
    p.add_argument("--datasets", help="folder holding ravdess/, nemo/, ased/ (default ../shared/datasets)")
    p.add_argument("--cache", help="feature cache folder")
    p.set_defaults(func=cmd_protocol)

    p = sub.add_parser("farfield-parts", help="split the far-field loss into rooms (held-out and training "
                                              "places) and the whole condition, for saved float models")
    p.add_argument("models", nargs="+", help="dev-run .keras models (e.g. runs/protocol-models/R/dev.keras)")
    p.add_argument("--speakers", choices=("dev", "train"), default="dev",
                   help="the dev split's held-out speakers, or a sample of its training speakers")
    p.add_argument("--per-corpus", type=int, default=300, help="training clips per corpus (--speakers train)")
    p.add_argument("--features", default="edge", help="the feature preset the models were trained on "
                                                      "(edge_ser.features.PRESETS; the recipe's Recipe.features)")
    p.add_argument("--out", help="results JSON (a .md table beside it); default "
                                 "models/results/farfield-parts-SPEAKERS.json")
    p.add_argument("--datasets")
    p.set_defaults(func=cmd_farfield_parts)

    p = sub.add_parser("window-restart", help="continuous mode on a PCEN model: the daemon's per-window "
                                              "smoother restart against a smoother carried along the stream")
    p.add_argument("pairs", nargs="+", metavar="RUN=MODEL", help="e.g. cv5=runs/protocol-models/rooms-long-pcen/cv5.tflite"
                                                                 " (the run's unseen RAVDESS actors are streamed)")
    p.add_argument("--features", default="edge-db-pcen", help="the models' feature preset")
    p.add_argument("--out", default=str(DEFAULT_RESULTS / "window-restart.json"))
    p.add_argument("--datasets")
    p.set_defaults(func=cmd_window_restart)

    p = sub.add_parser("short-scaling", help="the unseen language's words cut short, scaled as the device scales a "
                                             "short clip against as training scaled its shortened crops")
    p.add_argument("model", nargs="?", default=str(DEFAULT_MODEL), help="an int8 model file with edge-ser metadata")
    p.add_argument("--out", default=str(DEFAULT_RESULTS / "short-scaling.json"))
    p.add_argument("--datasets")
    p.set_defaults(func=cmd_short_scaling)

    p = sub.add_parser("speaker-pitch", help="the unseen language: how the answers follow a speaker's own pitch, "
                                             "and each speaker's voice moved to the training speakers' normal "
                                             "pitch (an oracle) against as far in a random direction")
    p.add_argument("model", nargs="?", default=str(DEFAULT_MODEL), help="an int8 model file with edge-ser metadata")
    p.add_argument("--out", default=str(DEFAULT_RESULTS / "speaker-pitch.json"))
    p.add_argument("--cache", help="where word pitches are kept (default: the feature cache)")
    p.add_argument("--datasets")
    p.set_defaults(func=cmd_speaker_pitch)

    p = sub.add_parser("stamp", help="refresh a model's embedded protocol figures and its card (no retraining)")
    p.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    p.add_argument("--protocol", default=str(DEFAULT_RESULTS / "protocol"))
    p.add_argument("--cv-results", default=str(DEFAULT_RESULTS / "cv.json"),
                   help="cross-validation results (embedded only if made with the model's recipe)")
    p.add_argument("--card", default=str(ROOT / "models" / "MODEL_CARD.md"), help="card to rewrite ('' for none)")
    p.set_defaults(func=cmd_stamp)

    p = sub.add_parser("score", help="score existing models (int8 .tflite, float .keras) on protocol runs' test "
                                     "clips")
    p.add_argument("pairs", nargs="+", metavar="RUN=MODEL", help="e.g. cv1=runs/baseline/models/fold1.tflite or "
                                                                 "dev=runs/protocol-models/rooms-long/dev.keras "
                                                                 "(with --recipe-from)")
    p.add_argument("--label", required=True, help="results sub-folder, e.g. baseline")
    p.add_argument("--corpora", help="corpora the runs are planned over (default ravdess,nemo,ased)")
    p.add_argument("--note", help="what the model is (stored in the results)")
    p.add_argument("--conditions", help="also score under these listening conditions, comma list of "
                                        "telephone, pitch+2, reverb, short-1s, short-0.5s and the voice shifts "
                                        "pitch+2-wsola, speed+2, tempo-vocoder, tempo-wsola, pitch-2-wsola, and "
                                        "the backgrounds noise, talker, babble (converter.conditions; a dev or "
                                        "unseen run scores its unseen language under them too, but a background "
                                        "made of its own voices); such rows go to --results models/results/conditions")
    p.add_argument("--recipe-from", metavar="LABEL[:MEMBER]",
                   help="a model without metadata (a fold model the protocol kept; every .keras model) is scored "
                        "as the recipe of this label's row for the run says (windows, features, output); "
                        "LABEL:MEMBER takes that member's recipe from an ensemble's row")
    p.add_argument("--rows", default=str(DEFAULT_RESULTS / "protocol"),
                   help="where --recipe-from finds the label's rows")
    p.add_argument("--results", default=str(DEFAULT_RESULTS / "protocol"))
    p.add_argument("--datasets")
    p.add_argument("--cache")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("pair", help="score an ensemble from its members' window outputs stored by earlier "
                                    "protocol runs (float; no model file): candidates paired with the same members")
    p.add_argument("members", nargs="+", metavar="LABEL[:MEMBER]",
                   help="a results label and, inside an ensemble's rows, the member, e.g. rooms-long-pcen-seed2:"
                        "rooms-long; a single recipe's label alone takes its float outputs")
    p.add_argument("--label", required=True, help="results sub-folder for the paired rows")
    p.add_argument("--runs", required=True, help="comma list of dev, cv, cv1..cv5, loco, loco-<corpus>")
    p.add_argument("--weights", help="one per member, summing to one (default: the plain mean)")
    p.add_argument("--corpora", help="corpora the runs are planned over (default ravdess,nemo,ased)")
    p.add_argument("--note", help="what the pairing is (stored in the results)")
    p.add_argument("--results", default=str(DEFAULT_RESULTS / "protocol"))
    p.add_argument("--datasets")
    p.set_defaults(func=cmd_pair)

    p = sub.add_parser("rescore", help="add the scores a dev row lacks (far-field over every corpus, the unseen "
                                       "language's arousal) from the run's saved float model(s)")
    p.add_argument("row", help="a dev results file, e.g. models/results/protocol/rooms-wide-again/dev.json")
    p.add_argument("models", nargs="+", help="the run's .keras model; several: an ensemble's members")
    p.add_argument("--datasets")
    p.add_argument("--cache")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("report", help="rewrite cv.md/confusion.png from cv.json and protocol.md from the "
                                      "protocol's per-run results")
    p.add_argument("cv_json", nargs="?", default=str(DEFAULT_RESULTS / "cv.json"))
    p.add_argument("--protocol", default=str(DEFAULT_RESULTS / "protocol"), help="per-run results folder")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("quantize", help="convert a Keras model trained on edge_ser features to TFLite (its "
                                        "feature preset goes into the file)")
    p.add_argument("model", help="the .keras/.h5 model (e.g. runs/edge-ser.keras)")
    p.add_argument("--variant", choices=("int8", "float16", "dynamic"), default="int8")
    p.add_argument("--data", help="corpus for calibration windows (int8)")
    p.add_argument("--cache")
    p.add_argument("--calibration-windows", type=int, default=300)
    p.add_argument("--features", choices=sorted(PRESETS), help="the feature preset the model was trained on "
                                                             "(default: its training record's, else edge)")
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
