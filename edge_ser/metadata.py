"""The description of a model that travels inside its ``.tflite`` file.

The converter serializes a :class:`ModelMetadata` to JSON and stores it in the model's
metadata table under the name ``edge_ser`` (see :mod:`edge_ser.tflite_file`). The
device parses and checks it before running anything, so a model is never fed features
it was not trained on: the feature config is stored whole *and* as its hash, and the
two must agree with each other and with the code that reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from .errors import FeatureConfigError, ModelError
from .features import FeatureConfig
from .tflite_file import METADATA_NAME, read_metadata

FORMAT = "edge-ser-model"
FORMAT_VERSION = 1

#: The 8 RAVDESS emotions, in the order of the RAVDESS file-name code (01..08).
EMOTIONS: Tuple[str, ...] = (
    "neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)

#: How windows shorter than the model input are filled (see :mod:`edge_ser.windows`).
PAD_MODES = ("center_min",)


@dataclass(frozen=True)
class ModelMetadata:
    """What a model expects and what it outputs.

    ``window_frames`` is the model's input length in feature frames and
    ``hop_frames`` the step between overlapping windows over a longer clip.
    ``output`` says whether the last tensor holds probabilities (softmax inside the
    graph) or logits. ``extra`` keeps free-form facts for people: training corpora,
    metrics, the command that made the model.
    """

    labels: Tuple[str, ...]
    feature_config: FeatureConfig
    window_frames: int
    hop_frames: int
    pad_mode: str = "center_min"
    output: str = "probabilities"
    name: str = "edge-ser"
    version: str = "0"
    extra: Dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise ModelError(f"model metadata: labels must be 2 or more distinct names, got {list(self.labels)}")
        if self.window_frames <= 0 or self.hop_frames <= 0:
            raise ModelError("model metadata: window_frames and hop_frames must be positive")
        if self.pad_mode not in PAD_MODES:
            raise ModelError(f"model metadata: unknown pad_mode {self.pad_mode!r}")
        if self.output not in ("probabilities", "logits"):
            raise ModelError(f"model metadata: output must be 'probabilities' or 'logits', got {self.output!r}")

    @property
    def feature_hash(self) -> str:
        return self.feature_config.hash()

    @property
    def input_shape(self) -> Tuple[int, int]:
        """(frames, features) of one window."""
        return (self.window_frames, self.feature_config.n_features)

    @property
    def window_seconds(self) -> float:
        cfg = self.feature_config
        return self.window_frames * cfg.hop_length / cfg.sample_rate

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "labels": list(self.labels),
            "feature_config": self.feature_config.to_dict(),
            "feature_config_hash": self.feature_hash,
            "window": {"frames": self.window_frames, "hop_frames": self.hop_frames, "pad": self.pad_mode},
            "output": self.output,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=1)

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "model") -> "ModelMetadata":
        def need(key: str, container: Dict[str, Any] = data) -> Any:
            if key not in container:
                raise ModelError(f"{source}: model metadata lacks {key!r}")
            return container[key]

        if data.get("format") != FORMAT:
            raise ModelError(f"{source}: metadata is not an edge-ser model description")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelError(
                f"{source}: metadata format version {version!r} is newer than this edge-ser "
                f"understands ({FORMAT_VERSION}); upgrade edge-ser"
            )
        try:
            config = FeatureConfig.from_dict(need("feature_config"))
        except FeatureConfigError as exc:
            raise ModelError(f"{source}: {exc}") from None
        stored_hash = need("feature_config_hash")
        if stored_hash != config.hash():
            raise ModelError(
                f"{source}: feature config hash mismatch: the file says {stored_hash}, its config "
                f"hashes to {config.hash()} (edited metadata, or a feature code change)"
            )
        window = need("window")
        try:
            return cls(
                labels=tuple(need("labels")),
                feature_config=config,
                window_frames=int(need("frames", window)),
                hop_frames=int(need("hop_frames", window)),
                pad_mode=window.get("pad", "center_min"),
                output=data.get("output", "probabilities"),
                name=str(data.get("name", "edge-ser")),
                version=str(data.get("version", "0")),
                extra=dict(data.get("extra", {})),
            )
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed model metadata ({exc})") from None

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> "ModelMetadata":
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{source}: model metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{source}: model metadata must be a JSON object")
        return cls.from_dict(data, source)

    @classmethod
    def from_tflite(cls, model_bytes: bytes, source: str = "model") -> "ModelMetadata":
        """Parse the ``edge_ser`` entry of a ``.tflite`` file's metadata table."""
        return cls.from_entries(read_metadata(model_bytes, source), source)

    @classmethod
    def from_entries(cls, entries: Dict[str, bytes], source: str = "model") -> "ModelMetadata":
        """Parse the ``edge_ser`` entry of a metadata table already read (:func:`read_metadata`)."""
        if METADATA_NAME not in entries:
            raise ModelError(
                f"{source}: this .tflite file has no edge-ser metadata; convert it with "
                "'python -m converter convert' so it carries its labels and feature config"
            )
        return cls.from_json(entries[METADATA_NAME].decode("utf-8", errors="replace"), source)


def load_metadata(path: str) -> ModelMetadata:
    """Read and check the metadata of the ``.tflite`` file at ``path``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None
    return ModelMetadata.from_tflite(data, source=str(path))


__all__ = ["ModelMetadata", "EMOTIONS", "FORMAT", "FORMAT_VERSION", "PAD_MODES", "load_metadata"]
