"""``python -m converter convert``: bring your own Keras SER model to the device.

The model's input shape says how long a window is (frames) and how many features a
frame has; the feature config (a preset or a JSON file) says how those features are
computed. The two must agree on the feature count, or the conversion stops: a model
fed features it was not trained on gives confident nonsense.

Calibration features for int8 come from real audio (a folder of WAVs) through the one
feature implementation, :func:`edge_ser.features.log_mel`, cut into windows like the
device cuts them. After conversion the float and int8 models are run on the same
calibration clips and their top-1 agreement is reported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np

from edge_ser.errors import EdgeSerError, FeatureConfigError, ModelError
from edge_ser.features import FeatureConfig, log_mel, preset
from edge_ser.windows import split_windows

from .audio_io import load_clip
from .export import build_metadata, finish_tflite
from .quantize import TFLiteRunner, convert


def model_window(model) -> Tuple[int, int]:
    """``(window_frames, n_features)`` from an input shape ``(None, T, F, 1)`` or ``(None, T, F)``."""
    shape = model.input_shape
    if isinstance(shape, list):
        if len(shape) != 1:
            raise ModelError(f"the model has {len(shape)} inputs; edge-ser models take one feature window")
        shape = shape[0]
    shape = tuple(shape)
    if len(shape) == 4 and shape[3] == 1:
        frames, feats = shape[1], shape[2]
    elif len(shape) == 3:
        frames, feats = shape[1], shape[2]
    else:
        raise ModelError(f"model input shape {shape}: expected (None, frames, features, 1) or (None, frames, features)")
    if frames is None or feats is None:
        raise ModelError(f"model input shape {shape}: frames and features must be fixed sizes")
    return int(frames), int(feats)


def load_feature_config(preset_name: str | None, json_path: str | None) -> FeatureConfig:
    if preset_name:
        return preset(preset_name)
    try:
        text = Path(json_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FeatureConfigError(f"{json_path}: cannot read feature config ({exc.strerror or exc})") from None
    return FeatureConfig.from_json(text)


def calibration_clips(folder: str, config: FeatureConfig) -> List[np.ndarray]:
    """Feature matrices of every WAV under ``folder`` (sorted, recursive)."""
    root = Path(folder)
    if not root.is_dir():
        raise EdgeSerError(f"{folder}: calibration folder not found")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".wav", ".wave") and p.is_file())
    if not paths:
        raise EdgeSerError(f"{folder}: no .wav files for calibration")
    return [log_mel(load_clip(str(p), config.sample_rate), config) for p in paths]


def _keras_runner(model, input_shape: Tuple[int, ...]) -> Callable[[np.ndarray], np.ndarray]:
    def run(windows: np.ndarray) -> np.ndarray:
        x = windows.reshape((-1,) + input_shape)
        return np.concatenate([np.asarray(model(x[i:i + 64], training=False)) for i in range(0, len(x), 64)])

    return run


def _clip_predictions(run, windows_per_clip: List[np.ndarray]) -> np.ndarray:
    counts = [len(w) for w in windows_per_clip]
    probs = run(np.concatenate(windows_per_clip))
    out, pos = [], 0
    for n in counts:
        out.append(probs[pos:pos + n].mean(axis=0))
        pos += n
    return np.stack(out)


def convert_user_model(args, command: str, log=print) -> int:
    import keras

    path = Path(args.model)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many types for unreadable files
        raise ModelError(f"{path}: cannot load Keras model ({type(exc).__name__}: {exc})") from None
    frames, n_feat = model_window(model)
    config = load_feature_config(args.preset, args.feature_config)
    if n_feat != config.n_features:
        raise FeatureConfigError(
            f"{path}: the model takes {n_feat} features per frame but the feature config gives "
            f"{config.n_features} ({'preset ' + args.preset if args.preset else args.feature_config}); "
            "pick the config the model was trained with"
        )
    labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    n_out = int(model.output_shape[-1])
    if len(labels) != n_out:
        raise ModelError(f"{path}: the model has {n_out} outputs but {len(labels)} labels were given")
    hop = args.hop_frames or max(1, frames // 2)
    input_shape = tuple(int(d) for d in model.input_shape[1:])
    clips = calibration_clips(args.calibration, config)
    windows = [split_windows(f, frames, hop)[0] for f in clips]
    pool = np.concatenate(windows)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(pool))[: args.max_windows]
    reps = pool[pick].reshape((-1,) + input_shape).astype(np.float32)
    log(f"{path.name}: window {frames} frames x {n_feat} features, {len(clips)} calibration clips "
        f"({len(pool)} windows, {len(reps)} used for calibration)")
    tfl = convert(model, reps, args.variant)
    metadata = build_metadata(config, frames, hop,
                              {"source_model": path.name, "command": command, "variant": args.variant},
                              labels=labels, name=args.name, version="1")
    if args.output != "probabilities":
        from dataclasses import replace

        metadata = replace(metadata, output=args.output)
    report = finish_tflite(tfl, metadata, Path(args.out))
    p_float = _clip_predictions(_keras_runner(model, input_shape), windows)
    p_quant = _clip_predictions(TFLiteRunner(Path(args.out).read_bytes()).predict, windows)
    agreement = float(np.mean(p_float.argmax(1) == p_quant.argmax(1)))
    summary = {"out": str(args.out), "size_bytes": report["size_bytes"], "ops": report["ops"],
               "integer_only": report["integer_only"], "window_frames": frames, "hop_frames": hop,
               "feature_hash": config.hash(), "calibration_clips": len(clips),
               "top1_agreement_float_vs_" + args.variant: round(agreement, 4)}
    print(json.dumps(summary, indent=1))
    if args.variant == "int8" and not report["integer_only"]:
        log(f"error: the int8 model still has float tensors: {report['non_int_tensors'][:10]}")
        return 1
    return 0
