"""Build WAV files byte by byte for tests, independently of ``edge_ser.wav``.

The decoder under test must not also be the encoder of its test data, so this module
packs samples and headers itself (``struct`` and plain integer arithmetic), and can
write every format (PCM u8/s16/s24/s32, IEEE float32/64, WAVE_FORMAT_EXTENSIBLE)
as well as every kind of broken or unusual file: extra and odd-sized chunks, missing
pad bytes, lying RIFF/data sizes, absurd header fields.

Typical use::

    values, expected = known_samples("pcm24", frames=100, channels=2)
    blob = wav_file(values, "pcm24", sample_rate=44100, extensible=True)
    # read_wav_channels(blob).samples == expected
"""

from __future__ import annotations

import struct
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

PCM, IEEE_FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE

#: sample format -> (format tag, bits per sample)
FORMATS: Dict[str, Tuple[int, int]] = {
    "pcm8": (PCM, 8),
    "pcm16": (PCM, 16),
    "pcm24": (PCM, 24),
    "pcm32": (PCM, 32),
    "float32": (IEEE_FLOAT, 32),
    "float64": (IEEE_FLOAT, 64),
}

_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # KSDATAFORMAT_SUBTYPE_* suffix


def known_samples(sample_format: str, frames: int, channels: int = 1,
                  seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Random stored values ``(frames, channels)`` and the floats a decoder must return.

    PCM values are integers covering the full range including both extremes; the
    expected float is ``value / 2**(bits-1)`` (``(value - 128) / 128`` for unsigned
    8-bit). Float formats store values in [-1, 1] that the decoder returns as float32.
    """
    rng = np.random.default_rng(seed)
    tag, bits = FORMATS[sample_format]
    if tag == IEEE_FLOAT:
        values = rng.uniform(-1.0, 1.0, (frames, channels))
        if values.size >= 2:
            values.flat[0], values.flat[1] = -1.0, 1.0
        return values, values.astype(np.float32)
    if bits == 8:
        lo, hi = 0, 255
    else:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    values = rng.integers(lo, hi, size=(frames, channels), endpoint=True, dtype=np.int64)
    if values.size >= 2:
        values.flat[0], values.flat[1] = lo, hi
    centered = values - 128 if bits == 8 else values
    expected = (centered.astype(np.float64) / float(1 << (bits - 1) if bits > 8 else 128)).astype(np.float32)
    return values, expected


def pack_samples(values: np.ndarray, sample_format: str) -> bytes:
    """Interleave and pack stored values (integers for PCM, floats for IEEE) little-endian."""
    tag, bits = FORMATS[sample_format]
    flat = np.asarray(values).reshape(-1)
    if tag == IEEE_FLOAT:
        return struct.pack(f"<{flat.size}{'f' if bits == 32 else 'd'}", *flat.tolist())
    if bits == 8:
        return bytes(int(v) for v in flat)
    if bits == 24:
        out = bytearray()
        for v in flat.tolist():
            u = v & 0xFFFFFF  # two's complement in 24 bits
            out += bytes((u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF))
        return bytes(out)
    code = {16: "h", 32: "i"}[bits]
    return struct.pack(f"<{flat.size}{code}", *flat.tolist())


def chunk(chunk_id: bytes, payload: bytes, *, pad: bool = True, size: Optional[int] = None) -> bytes:
    """One RIFF chunk; ``size`` overrides the declared size, ``pad=False`` omits the pad byte."""
    assert len(chunk_id) == 4
    declared = len(payload) if size is None else size
    tail = b"\x00" if (pad and len(payload) % 2) else b""
    return chunk_id + struct.pack("<I", declared) + payload + tail


def fmt_payload(tag: int, channels: int, sample_rate: int, bits: int, *,
                block_align: Optional[int] = None, byte_rate: Optional[int] = None,
                extensible: bool = False, valid_bits: Optional[int] = None,
                channel_mask: int = 0) -> bytes:
    """A fmt chunk body; with ``extensible`` the tag goes into the SubFormat GUID."""
    if block_align is None:
        block_align = (channels * bits // 8) & 0xFFFF
    if byte_rate is None:
        byte_rate = (sample_rate * block_align) & 0xFFFFFFFF
    outer = EXTENSIBLE if extensible else tag
    body = struct.pack("<HHIIHH", outer, channels, sample_rate, byte_rate, block_align, bits)
    if extensible:
        body += struct.pack("<HHI", 22, bits if valid_bits is None else valid_bits, channel_mask)
        body += struct.pack("<H", tag) + _GUID_TAIL
    return body


def riff(chunks: Iterable[bytes], *, riff_size: Optional[int] = None, magic: bytes = b"RIFF") -> bytes:
    """Wrap chunks in a RIFF/WAVE header (``riff_size`` overrides the declared size)."""
    body = b"WAVE" + b"".join(chunks)
    return magic + struct.pack("<I", len(body) if riff_size is None else riff_size) + body


def wav_file(values: np.ndarray, sample_format: str = "pcm16", *, sample_rate: int = 16000,
             extensible: bool = False, before: Iterable[bytes] = (), between: Iterable[bytes] = (),
             after: Iterable[bytes] = (), data_size: Optional[int] = None,
             riff_size: Optional[int] = None, extra_data: bytes = b"", **fmt_overrides: int) -> bytes:
    """A complete WAV holding ``values`` (``(frames, channels)`` or 1-D mono).

    ``before``/``between``/``after`` are extra chunks placed before fmt, between fmt
    and data, and after data. ``extra_data`` is appended to the data bytes (e.g. a
    partial frame). ``fmt_overrides`` (channels, sample_rate, bits, block_align, tag,
    byte_rate) forge the header.
    """
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[:, None]
    tag, bits = FORMATS[sample_format]
    fields = dict(tag=tag, channels=values.shape[1], sample_rate=sample_rate, bits=bits)
    fields.update(fmt_overrides)
    fmt = fmt_payload(fields.pop("tag"), fields.pop("channels"), fields.pop("sample_rate"),
                      fields.pop("bits"), extensible=extensible, **fields)
    data = pack_samples(values, sample_format) + extra_data
    return riff([*before, chunk(b"fmt ", fmt), *between, chunk(b"data", data, size=data_size), *after],
                riff_size=riff_size)


def sine(frequency: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float64 sine tone (test signal)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    return amplitude * np.sin(2 * np.pi * frequency * t)
