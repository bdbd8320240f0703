"""A loaded edge-ser model: its metadata, checked against its tensors, and ``predict``.

Loading reads the file once, parses the ``edge_ser`` metadata the converter embedded
(labels, feature config, window size), builds an interpreter from the same bytes and
then cross-checks the two: a model whose metadata says 8 labels but whose output has
7 values, or whose window disagrees with its input tensor, is refused at load time
with a message naming the disagreement, instead of producing wrong answers later.

``predict`` hides quantization: callers pass float features and get float
probabilities, whatever the tensor types inside.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .backends import Backend, load_backend, resolve_num_threads, resolve_xnnpack
from .errors import ModelError
from .metadata import ModelMetadata

__all__ = ["Model", "TensorInfo", "softmax"]

_SUPPORTED_DTYPES = (np.int8, np.uint8, np.float32)


@dataclass(frozen=True)
class TensorInfo:
    """Shape, type and (per-tensor) quantization of a model input or output."""

    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype != np.float32 and self.scale != 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }

    @classmethod
    def from_details(cls, details: Dict[str, Any]) -> "TensorInfo":
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            name=str(details.get("name", "")),
            shape=tuple(int(d) for d in details["shape"]),
            dtype=np.dtype(details["dtype"]),
            scale=float(scale),
            zero_point=int(zero_point),
        )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class Model:
    """A ``.tflite`` model with edge-ser metadata, ready to run on feature windows.

    Build with :meth:`load`. Not thread-safe: one interpreter holds one set of tensors;
    give each thread its own :class:`Model`.
    """

    def __init__(
        self,
        path: str,
        metadata: ModelMetadata,
        backend: Backend,
        interpreter: Any,
        sha256: str,
        size_bytes: int,
        num_threads: Optional[int],
        xnnpack: bool = True,
    ) -> None:
        self.path = path
        self.metadata = metadata
        self.backend = backend
        self.sha256 = sha256
        self.size_bytes = size_bytes
        self.num_threads = num_threads
        self.xnnpack = xnnpack
        self._interpreter = interpreter
        in_details = interpreter.get_input_details()
        out_details = interpreter.get_output_details()
        if len(in_details) != 1 or len(out_details) != 1:
            raise ModelError(
                f"{path}: expected 1 input and 1 output tensor, the model has "
                f"{len(in_details)} input(s) and {len(out_details)} output(s)"
            )
        self.input = TensorInfo.from_details(in_details[0])
        self.output = TensorInfo.from_details(out_details[0])
        self._input_index = int(in_details[0]["index"])
        self._output_index = int(out_details[0]["index"])
        self._check_tensors()

    # -- loading --------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: "str | os.PathLike[str]",
        backend: Optional[str] = None,
        num_threads: Optional[int] = None,
        xnnpack: Optional[bool] = None,
    ) -> "Model":
        """Read, parse and check the model at ``path``.

        ``num_threads=None`` uses ``$EDGE_SER_NUM_THREADS`` if set, else the backend's
        default. ``xnnpack=None`` uses ``$EDGE_SER_XNNPACK`` (default on); off runs the
        builtin kernels, which agree bit for bit across backends (see
        :meth:`~edge_ser.backends.Backend.make_interpreter`). Raises :class:`ModelError` for a missing/unreadable/inconsistent file and
        :class:`~edge_ser.errors.BackendError` when no interpreter can run it. The
        metadata is parsed before any interpreter is imported, so a wrong file is
        reported without paying for (or needing) a backend.
        """
        path = os.fspath(path)
        try:
            with open(path, "rb") as fh:
                content = fh.read()
        except FileNotFoundError:
            raise ModelError(f"{path}: model file not found") from None
        except IsADirectoryError:
            raise ModelError(f"{path}: is a directory, not a .tflite model file") from None
        except OSError as exc:
            raise ModelError(f"{path}: cannot read model ({exc.strerror or exc})") from None
        metadata = ModelMetadata.from_tflite(content, source=path)
        num_threads = resolve_num_threads(num_threads)
        xnnpack = resolve_xnnpack(xnnpack)
        chosen = load_backend(backend)
        interpreter = chosen.make_interpreter(content, num_threads=num_threads, source=path, xnnpack=xnnpack)
        return cls(
            path=path,
            metadata=metadata,
            backend=chosen,
            interpreter=interpreter,
            sha256=hashlib.sha256(content).hexdigest(),
            size_bytes=len(content),
            num_threads=num_threads,
            xnnpack=xnnpack,
        )

    def _check_tensors(self) -> None:
        """Refuse a model whose tensors disagree with its metadata, saying exactly how."""
        meta = self.metadata
        for role, tensor in (("input", self.input), ("output", self.output)):
            if tensor.dtype not in _SUPPORTED_DTYPES:
                raise ModelError(
                    f"{self.path}: {role} tensor type is {tensor.dtype.name}; edge-ser runs "
                    "int8, uint8 or float32 tensors"
                )
            if tensor.dtype != np.float32 and tensor.scale == 0.0:
                raise ModelError(
                    f"{self.path}: {role} tensor is {tensor.dtype.name} but has no quantization "
                    "parameters (scale 0)"
                )
        expected = (1, meta.window_frames, meta.feature_config.n_features)
        if self.input.shape not in (expected, expected + (1,)):
            raise ModelError(
                f"{self.path}: input tensor shape {list(self.input.shape)} does not match the "
                f"metadata: expected {list(expected)} or {list(expected + (1,))} "
                f"(window_frames={meta.window_frames}, n_features={meta.feature_config.n_features})"
            )
        if self.output.shape != (1, len(meta.labels)):
            raise ModelError(
                f"{self.path}: output tensor shape {list(self.output.shape)} does not match the "
                f"metadata's {len(meta.labels)} labels (expected [1, {len(meta.labels)}])"
            )

    # -- identity -------------------------------------------------------------------
    @property
    def labels(self) -> Tuple[str, ...]:
        return self.metadata.labels

    @property
    def model_id(self) -> str:
        """``name@version#sha256[:12]``: names exactly which model produced an answer."""
        return f"{self.metadata.name}@{self.metadata.version}#{self.sha256[:12]}"

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- inference ------------------------------------------------------------------
    def _quantize(self, window: np.ndarray) -> np.ndarray:
        tensor = self.input
        data = window.reshape(tensor.shape)
        if not tensor.quantized:
            return data.astype(np.float32, copy=False)
        info = np.iinfo(tensor.dtype)
        q = np.round(data / np.float32(tensor.scale)) + tensor.zero_point
        return np.clip(q, info.min, info.max).astype(tensor.dtype)

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        tensor = self.output
        values = raw.astype(np.float32)
        if tensor.quantized:
            values = (values - np.float32(tensor.zero_point)) * np.float32(tensor.scale)
        return values.reshape(-1)

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """``(N, frames, features)`` float windows -> ``(N, n_labels)`` float32 probabilities.

        Each window runs through the interpreter on its own (the model's batch is 1).
        Quantized inputs are rounded and clipped to the tensor's integer range; a
        quantized softmax output is dequantized, so rows sum to 1 within a few
        quantization steps (1/256 each for the usual int8 softmax), not exactly.
        """
        windows = np.asarray(windows, dtype=np.float32)
        frames, features = self.metadata.input_shape
        if windows.ndim == 2:
            windows = windows[None]
        if windows.ndim != 3 or windows.shape[1:] != (frames, features):
            raise ValueError(
                f"predict expects windows of shape (N, {frames}, {features}), got {windows.shape}"
            )
        interpreter = self._interpreter
        rows: List[np.ndarray] = []
        for window in windows:
            interpreter.set_tensor(self._input_index, self._quantize(window))
            interpreter.invoke()
            rows.append(self._dequantize(interpreter.get_tensor(self._output_index)))
        out = np.stack(rows) if rows else np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.metadata.output == "logits":
            out = softmax(out)
        return out.astype(np.float32, copy=False)

    def describe(self) -> Dict[str, Any]:
        """Everything ``edge-ser info`` shows, as plain data."""
        meta = self.metadata
        return {
            "path": self.path,
            "model_id": self.model_id,
            "name": meta.name,
            "version": meta.version,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "labels": list(meta.labels),
            "output": meta.output,
            "window": {
                "frames": meta.window_frames,
                "hop_frames": meta.hop_frames,
                "seconds": meta.window_seconds,
                "pad": meta.pad_mode,
            },
            "feature_config": meta.feature_config.to_dict(),
            "feature_config_hash": meta.feature_hash,
            "input": self.input.to_dict(),
            "output_tensor": self.output.to_dict(),
            "backend": {"name": self.backend.name, "version": self.backend.version},
            "num_threads": self.num_threads,
            "xnnpack": self.xnnpack,
            "extra": meta.extra,
        }

    def __repr__(self) -> str:
        return f"Model({self.path!r}, {self.model_id}, backend={self.backend.label})"
