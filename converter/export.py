"""Package a trained model for the device: int8 .tflite + metadata, and its model card."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from edge_ser.atomic_write import write_bytes_atomically
from edge_ser.features import PRESETS, FeatureConfig, preset_name
from edge_ser.metadata import EMOTIONS, ModelMetadata

from .quantize import graph_report
from .tflite_metadata import embed_metadata


def _compression_words(config: FeatureConfig) -> str:
    """How the mel energies are compressed, for the card: power dB, or PCEN and its parameters."""
    pcen = (f"PCEN (smoother {config.pcen_time_constant:g} s, gain {config.pcen_gain:g}, bias "
            f"{config.pcen_bias:g}, root {config.pcen_power:g})")
    if config.log == "pcen":
        return pcen
    if config.log == "db+pcen":
        return f"power dB and, beside it, {pcen}, each normalized on its own"
    return "power dB" if config.log == "db" else f"log {config.log}"


MODEL_NAME = "edge-ser-cnn"
#: How the model card describes each pooling head (converter.model.HEADS).
_HEAD_WORDS = {
    "time_pool": "mean and max over time (frequency positions kept), ",
    "time_attention": "mean and a learned weighted mean over time (frequency positions kept; the weights a "
                      "softmax over the frames of a 1x1 convolution's scores), ",
    "gap": "global average pooling, ",
}


def build_metadata(
    config: FeatureConfig, window_frames: int, hop_frames: int, extra: Dict[str, object],
    labels: Sequence[str] = EMOTIONS, name: str = MODEL_NAME, version: str = "1", output: str = "probabilities",
) -> ModelMetadata:
    return ModelMetadata(labels=tuple(labels), feature_config=config, window_frames=window_frames,
                         hop_frames=hop_frames, name=name, version=version, extra=extra, output=output)


def cv_digest(summary: Optional[Dict[str, object]]) -> Optional[Dict[str, object]]:
    """The CV figures worth carrying inside the model file (not the full confusion matrices)."""
    if not summary:
        return None
    folds = [{"fold": f["fold"], "test_speakers": f["test_speakers"],
              "float_ua": round(f["float"]["ua"], 4), "float_wa": round(f["float"]["wa"], 4),
              "int8_ua": round(f["int8"]["ua"], 4), "int8_wa": round(f["int8"]["wa"], 4),
              "agreement": round(f["agreement"], 4)} for f in summary["folds"]]
    mean = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary["mean"].items()}
    return {"protocol": summary["protocol"], "folds": folds, "mean": mean}


def finish_tflite(tflite_bytes: bytes, metadata: ModelMetadata, out: Path) -> Dict[str, object]:
    """Embed metadata, check the graph, write the file; return the graph report."""
    data = embed_metadata(tflite_bytes, metadata)
    report = graph_report(data)
    write_bytes_atomically(out, data)
    return report


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


#: Corpora the rooms recipe may train on, with their licences (../shared/datasets/README.md).
CORPUS_FACTS: Dict[str, str] = {
    "ravdess": "RAVDESS speech (Livingstone & Russo 2018; English, 20 North-American actors, 8 classes, acted; "
               "CC BY-NC-SA 4.0)",
    "nemo": "nEMO (Polish, 9 speakers, 6 classes, acted; CC BY-NC-SA 4.0)",
    "ased": "ASED, Amharic Speech Emotion Dataset (Amharic, 65 speakers, 5 classes, acted; research use, "
            "cite the ASED paper)",
    "baved": "BAVED, Basic Arabic Vocal Emotions Dataset (Arabic, 59 speakers, 1908 words, arousal low/mid/high "
             "only: it trains the auxiliary arousal head, never an emotion; research use)",
}
ROOM_FACTS = ("Rooms and noise used in training (the room recipes), never their held-out parts: MIT IR Survey "
              "measured impulse responses of everyday indoor places (Traer & McDermott 2016; no explicit licence "
              "stated, research use), 157 of 202 places; real background noise: UrbanSound8K (CC BY-NC 3.0) "
              "recordings of the training side, ESC-50 clips (CC BY-NC 3.0), Speech Commands background noise "
              "(CC BY 4.0) and small recorded sets (CC BY 4.0 / MIT / Apache-2.0, named per file in the noise "
              "folder's manifest).")


def balanced_training_text(recipe: Dict[str, object], corpora: Sequence[str]) -> str:
    """What a balanced-draw recipe does, in words, from its stored fields."""
    weights = recipe.get("corpus_weights") or {}
    w = [float(weights.get(c, 1.0)) for c in corpora]
    if corpora and len(set(w)) > 1:
        share = ", ".join(f"{c} {100 * x / sum(w):.0f} %" for c, x in zip(corpora, w))
        draws = f"a corpus by weight (share of batches: {share})"
    else:
        draws = "a corpus uniformly"
    clean = float(recipe.get("clean_probability", 0.0))
    arousal = ""
    if float(recipe.get("arousal_weight", 0.0) or 0.0) > 0:
        arousal = ("An auxiliary head beside the emotion layer learns arousal (low/mid/high) from the arousal-only "
                   f"corpus, its loss weighted {float(recipe['arousal_weight']):g}; it shapes the shared layers and "
                   "is cut off before export: the model has the 8 emotion outputs only. ")
    return (
        f"{recipe.get('steps', '?')} batches of {recipe.get('batch_size', 32)} windows, each drawn as {draws}, "
        "then one of its classes uniformly, then a clip; a clip competes only among its corpus's classes "
        "(the other logits are masked out of the loss; where a corpus has neutral but no calm, calm joins "
        "neutral), mixup pairs clips of one corpus, label smoothing spreads over its classes. RAVDESS clean "
        "clips get an Opus round trip (the other corpora are Opus) so the codec is no shortcut. "
        f"{100 * clean:.0f} % of windows come from the clean clip, the rest from one of "
        f"{recipe.get('aug_variants', '?')} precomputed audio variants per clip: speed 0.88-1.12, a measured "
        "room (60 %) or synthetic reverberation (15 %), real noise at 0-25 dB SNR (80 %), -25..+3 dB level, "
        "telephone band (15 %), low-bit-rate Opus (10 %); then random 3 s crops, SpecAugment, AdamW with "
        "cosine decay. " + arousal
    ).strip()


def _network_line(params: int, train_info: Dict[str, object], logits: bool) -> str:
    """The card's network line: one compact CNN, or an ensemble of them and what each hears."""
    def cnn(channels, head) -> str:
        return (f"3x3 convolutions (widths {', '.join(map(str, channels or []))}; BatchNorm folded, ReLU; the first "
                f"with stride 2, max pooling after the others); " + _HEAD_WORDS.get(str(head), "global average pooling, ")
                + ("dropout, dense logits" if logits else "dropout, dense softmax"))

    members = train_info.get("members")
    if not members:
        config = PRESETS.get(str(train_info.get("features")))
        front = ("a fixed time-difference filter adds deltas as a second input channel" if not _stacked(config) else
                 f"it stacks {_heard_words(config)}, and a fixed time-difference filter adds each channel's deltas")
        return (f"- Network: compact CNN, {params:,} parameters: {front}; "
                + cnn(train_info.get("channels"), train_info.get("head")) + ".")
    configs = [PRESETS.get(m["features"]) for m in members]
    parts = [f"`{m['member']}` on {_heard_words(c) if c else m['features']} ({m['steps']} batches): "
             + cnn(m.get("channels"), m.get("head")) for m, c in zip(members, configs)]
    reads = ("its own block of the input (a slice, no arithmetic), adds deltas as a second channel"
             if not any(_stacked(c) for c in configs) else
             "its own part of the input (a slice, no arithmetic), adds each channel's deltas as further channels")
    return (f"- Network: an ensemble of {len(members)} compact CNNs, {params:,} parameters in all, their logits "
            f"averaged inside the one graph; each reads {reads} by a fixed time-difference filter, then: "
            + "; ".join(parts) + ".")


def _stacked(config: Optional[FeatureConfig]) -> bool:
    """Whether a network on ``config`` stacks its blocks as channels (:func:`converter.model.build_model`)."""
    return config is not None and config.n_blocks > 1


def _heard_words(config: FeatureConfig) -> str:
    """What a network hears, for the card: one block, or several stacked as channels band on band."""
    if not _stacked(config):
        return f"the {config.kind} block"
    return f"the {config.kind} blocks as {config.n_blocks} channels, band on band"


def _header_lines(path: Path, metadata: ModelMetadata, report: Dict[str, object], params: int,
                  train_info: Dict[str, object]) -> List[str]:
    cfg = metadata.feature_config
    logits = metadata.output == "logits"
    corpora = train_info.get("corpora") or ["ravdess"]
    return [
        "# Model card: edge-ser-int8.tflite",
        "",
        f"- File: `models/{path.name}`, {report['size_bytes'] / 1024:.1f} KiB, full-integer int8 "
        + ("(int8 input and output; the output is the 8 logits, already divided by the calibration "
           "temperature; the device applies the softmax in float" if logits else
           "(int8 input and output, softmax inside the graph")
        + f"; ops: {', '.join(report['ops'])}).",
        _network_line(params, train_info, logits),
        f"- Input: one window of {metadata.window_frames} frames x {cfg.n_features} {cfg.kind} bands "
        f"({metadata.window_seconds:.1f} s), tensor `[1, {metadata.window_frames}, {cfg.n_features}, 1]`. "
        f"Longer clips are cut into windows every {metadata.hop_frames} frames and the window "
        f"probabilities averaged; shorter ones are padded (`center_min`).",
        f"- Features: preset `{preset_name(cfg) or 'own'}` (16 kHz, 25 ms Hann / 10 ms hop, 64 Slaney mels "
        f"{cfg.fmin:g}-{cfg.fmax_hz:g} Hz, {_compression_words(cfg)}, per-utterance mean/variance "
        f"normalization), feature hash `{metadata.feature_hash}`.",
        f"- Labels (output order): {', '.join(metadata.labels)}.",
        f"- Trained: {train_info.get('date')} on {train_info.get('speakers')} speakers of "
        f"{', '.join(corpora)} ({train_info.get('clips')} clips), "
        + ("each member by balanced draws" if train_info.get("members")
           else f"{train_info.get('steps')} batches of balanced draws" if train_info.get("steps")
           else f"{train_info.get('epochs')} epochs")
        + f", {train_info.get('seconds', 0) / 60:.1f} min on a 2-core CPU.",
        "",
    ]


def _export_check_lines(train_info: Dict[str, object]) -> List[str]:
    check = train_info.get("check")
    if not check:
        return []
    return [
        "## Export check (not an accuracy estimate)",
        "",
        f"The shipped int8 file classifies {100 * check['accuracy']:.1f} % of a fixed set of "
        f"{check['clips']} clips (2 per class, RAVDESS actors {', '.join(check['actors'])}) correctly. Those clips "
        "are part of its training data, so this only shows the export works (labels, features, quantization); "
        "`tests/test_shipped_model.py` asserts a floor below it. New speakers: see the evaluation above.",
        "",
    ]


USE_LINES = [
    "- The label is what an actor was asked to portray, not what a speaker feels. Outputs are "
    "guesses, not facts about a person.",
    "- Not for clinical or mental-health assessment, hiring or employee monitoring, law enforcement, "
    "surveillance, or any decision about a person. Suitable for demos, research and "
    "interaction experiments where a wrong guess is harmless.",
]


def _training_words(recipe: Dict[str, object], corpora: Sequence[str]) -> str:
    members = recipe.get("members")
    if not members:
        return "Training: " + balanced_training_text(recipe, corpora)
    first = next(iter(members.values()))
    return ("Training, each member on its own (the number of batches per member is under Network): "
            + balanced_training_text(first, corpora))


def rooms_model_card(
    path: Path, metadata: ModelMetadata, report: Dict[str, object], protocol_md: str,
    params: int, command: str, train_info: Dict[str, object],
) -> str:
    """The card of a multi-corpus, room-augmented model: data and licences, protocol tables, limits."""
    corpora = train_info.get("corpora") or []
    temperature = metadata.extra.get("temperature")
    recipe_name = metadata.extra.get("recipe_name", "rooms")
    lines = _header_lines(path, metadata, report, params, train_info)
    lines += [
        "## Reproduce", "", "```", command, "```", "",
        "The evaluation protocol behind the tables below, and the baseline rows: "
        f"`python -m converter protocol --recipe {recipe_name}` (resumable, one results file per run in "
        "`models/results/protocol/`), then `python -m converter report`.",
        "",
        "## Data and licences",
        "",
    ]
    lines += [f"- {CORPUS_FACTS.get(c, c)}" for c in corpora]
    lines += [
        "",
        "**Licences: several are non-commercial (CC BY-NC-SA 4.0, CC BY-NC 3.0) or research-only. A model trained "
        "on them inherits that: this model is for non-commercial research and demonstration use.**",
        "",
        ROOM_FACTS,
        "",
        _training_words(metadata.extra.get("recipe") or {}, corpora),
        "",
    ]
    if temperature and abs(temperature - 1.0) > 1e-6:
        lines += [f"Calibration: logits divided by T = {temperature:.2f}, folded into the last layer.", ""]
    elif temperature:
        lines += ["Calibration: no temperature (T = 1). Temperatures fitted on held-out *training* speakers "
                  "made the calibration error on new corpora and rooms worse in the protocol (see the "
                  "calibration table).", ""]
    lines += [protocol_md.replace("# Room-ready evaluation protocol", "## Evaluation (own protocol)").strip(), ""]
    lines += _export_check_lines(train_info)
    lines += [
        "## Limits and intended use",
        "",
        "- Acted speech in three languages (English, Polish, Amharic); no spontaneous speech, children or "
        "elderly speakers in training. Rooms and noise are simulated from measurements; a real room with a real "
        "microphone may differ. Disgust and calm are taught by RAVDESS alone (one language, 20 actors).",
    ] + USE_LINES + [
        "- Several training corpora are non-commercial or research-only (see above).",
        "",
    ]
    return "\n".join(lines)


def model_card(
    path: Path, metadata: ModelMetadata, report: Dict[str, object], cv: Optional[Dict[str, object]],
    params: int, command: str, train_info: Dict[str, object],
) -> str:
    from .evaluate import confusion_text, markdown_table, per_class_table

    lines = _header_lines(path, metadata, report, params, train_info)
    lines += [
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "The command reads the corpus from `../shared/datasets/ravdess` (or `--data` / `EDGE_SER_DATA`), "
        "caches features in `.features-cache/`, trains with fixed seeds and TensorFlow's deterministic "
        "ops, quantizes and embeds the metadata (including the cross-validation figures below). "
        "On the same CPU and TensorFlow version the run is bit-reproducible (two runs gave identical "
        "weights and int8 tensors); other CPUs or versions may differ slightly. `python -m converter cv` "
        "reproduces the cross-validation (about 27 min on 2 cores; the final training about 6 min).",
        "",
        "## Data",
        "",
        "RAVDESS speech, audio only (Livingstone & Russo 2018, CC BY-NC-SA 4.0): 20 professional "
        "North-American actors (actors 06, 13, 17, 22 are not in this copy), 60 clips each, "
        "two fixed sentences (\"Kids are talking by the door\", \"Dogs are sitting by the door\") "
        "acted in 8 emotions at two intensities, resampled to 16 kHz mono. Neutral has half as many "
        "clips as the other classes; training weights classes to compensate.",
        "",
        "Training augmentation: 4 precomputed audio variants per clip (random speed perturbation "
        "0.9-1.1, synthetic reverberation, white/pink/brown noise at 10-35 dB SNR, gain), random "
        "3 s crops (20 % shortened and padded like short device input), SpecAugment masks, mixup, "
        "label smoothing; AdamW with cosine decay.",
        "",
    ]
    if cv:
        m = cv["mean"]
        lines += [
            "## Speaker-independent evaluation",
            "",
            cv["protocol"] + ". Each fold model is converted to int8 exactly like the shipped model. "
            "The shipped model itself is trained on all 20 actors, so it has no held-out score of its "
            "own: these figures are the estimate of how it does on new speakers.",
            "",
            markdown_table(cv),
            "",
            f"Mean over folds: **UA {100 * m['int8_ua']:.1f} %** (int8), {100 * m['float_ua']:.1f} % "
            f"(float); float and int8 give the same top-1 class on {100 * m['agreement']:.1f} % of clips.",
            "",
            "### Per class (pooled over the 5 test folds)",
            "",
            per_class_table(cv),
            "",
            "### Confusion matrix (int8, pooled; rows = true class)",
            "",
            "```",
            confusion_text(cv["pooled_confusion_int8"]),
            "```",
            "",
            "![confusion matrix](results/confusion.png)",
            "",
            "Full results: `models/results/cv.json`, `models/results/cv.md`.",
            "",
        ]
    else:
        lines += ["## Evaluation", "", "No cross-validation results were available when this model was built.", ""]
    lines += _export_check_lines(train_info)
    lines += [
        "## Limits and intended use",
        "",
        "- Acted, read English speech by 20 North-American actors, two sentences, studio conditions. "
        "Spontaneous speech, other languages and accents, children, far-field or noisy microphones "
        "will score lower, likely much lower."
        + (f" Weakest classes in cross-validation: {weakest(cv)}." if cv else ""),
    ] + USE_LINES + [
        "- Dataset licence (CC BY-NC-SA 4.0) limits commercial use of a model trained on it.",
        "",
    ]
    return "\n".join(lines)


def weakest(cv: Dict[str, object], count: int = 2) -> str:
    """The classes with the lowest int8 recall, with what they are most often mistaken for."""
    import numpy as np

    cm = np.asarray(cv["pooled_confusion_int8"])
    recall = np.diag(cm) / np.maximum(cm.sum(axis=1), 1)
    parts = []
    for i in np.argsort(recall)[:count]:
        row = cm[i].copy()
        row[i] = -1
        top = [EMOTIONS[j] for j in np.argsort(row)[::-1][:2]]
        parts.append(f"{EMOTIONS[i]} ({100 * recall[i]:.0f} % recall, often taken for {' or '.join(top)})")
    return "; ".join(parts)


def load_cv(path: Path) -> Optional[Dict[str, object]]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
