"""WAV (RIFF/WAVE) decoding and encoding with the stdlib and NumPy only.

Why not the stdlib ``wave`` module: it reads only integer PCM, rejects IEEE float and
most WAVE_FORMAT_EXTENSIBLE files, trusts the header sizes (streamed WAVs whose data
size is ``0xFFFFFFFF`` or ``0`` come out empty or fail), and returns bytes that still
need decoding. Why not soundfile/scipy: they are not on the device path.

Robustness rules, because this decoder sees every file a user throws at the device:

* Every problem with the input is an :class:`~edge_ser.errors.AudioError` naming the
  file and the reason (not a RIFF file, no fmt/data chunk, unsupported codec by name,
  inconsistent or absurd header fields, ...). Nothing else escapes for bad bytes.
* Header sizes are never trusted for allocation: data is read with bounded reads, up
  to what the file really holds (its size for paths and bytes, bounded pieces for
  pipes), so a lying header can neither hang the reader nor make it allocate gigabytes.
* Sizes that are merely wrong are tolerated the way players tolerate them: the RIFF
  size is ignored, a data size of ``0xFFFFFFFF``/``0`` (streamed) or larger than the
  file means "to the end of the file", a trailing partial frame is dropped, unknown
  chunks are skipped (with or without their pad byte).

Decoding is vectorized (``np.frombuffer``; 24-bit through a 4-byte view) and runs in
blocks so that peak memory stays close to the raw data plus the float32 output.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, List, Optional, Tuple, Union

import numpy as np

from .errors import AudioError

__all__ = ["WavAudio", "read_wav", "read_wav_channels", "write_wav", "SAMPLE_FORMATS"]

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

# --- format constants ---------------------------------------------------------------

_PCM = 0x0001
_IEEE_FLOAT = 0x0003
_EXTENSIBLE = 0xFFFE

#: Codecs we recognise but do not decode, so the error can say what the file is.
_CODEC_NAMES: Dict[int, str] = {
    0x0000: "unknown (format tag 0)",
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law (G.711)",
    0x0007: "mu-law (G.711)",
    0x0010: "OKI ADPCM",
    0x0011: "IMA ADPCM",
    0x0014: "G.723 ADPCM",
    0x0022: "DSP Group TrueSpeech",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0050: "MPEG-1 audio",
    0x0055: "MPEG Layer 3 (MP3)",
    0x0161: "Windows Media Audio",
    0x0162: "Windows Media Audio Pro",
    0x0163: "Windows Media Audio Lossless",
    0x1610: "AAC (HE-AAC)",
    0x2000: "Dolby AC-3",
    0x674F: "Ogg Vorbis",
    0xF1AC: "FLAC",
}

#: sample_format name -> (numpy dtype, bytes per sample, format tag) for writing.
SAMPLE_FORMATS: Dict[str, Tuple[str, int, int]] = {
    "pcm8": ("u1", 1, _PCM),
    "pcm16": ("<i2", 2, _PCM),
    "pcm24": ("<i4", 3, _PCM),
    "pcm32": ("<i4", 4, _PCM),
    "float32": ("<f4", 4, _IEEE_FLOAT),
    "float64": ("<f8", 8, _IEEE_FLOAT),
}

# Limits that separate "unusual" from "corrupt". A fmt chunk is 16, 18 or 40 bytes in
# practice; channel counts beyond a few dozen are ambisonics research at most.
_MAX_FMT_SIZE = 4096
_MAX_CHANNELS = 256
_MAX_SAMPLE_RATE = 10_000_000
_STREAMED_SIZES = (0xFFFFFFFF,)
_PIECE = 1 << 20  # bounded read size for streams of unknown length
_BLOCK_FRAMES = 1 << 18  # frames decoded per block (bounds temporaries)


@dataclass(frozen=True)
class WavAudio:
    """Decoded audio.

    ``samples`` is float32 in [-1, 1]: 1-D mono (channels averaged) from
    :func:`read_wav`, ``(frames, channels)`` from :func:`read_wav_channels`.
    ``channels`` and ``format`` describe the file (``"pcm8"``, ``"pcm16"``,
    ``"pcm24"``, ``"pcm32"``, ``"float32"``, ``"float64"``).
    """

    samples: np.ndarray
    sample_rate: int
    channels: int
    format: str

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class _Format:
    tag: int  # effective codec (the SubFormat's for EXTENSIBLE)
    channels: int
    sample_rate: int
    block_align: int
    bits: int  # container bits per sample
    name: str


# --- byte source ---------------------------------------------------------------------


class _Reader:
    """Sequential reads from bytes or a binary file, with a small push-back buffer.

    ``remaining`` is known for bytes and seekable files (so reads can be sized to what
    is really there) and ``None`` for pipes (reads then go in bounded pieces).
    """

    def __init__(self, data: Optional[memoryview], stream: Optional[BinaryIO]) -> None:
        self._data = data
        self._pos = 0
        self._stream = stream
        self._pushback = b""
        self._size: Optional[int] = None
        if stream is not None:
            try:
                if stream.seekable():
                    here = stream.tell()
                    end = stream.seek(0, io.SEEK_END)
                    stream.seek(here)
                    self._size = end - here
            except (OSError, AttributeError, ValueError):
                self._size = None

    def _stream_left(self) -> Optional[int]:
        return None if self._size is None else max(self._size - self._pos, 0)

    def remaining(self) -> Optional[int]:
        """Bytes left to read, or ``None`` when unknown (pipes)."""
        if self._data is not None:
            return len(self._data) - self._pos
        left = self._stream_left()
        return None if left is None else left + len(self._pushback)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end). Never allocates more than is there."""
        if n <= 0:
            return b""
        if self._data is not None:
            out = self._data[self._pos:self._pos + n]
            self._pos += len(out)
            return bytes(out) if len(out) <= 64 else out  # type: ignore[return-value]
        head, self._pushback = self._pushback[:n], self._pushback[n:]
        n -= len(head)
        if n == 0:
            return head
        parts: List[bytes] = [head] if head else []
        known = self._stream_left()
        if known is not None:
            n = min(n, known)
        # Known size: n is already bounded by the file, read it in one go. Unknown
        # (pipe): bounded pieces, so a lying size cannot trigger a huge allocation.
        limit = n if known is not None else _PIECE
        while n > 0:
            piece = self._stream.read(min(n, limit))  # type: ignore[union-attr]
            if not piece:
                break
            self._pos += len(piece)
            parts.append(piece)
            n -= len(piece)
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def unread(self, data: bytes) -> None:
        if self._data is not None:
            self._pos -= len(data)
        else:
            self._pushback = bytes(data) + self._pushback

    def skip(self, n: int) -> None:
        if self._data is not None:
            self._pos = min(self._pos + n, len(self._data))
            return
        dropped = min(n, len(self._pushback))
        self._pushback = self._pushback[dropped:]
        n -= dropped
        known = self._stream_left()
        if known is not None:
            n = min(n, known)
            self._stream.seek(n, io.SEEK_CUR)  # type: ignore[union-attr]
            self._pos += n
            return
        while n > 0:  # pipe: read and discard in bounded pieces
            piece = self._stream.read(min(n, _PIECE))  # type: ignore[union-attr]
            if not piece:
                return
            self._pos += len(piece)
            n -= len(piece)

    def read_to_end(self) -> bytes:
        if self._data is not None:
            return self.read(len(self._data) - self._pos)
        parts = [self._pushback] if self._pushback else []
        self._pushback = b""
        while True:
            known = self._stream_left()
            piece = self._stream.read(known if known else _PIECE)  # type: ignore[union-attr]
            if not piece:
                break
            self._pos += len(piece)
            parts.append(piece)
        return b"".join(parts)


def _source_name(source: Source, name: Optional[str]) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)  # type: ignore[return-value]
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


# --- header parsing --------------------------------------------------------------------


def _looks_like_chunk_id(raw: bytes) -> bool:
    return len(raw) == 4 and all(32 <= b < 127 for b in raw)


def _sniff(head: bytes) -> str:
    """A human hint for what a non-WAV file probably is."""
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "looks like MP3"
    for magic, what in ((b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"FORM", "AIFF"),
                        (b"RIFX", "big-endian RIFX WAV (unsupported)"), (b"\x1aE\xdf\xa3", "Matroska/WebM"),
                        (b"caff", "Core Audio"), (b".snd", "Sun/NeXT .au")):
        if head.startswith(magic):
            return f"looks like {what}"
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return "looks like MP4/M4A"
    if head and all(b in b"\t\n\r" or 32 <= b < 127 for b in head):
        return "looks like text"
    return "unknown content"


def _parse_fmt(raw: bytes, size: int, fail) -> _Format:  # type: ignore[no-untyped-def]
    if len(raw) < 16:
        fail(f"truncated fmt chunk ({len(raw)} of at least 16 bytes)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", raw)
    label = "extensible " if tag == _EXTENSIBLE else ""
    if tag == _EXTENSIBLE:
        if len(raw) < 40:
            fail(f"truncated WAVE_FORMAT_EXTENSIBLE fmt chunk ({len(raw)} of 40 bytes)")
        valid_bits = struct.unpack_from("<H", raw, 18)[0]
        tag = struct.unpack_from("<H", raw, 24)[0]  # first two bytes of the SubFormat GUID
        if valid_bits > bits:
            fail(f"valid bits per sample {valid_bits} exceed the container's {bits}")
    if tag not in (_PCM, _IEEE_FLOAT):
        codec = _CODEC_NAMES.get(tag, f"format tag 0x{tag:04X}")
        fail(f"unsupported {label}codec {codec} (only PCM and IEEE float WAV are decoded)")
    if channels == 0:
        fail("zero channels")
    if channels > _MAX_CHANNELS:
        fail(f"implausible channel count {channels} (max {_MAX_CHANNELS})")
    if rate == 0:
        fail("zero sample rate")
    if rate > _MAX_SAMPLE_RATE:
        fail(f"implausible sample rate {rate} Hz")
    allowed = (8, 16, 24, 32) if tag == _PCM else (32, 64)
    kind = "PCM" if tag == _PCM else "IEEE float"
    if bits not in allowed:
        fail(f"unsupported bits per sample {bits} for {kind} (supported: {allowed})")
    if block_align != channels * bits // 8:
        fail(f"block align {block_align} inconsistent with {channels} channel(s) of {bits} bits "
             f"(expected {channels * bits // 8})")
    name = (f"pcm{bits}" if tag == _PCM else f"float{bits}")
    return _Format(tag, channels, rate, block_align, bits, name)


def _read_chunks(reader: _Reader, fail) -> Tuple[_Format, bytes]:  # type: ignore[no-untyped-def]
    """Walk the chunk list; return the format and the raw data bytes."""
    head = reader.read(12)
    head = bytes(head)
    if len(head) == 0:
        fail("empty file, not a WAV")
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        fail(f"not a RIFF/WAVE file ({_sniff(head)})")
    fmt: Optional[_Format] = None
    while True:
        header = bytes(reader.read(8))
        if len(header) < 8:
            break
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"fmt ":
            if size > _MAX_FMT_SIZE:
                fail(f"fmt chunk size {size} is implausible (max {_MAX_FMT_SIZE})")
            raw = bytes(reader.read(size))
            if len(raw) < size and len(raw) < 16:
                fail(f"truncated fmt chunk ({len(raw)} of {size} bytes)")
            fmt = _parse_fmt(raw, size, fail)
            _skip_pad(reader, size)
        elif chunk_id == b"data":
            if fmt is None:
                fail("no fmt chunk before the data chunk")
            return fmt, _read_data(reader, size)
        else:
            reader.skip(size)
            _skip_pad(reader, size)
    if fmt is None:
        fail("no fmt chunk")
    fail("no data chunk")
    raise AssertionError("unreachable")


def _skip_pad(reader: _Reader, size: int) -> None:
    """Chunks are word aligned; some writers forget the pad byte after odd sizes."""
    if size % 2 == 0:
        return
    peek = bytes(reader.read(5))
    if len(peek) == 5 and _looks_like_chunk_id(peek[:4]) and not _looks_like_chunk_id(peek[1:5]):
        reader.unread(peek)  # no pad byte: the next chunk starts right here
    else:
        reader.unread(peek[1:])


def _read_data(reader: _Reader, size: int) -> bytes:
    remaining = reader.remaining()
    if size in _STREAMED_SIZES:
        return reader.read_to_end()
    if size == 0:
        # Streamers that never go back to fix the header write 0. Read to the end unless
        # what follows is clearly another chunk (then the data chunk is really empty).
        peek = bytes(reader.read(8))
        if len(peek) == 0:
            return b""
        if len(peek) == 8 and _looks_like_chunk_id(peek[:4]):
            following = struct.unpack("<I", peek[4:])[0]
            rest = reader.remaining()
            if rest is None or following <= rest:
                return b""
        reader.unread(peek)
        return reader.read_to_end()
    if remaining is not None and size >= remaining:
        return reader.read_to_end()
    return reader.read(size)


# --- decoding --------------------------------------------------------------------------


def _decode(raw: bytes, fmt: _Format, n_frames: int, mono: bool) -> np.ndarray:
    """Raw little-endian samples -> float32, mono-averaged or ``(frames, channels)``."""
    channels = fmt.channels
    shape = (n_frames,) if mono else (n_frames, channels)
    out = np.empty(shape, dtype=np.float32)
    bytes_per_sample = fmt.bits // 8
    step = _BLOCK_FRAMES
    buf = memoryview(raw)
    for start in range(0, n_frames, step):
        stop = min(start + step, n_frames)
        block = buf[start * fmt.block_align: stop * fmt.block_align]
        values = _decode_block(block, fmt.tag, bytes_per_sample).reshape(stop - start, channels)
        if mono:
            # Column sums, not values.mean(axis=1): reducing a 2-wide axis is ~100x slower.
            target = out[start:stop]
            target[:] = values[:, 0]
            for channel in range(1, channels):
                target += values[:, channel]
            if channels > 1:
                target *= np.float32(1.0 / channels)
        else:
            out[start:stop] = values
    return out


def _decode_block(block: memoryview, tag: int, width: int) -> np.ndarray:
    if tag == _IEEE_FLOAT:
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 -> inf
            values = np.frombuffer(block, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
        # Float WAVs may hold overs or garbage; features need bounded, finite input.
        np.nan_to_num(values, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(values, -1.0, 1.0, out=values)
    if width == 1:
        return (np.frombuffer(block, dtype=np.uint8).astype(np.float32) - 128.0) * np.float32(1 / 128)
    if width == 2:
        return np.frombuffer(block, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
    if width == 3:
        return _decode_24bit(np.frombuffer(block, dtype=np.uint8))
    return np.frombuffer(block, dtype="<i4").astype(np.float32) * np.float32(1 / 2147483648)


def _decode_24bit(raw: np.ndarray) -> np.ndarray:
    """Packed little-endian 24-bit samples -> float32, without a Python loop.

    Sample ``i`` occupies bytes ``3i..3i+2``; the int32 read at byte ``3i - 1`` (a
    strided, overlapping view: no copy) holds it in its top three bytes, so an
    arithmetic shift right by 8 gives the sign-extended value. Sample 0 has no byte
    before it and is done by hand.
    """
    count = raw.size // 3
    out = np.empty(count, dtype=np.float32)
    if count == 0:
        return out
    scale = np.float32(1 / 8388608)
    shifted = np.ndarray(shape=(count - 1,), dtype="<i4", buffer=raw, offset=2, strides=(3,))
    np.multiply(shifted >> 8, scale, out=out[1:], casting="unsafe")
    first = int(raw[0]) | int(raw[1]) << 8 | int(raw[2]) << 16
    out[0] = (first - (1 << 24) if first & 0x800000 else first) * scale
    return out


def _read(source: Source, name: Optional[str], mono: bool) -> WavAudio:
    label = _source_name(source, name)

    def fail(reason: str) -> None:
        raise AudioError(reason, label)

    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as stream:
                fmt, raw = _read_chunks(_Reader(None, stream), fail)  # type: ignore[arg-type]
        except AudioError:
            raise
        except OSError as exc:
            raise AudioError(f"cannot read: {exc.strerror or exc}", label) from None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        fmt, raw = _read_chunks(_Reader(memoryview(source).cast("B"), None), fail)
    else:
        try:
            fmt, raw = _read_chunks(_Reader(None, source), fail)
        except AudioError:
            raise
        except OSError as exc:
            raise AudioError(f"cannot read: {exc.strerror or exc}", label) from None
    n_frames = len(raw) // fmt.block_align  # drops a trailing partial frame
    samples = _decode(raw, fmt, n_frames, mono)
    return WavAudio(samples, fmt.sample_rate, fmt.channels, fmt.name)


def read_wav(source: Source, *, name: Optional[str] = None) -> WavAudio:
    """Decode a WAV file, bytes or binary stream to float32 mono in [-1, 1].

    ``name`` labels the source in error messages (defaults to the path, the stream's
    ``name`` or ``<bytes>``). Raises :class:`AudioError` for anything that is not a
    decodable WAV.
    """
    return _read(source, name, mono=True)


def read_wav_channels(source: Source, *, name: Optional[str] = None) -> WavAudio:
    """Like :func:`read_wav` but keep the channels: ``samples`` is ``(frames, channels)``."""
    return _read(source, name, mono=False)


# --- encoding --------------------------------------------------------------------------


def _encode(samples: np.ndarray, sample_format: str) -> bytes:
    dtype, width, tag = SAMPLE_FORMATS[sample_format]
    x = np.asarray(samples, dtype=np.float64)
    if tag == _IEEE_FLOAT:
        return x.astype(dtype).tobytes()
    bits = 8 * width
    scale = float(1 << (bits - 1))
    ints = np.clip(np.round(x * scale), -scale, scale - 1).astype(np.int64)
    if width == 1:
        return (ints + 128).astype(np.uint8).tobytes()
    if width == 3:
        return ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return ints.astype(dtype).tobytes()


def wav_bytes(samples: np.ndarray, sample_rate: int, *, sample_format: str = "pcm16") -> bytes:
    """A complete WAV file in memory (plain PCM/IEEE float header)."""
    if sample_format not in SAMPLE_FORMATS:
        raise ValueError(f"sample_format must be one of {sorted(SAMPLE_FORMATS)}, got {sample_format!r}")
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"samples must be 1-D or (frames, channels), got shape {x.shape}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    channels = x.shape[1]
    _, width, tag = SAMPLE_FORMATS[sample_format]
    data = _encode(x.reshape(-1), sample_format)
    block_align = channels * width
    fmt = struct.pack("<HHIIHH", tag, channels, int(sample_rate), int(sample_rate) * block_align,
                      block_align, 8 * width)
    pad = b"\x00" if len(data) % 2 else b""
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data) + len(pad)) + body + data + pad


def write_wav(target: Union[str, "os.PathLike[str]", BinaryIO], samples: np.ndarray, sample_rate: int,
              *, sample_format: str = "pcm16") -> None:
    """Write ``samples`` (float in [-1, 1], 1-D or ``(frames, channels)``) as a WAV.

    PCM formats are clipped to the integer range (the inverse of the decoder's
    scaling, so decode -> encode is lossless). Paths are written to a temporary file
    and renamed, so a crash never leaves a half-written WAV behind.
    """
    blob = wav_bytes(samples, sample_rate, sample_format=sample_format)
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        tmp = f"{path}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as handle:
                handle.write(blob)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    else:
        target.write(blob)
