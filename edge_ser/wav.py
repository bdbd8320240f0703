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
  size is ignored, a data size of ``0xFFFFFFFF`` (streamed) or larger than the file
  means "to the end of the file", a data size of ``0`` too unless a chunk header
  follows it (then the data is empty), a trailing partial frame is dropped, unknown
  chunks are skipped (with or without their pad byte).
* One reader for every source: bytes, paths and pipes go through the same
  :class:`_Reader` and parser, and no decision depends on whether the length of the
  source is known, so the same bytes decode to the same audio from anywhere.
* Sample rates outside :data:`MIN_SAMPLE_RATE`..:data:`MAX_SAMPLE_RATE` are refused: a
  rate is what turns bytes into seconds, so a hostile one multiplies the work.

Decoding is vectorized (``np.frombuffer``; 24-bit through a 4-byte view) and runs in
blocks of at most 1 MB of raw data: :class:`WavReader` hands them out one at a time
(bounded memory for any length, and :meth:`WavReader.rewind` for a second pass), and
:func:`read_wav` collects them into one array.
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from .atomic_write import write_bytes_atomically
from .errors import AudioError

__all__ = ["WavAudio", "WavReader", "open_wav", "read_wav", "read_wav_channels", "write_wav", "SAMPLE_FORMATS",
           "MIN_SAMPLE_RATE", "MAX_SAMPLE_RATE", "MAX_CHANNELS"]

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
MAX_CHANNELS = 256
#: Plausible sample rates (Hz): from narrow-band telephony (4 kHz would be generous) to
#: 384 kHz studio converters. A header outside this range is corrupt or hostile (a
#: 4 KB file "at 1 Hz" would otherwise become half an hour of audio to resample).
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 384000
_STREAMED_SIZES = (0xFFFFFFFF,)
_PIECE = 1 << 20  # bounded read size
_BLOCK_FRAMES = 1 << 16  # frames decoded per block by default
_BLOCK_BYTES = 1 << 20  # raw bytes per block at most (bounds temporaries whatever the channels)


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


class _MemoryStream:
    """A read-only, seekable binary stream over a buffer, without copying it.

    Bytes get the same :class:`_Reader` as files and pipes: one reader, one parser, so
    a header cannot mean one thing in memory and another on disk.
    """

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int = -1) -> memoryview:
        stop = len(self._data) if n is None or n < 0 else min(self._pos + n, len(self._data))
        out = self._data[self._pos:stop]
        self._pos = stop
        return out

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def close(self) -> None:
        pass


class _Reader:
    """Sequential reads from any binary stream, with a small push-back buffer.

    Reads are bounded (at most ``n`` bytes, in pieces of :data:`_PIECE`), so a size
    taken from a header never turns into an allocation larger than what the stream
    really holds. Nothing here depends on whether the stream is seekable: the parser
    gives the same answer for a path, bytes and a pipe. Seeking is used only to skip
    over chunks quickly and to :meth:`rewind` to a remembered position.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pushback = b""
        self._seekable = False
        try:
            if stream.seekable():
                stream.tell()
                self._seekable = True
        except (OSError, AttributeError, ValueError):
            self._seekable = False

    @property
    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        """Position of the next byte :meth:`read` returns (seekable streams only)."""
        return self._stream.tell() - len(self._pushback)

    def seek(self, position: int) -> None:
        self._pushback = b""
        self._stream.seek(position)

    def remaining(self) -> Optional[int]:
        """Bytes left in a seekable stream (a size hint only), or ``None``."""
        if not self._seekable:
            return None
        here = self._stream.tell()
        end = self._stream.seek(0, io.SEEK_END)
        self._stream.seek(here)
        return max(0, end - here) + len(self._pushback)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (fewer only at the end). Never allocates more than is there."""
        if n <= 0:
            return b""
        head, self._pushback = self._pushback[:n], self._pushback[n:]
        n -= len(head)
        parts: List[bytes] = [head] if head else []
        while n > 0:
            piece = self._stream.read(min(n, _PIECE))
            if not piece:
                break
            parts.append(piece)
            n -= len(piece)
        if not parts:
            return b""
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def unread(self, data: bytes) -> None:
        self._pushback = bytes(data) + self._pushback

    def skip(self, n: int) -> None:
        dropped = min(n, len(self._pushback))
        self._pushback = self._pushback[dropped:]
        n -= dropped
        if self._seekable and n > 0:
            left = self.remaining() or 0
            self._stream.seek(min(n, left), io.SEEK_CUR)
            return
        while n > 0:  # pipe: read and discard in bounded pieces
            piece = self._stream.read(min(n, _PIECE))
            if not piece:
                return
            n -= len(piece)


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
    if channels > MAX_CHANNELS:
        fail(f"implausible channel count {channels} (max {MAX_CHANNELS})")
    if rate == 0:
        fail("zero sample rate")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        fail(f"implausible sample rate {rate} Hz (supported: {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz)")
    allowed = (8, 16, 24, 32) if tag == _PCM else (32, 64)
    kind = "PCM" if tag == _PCM else "IEEE float"
    if bits not in allowed:
        fail(f"unsupported bits per sample {bits} for {kind} (supported: {allowed})")
    if block_align != channels * bits // 8:
        fail(f"block align {block_align} inconsistent with {channels} channel(s) of {bits} bits "
             f"(expected {channels * bits // 8})")
    name = (f"pcm{bits}" if tag == _PCM else f"float{bits}")
    return _Format(tag, channels, rate, block_align, bits, name)


def _read_chunks(reader: _Reader, fail) -> Tuple[_Format, Optional[int]]:  # type: ignore[no-untyped-def]
    """Walk the chunk list up to the data chunk's payload.

    Returns the format and how many data bytes follow: a number, or ``None`` for "to
    the end of the stream". The reader is left at the first data byte.
    """
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
            return fmt, _data_length(reader, size)
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


def _data_length(reader: _Reader, size: int) -> Optional[int]:
    """Bytes of sample data the data chunk holds (``None``: to the end of the stream).

    A declared size larger than the stream simply ends early, so ``size`` is an
    upper bound, not an allocation. The decision uses only the bytes that follow,
    never the stream's length, so every kind of source gets the same answer.
    """
    if size in _STREAMED_SIZES:
        return None
    if size == 0:
        # Streamers that never go back to fix the header write 0. Read to the end unless
        # what follows starts like another chunk (then the data chunk is really empty).
        peek = bytes(reader.read(8))
        reader.unread(peek)
        if len(peek) == 8 and _looks_like_chunk_id(peek[:4]):
            return 0
        return None
    return size


# --- decoding --------------------------------------------------------------------------


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


def _downmix(values: np.ndarray) -> np.ndarray:
    """``(frames, channels)`` -> mono float32, the channel average."""
    channels = values.shape[1]
    # Column sums, not values.mean(axis=1): reducing a 2-wide axis is ~100x slower.
    out = values[:, 0].copy()
    for channel in range(1, channels):
        out += values[:, channel]
    if channels > 1:
        out *= np.float32(1.0 / channels)
    return out


class WavReader:
    """An open WAV: the header parsed, the samples read in bounded blocks.

    The one decoder behind :func:`read_wav` and the streaming classifier. ``source``
    is a path, bytes (not copied) or a binary stream read from its current position;
    a path is opened here and closed by :meth:`close` (or ``with``). Every source goes
    through the same reader and parser, so the same bytes give the same audio.

    :meth:`blocks` yields float32 blocks of at most ``block_frames`` frames, so memory
    stays bounded whatever the file's length or header claims. For a seekable source
    (a path, bytes, a regular file) :meth:`rewind` goes back to the first sample, so a
    caller can read the audio twice (two-pass normalization) without holding it.
    """

    def __init__(self, source: Source, *, name: Optional[str] = None) -> None:
        self.name = _source_name(source, name)
        self._owned: Optional[BinaryIO] = None
        if isinstance(source, (str, os.PathLike)):
            try:
                self._owned = stream = open(source, "rb")  # noqa: SIM115  (closed by close())
            except OSError as exc:
                raise AudioError(f"cannot read: {exc.strerror or exc}", self.name) from None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            stream = _MemoryStream(memoryview(source).cast("B"))  # type: ignore[assignment]
        elif isinstance(source, io.TextIOBase):
            raise AudioError("opened in text mode: open the file in binary mode ('rb')", self.name)
        elif hasattr(source, "read"):
            stream = source  # type: ignore[assignment]
        else:
            raise AudioError(f"not a WAV source: expected a path, bytes or a binary file object, "
                             f"got {type(source).__name__}", self.name)
        try:
            self._reader = _Reader(stream)
            fmt, self._data_bytes = self._guard(lambda: _read_chunks(self._reader, self._fail))
            self._start = self._reader.tell() if self._reader.seekable else None
        except BaseException:
            self.close()
            raise
        self._format = fmt
        self._left = self._data_bytes
        self._eof = False

    # -- what the file is ------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self._format.sample_rate

    @property
    def channels(self) -> int:
        return self._format.channels

    @property
    def format(self) -> str:
        """``"pcm8"``, ``"pcm16"``, ``"pcm24"``, ``"pcm32"``, ``"float32"`` or ``"float64"``."""
        return self._format.name

    @property
    def seekable(self) -> bool:
        """True when :meth:`rewind` works (paths, bytes, regular files)."""
        return self._start is not None

    def frames_hint(self) -> Optional[int]:
        """Frames left to read when the source's size is known, else ``None`` (a hint for
        preallocation; the blocks are what counts)."""
        if self._eof:
            return 0
        remaining = self._reader.remaining()
        if remaining is None:
            return None
        if self._left is not None:
            remaining = min(remaining, self._left)
        return remaining // self._format.block_align

    # -- reading ---------------------------------------------------------------------------
    def _fail(self, reason: str) -> None:
        raise AudioError(reason, self.name)

    def _guard(self, action):  # type: ignore[no-untyped-def]
        try:
            return action()
        except AudioError:
            raise
        except OSError as exc:
            raise AudioError(f"cannot read: {exc.strerror or exc}", self.name) from None

    def read_block(self, block_frames: int = _BLOCK_FRAMES, *, mono: bool = True) -> Optional[np.ndarray]:
        """The next block of at most ``block_frames`` frames, or ``None`` at the end.

        Mono (channels averaged) 1-D float32 by default, else ``(frames, channels)``.
        A trailing partial frame is dropped.
        """
        if self._eof:
            return None
        fmt = self._format
        want = max(1, min(int(block_frames), _BLOCK_BYTES // fmt.block_align)) * fmt.block_align
        if self._left is not None:
            want = min(want, self._left)
        raw = self._guard(lambda: self._reader.read(want)) if want > 0 else b""
        if self._left is not None:
            self._left -= len(raw)
        if len(raw) < want or want == 0 or self._left == 0:
            self._eof = True
        n = len(raw) // fmt.block_align
        if n == 0:
            self._eof = True
            return None
        values = _decode_block(memoryview(raw)[: n * fmt.block_align], fmt.tag, fmt.bits // 8)
        values = values.reshape(n, fmt.channels)
        return _downmix(values) if mono else values

    def blocks(self, block_frames: int = _BLOCK_FRAMES, *, mono: bool = True) -> Iterator[np.ndarray]:
        """Iterate over the remaining samples in blocks (see :meth:`read_block`)."""
        while True:
            block = self.read_block(block_frames, mono=mono)
            if block is None:
                return
            yield block

    def rewind(self) -> None:
        """Go back to the first sample (seekable sources only; else ``io.UnsupportedOperation``)."""
        if self._start is None:
            raise io.UnsupportedOperation(f"{self.name}: not seekable, cannot read it twice")
        self._guard(lambda: self._reader.seek(self._start))  # type: ignore[arg-type]
        self._left = self._data_bytes
        self._eof = False

    def read_all(self, *, mono: bool = True) -> np.ndarray:
        """Everything left, as one array (its size is what the stream really holds)."""
        hint = self.frames_hint()
        shape_tail: Tuple[int, ...] = () if mono else (self.channels,)
        if hint is not None:
            out = np.empty((hint, *shape_tail), dtype=np.float32)
            filled = 0
            for block in self.blocks(mono=mono):
                out[filled:filled + len(block)] = block
                filled += len(block)
            return out[:filled]
        parts = list(self.blocks(mono=mono))
        if not parts:
            return np.zeros((0, *shape_tail), dtype=np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def close(self) -> None:
        """Close the file this reader opened (a stream passed in stays open)."""
        owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()

    def __enter__(self) -> "WavReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_wav(source: Source, *, name: Optional[str] = None) -> WavReader:
    """Parse a WAV's header and return a :class:`WavReader` positioned at its first sample."""
    return WavReader(source, name=name)


def _read(source: Source, name: Optional[str], mono: bool) -> WavAudio:
    with WavReader(source, name=name) as reader:
        samples = reader.read_all(mono=mono)
        return WavAudio(samples, reader.sample_rate, reader.channels, reader.format)


def read_wav(source: Source, *, name: Optional[str] = None) -> WavAudio:
    """Decode a WAV file, bytes or binary stream to float32 mono in [-1, 1].

    ``name`` labels the source in error messages (defaults to the path, the stream's
    ``name`` or ``<bytes>``). Raises :class:`AudioError` for anything that is not a
    decodable WAV. The whole clip is returned in memory: to process a long file in
    bounded memory use :class:`WavReader` (or :mod:`edge_ser.classify`, which does).
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
        write_bytes_atomically(target, blob)
    else:
        target.write(blob)
