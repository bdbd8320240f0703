"""Read the metadata table of a ``.tflite`` flatbuffer with the standard library only.

A TFLite model is a FlatBuffer whose root ``Model`` table has a ``metadata`` vector of
``{name, buffer}`` entries pointing into its ``buffers`` vector. edge-ser stores its
model description (labels, feature config, ...) there as JSON under the name
:data:`METADATA_NAME`; the converter writes it, this module reads it. The reader
follows the layout rules of the FlatBuffers format (little-endian, tables reached
through vtables, offsets relative to where they are stored) and checks every offset
against the file size, so a damaged file gives :class:`~edge_ser.errors.ModelError`,
never a crash or a huge allocation.
"""

from __future__ import annotations

import struct
from typing import Dict, Optional

from .errors import ModelError

METADATA_NAME = "edge_ser"
FILE_IDENTIFIER = b"TFL3"

# Field indices in the TFLite schema (schema.fbs)
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source

    def _fail(self, why: str) -> "ModelError":
        return ModelError(f"{self.source}: not a valid TFLite model ({why})")

    def _unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise self._fail(f"offset {pos} outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u16(self, pos: int) -> int:
        return self._unpack("<H", pos)

    def u32(self, pos: int) -> int:
        return self._unpack("<I", pos)

    def i32(self, pos: int) -> int:
        return self._unpack("<i", pos)

    def u64(self, pos: int) -> int:
        return self._unpack("<Q", pos)

    def field_pos(self, table: int, field: int) -> Optional[int]:
        """Absolute position of a table field's value, or None if absent."""
        vtable = table - self.i32(table)
        vt_size = self.u16(vtable)
        slot = 4 + 2 * field
        if slot + 2 > vt_size:
            return None
        rel = self.u16(vtable + slot)
        return table + rel if rel else None

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int) -> "tuple[int, int]":
        """(start, length) of the vector referenced at ``pos``."""
        start = self.deref(pos)
        length = self.u32(start)
        if length > len(self.data):
            raise self._fail("vector length larger than the file")
        return start + 4, length

    def string(self, pos: int) -> str:
        start, length = self.vector(pos)
        if start + length > len(self.data):
            raise self._fail("string runs past the end of the file")
        return self.data[start:start + length].decode("utf-8", errors="replace")

    def table_in_vector(self, start: int, index: int) -> int:
        pos = start + 4 * index
        return self.deref(pos)


def read_metadata(data: bytes, source: str = "model") -> Dict[str, bytes]:
    """All ``name -> bytes`` entries of the model's metadata table."""
    if len(data) < 8:
        raise ModelError(f"{source}: not a valid TFLite model (only {len(data)} bytes)")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{source}: not a TFLite model (no 'TFL3' identifier)")
    r = _Reader(data, source)
    root = r.deref(0)
    buffers_pos = r.field_pos(root, _MODEL_BUFFERS)
    metadata_pos = r.field_pos(root, _MODEL_METADATA)
    if buffers_pos is None or metadata_pos is None:
        return {}
    buf_start, buf_count = r.vector(buffers_pos)
    meta_start, meta_count = r.vector(metadata_pos)
    out: Dict[str, bytes] = {}
    for i in range(meta_count):
        entry = r.table_in_vector(meta_start, i)
        name_pos = r.field_pos(entry, _METADATA_NAME)
        index_pos = r.field_pos(entry, _METADATA_BUFFER)
        if name_pos is None or index_pos is None:
            continue
        name = r.string(name_pos)
        index = r.u32(index_pos)
        if index >= buf_count:
            raise r._fail(f"metadata {name!r} points at buffer {index} of {buf_count}")
        out[name] = _buffer_bytes(r, r.table_in_vector(buf_start, index))
    return out


def _buffer_bytes(r: _Reader, buffer: int) -> bytes:
    data_pos = r.field_pos(buffer, _BUFFER_DATA)
    if data_pos is not None:
        start, length = r.vector(data_pos)
        if start + length > len(r.data):
            raise r._fail("buffer runs past the end of the file")
        return bytes(r.data[start:start + length])
    # Large models keep buffer contents after the flatbuffer: offset/size from file start.
    offset_pos = r.field_pos(buffer, _BUFFER_OFFSET)
    size_pos = r.field_pos(buffer, _BUFFER_SIZE)
    if offset_pos is None or size_pos is None:
        return b""
    offset, size = r.u64(offset_pos), r.u64(size_pos)
    if offset + size > len(r.data):
        raise r._fail("buffer runs past the end of the file")
    return bytes(r.data[offset:offset + size])
