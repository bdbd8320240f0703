"""Write edge-ser's model description into a ``.tflite`` file's metadata table.

The counterpart of :mod:`edge_ser.tflite_file` (which reads it on the device with the
standard library only). Rebuilding the flatbuffer uses TensorFlow's object API for the
TFLite schema, so this lives on the workstation side.
"""

from __future__ import annotations

import numpy as np

from edge_ser.metadata import ModelMetadata
from edge_ser.tflite_file import METADATA_NAME


def embed_metadata(tflite_model: bytes, metadata: ModelMetadata) -> bytes:
    """Return ``tflite_model`` with ``metadata`` stored (or replaced) under ``edge_ser``.

    The result is checked by reading it back with the device's reader, so a model that
    leaves here is one the device accepts.
    """
    from tensorflow.lite.tools import flatbuffer_utils  # heavy: workstation only

    schema = flatbuffer_utils.schema_fb
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
    payload = np.frombuffer(metadata.to_json().encode("utf-8"), dtype=np.uint8)
    entries = list(model.metadata or [])
    existing = [m for m in entries if _name(m) == METADATA_NAME]
    if existing:
        model.buffers[existing[0].buffer].data = payload
    else:
        buffer = schema.BufferT()
        buffer.data = payload
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        entries.append(entry)
        model.metadata = entries
    out = flatbuffer_utils.convert_object_to_bytearray(model)
    if ModelMetadata.from_tflite(out, source="converted model") != metadata:
        raise RuntimeError("metadata did not survive the round trip through the flatbuffer")
    return out


def _name(entry: object) -> str:
    name = getattr(entry, "name", b"")
    return name.decode("utf-8") if isinstance(name, bytes) else str(name)
