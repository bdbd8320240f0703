"""What is checked for one fuzz input. A target raises :class:`Finding` (or lets an
unexpected exception escape) when the code misbehaves; the documented error for bad
input, :class:`~edge_ser.errors.EdgeSerError`, is a pass.

Targets (``TARGETS``):

* ``wav`` -- :func:`~edge_ser.wav.read_wav` from bytes, a path, a seekable stream, a
  buffered pipe-like stream and a raw stream that returns short reads must give one
  answer (same error reason, or same rate, channels, format and samples), and so must
  :class:`~edge_ser.wav.WavReader` read in small blocks and read again after ``rewind``.
  Samples are finite, float32 and within [-1, 1].
* ``load_audio`` -- decode + resample to a model rate: the asked rate, a length that
  follows from the decoded frames, finite samples in [-1, 1], and the streaming
  resampler fed in uneven chunks agrees with the one-shot one. Run under the worker's
  address-space cap, so a header that makes the work huge is a ``MemoryError`` finding.
* ``classify`` -- the whole pipeline (decode, resample, features, windows, the shipped
  model): bytes, a path, a pipe and the decoded samples give the same answer (label,
  probabilities within 1e-6, windows, duration), and ``windows=True`` windows average
  to the clip's probabilities.
* ``http`` -- raw request bytes to the real dashboard server on loopback (token set, an
  upload classifier with the default model): every request gets a status line, never a
  500, errors are JSON, a ``Set-Cookie`` carries only the configured token, no response
  header outside the set the server sends, ambiguous framing (two Host or Content-Length
  headers, a length that is not ASCII digits) is refused, and the server still answers.
"""

from __future__ import annotations

import io
import os
import random
import re
import socket
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edge_ser.errors import EdgeSerError

__all__ = ["Finding", "Target", "TARGETS", "make_target"]


class Finding(Exception):
    """A broken property. ``kind`` groups findings (one report per kind and place)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind}: {detail}" if detail else kind)


class Target:
    """One property over bytes. ``setup``/``close`` hold what is shared across inputs."""

    name = ""

    def setup(self) -> None:
        pass

    def check(self, data: bytes) -> None:
        raise NotImplementedError

    def generate(self, rng: random.Random) -> bytes:
        """A structured input for engines that generate (hypothesis), from ``rng``."""
        raise NotImplementedError

    def seeds(self) -> List[bytes]:
        """The starting corpus for engines that mutate (atheris)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


# --- WAV -------------------------------------------------------------------------------


class _RawShortReads(io.RawIOBase):
    """A non-seekable raw stream that hands out 1..7 bytes per read, like a slow pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._step = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._step = self._step % 7 + 1
        n = min(len(buffer), self._step, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


class _Pipe(io.BufferedReader):
    """``sys.stdin.buffer`` over a pipe: buffered, full reads, not seekable."""

    def __init__(self, data: bytes) -> None:
        super().__init__(_RawShortReads(data), buffer_size=io.DEFAULT_BUFFER_SIZE)

    def seekable(self) -> bool:
        return False


def _outcome(read: Callable[[], Any]) -> Tuple[str, Any]:
    """``("ok", (rate, channels, format, samples))`` or ``("error", reason)``."""
    try:
        audio = read()
    except EdgeSerError as exc:
        return "error", f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return "ok", audio


def _check_samples(where: str, samples: np.ndarray) -> None:
    if samples.dtype != np.float32:
        raise Finding("samples are not float32", f"{where}: {samples.dtype}")
    if samples.size and not np.isfinite(samples).all():
        raise Finding("non-finite samples", where)
    if samples.size and float(np.abs(samples).max()) > 1.0:
        raise Finding("samples outside [-1, 1]", f"{where}: max |x| = {float(np.abs(samples).max())}")


class WavTarget(Target):
    """Every way of reading the same bytes gives the same answer."""

    name = "wav"

    def setup(self) -> None:
        from edge_ser import wav

        self.wav = wav
        self._dir = tempfile.TemporaryDirectory(prefix="edge-ser-fuzz-")
        self._path = os.path.join(self._dir.name, "input.wav")

    def close(self) -> None:
        self._dir.cleanup()

    def generate(self, rng: random.Random) -> bytes:
        return _wav_input(rng)

    def seeds(self) -> List[bytes]:
        from .generate import wav_seeds

        return wav_seeds()

    def _read(self, source: Any) -> Tuple[int, int, str, np.ndarray]:
        audio = self.wav.read_wav_channels(source, name="<fuzz>")
        return audio.sample_rate, audio.channels, audio.format, audio.samples

    def _blocks(self, data: bytes, block_frames: int) -> Tuple[int, int, str, np.ndarray]:
        """WavReader in small blocks, then again after rewind: both passes must be equal."""
        with self.wav.WavReader(data, name="<fuzz>") as reader:
            first = [b for b in reader.blocks(block_frames, mono=False)]
            if any(len(b) > block_frames for b in first):
                raise Finding("WavReader block larger than asked", f"block_frames={block_frames}")
            reader.rewind()
            second = list(reader.blocks(block_frames * 3 + 1, mono=False))
            shape = (0, reader.channels)
            one = np.concatenate(first) if first else np.zeros(shape, np.float32)
            two = np.concatenate(second) if second else np.zeros(shape, np.float32)
            if not np.array_equal(one, two):
                raise Finding("WavReader rewind gives other samples", f"{len(one)} vs {len(two)} frames")
            return reader.sample_rate, reader.channels, reader.format, one

    def _stream_blocks(self, stream: Any, block_frames: int) -> Tuple[int, int, str, np.ndarray]:
        """WavReader in small blocks from a non-seekable stream (one pass only)."""
        with self.wav.WavReader(stream, name="<fuzz>") as reader:
            blocks = list(reader.blocks(block_frames, mono=False))
            samples = np.concatenate(blocks) if blocks else np.zeros((0, reader.channels), np.float32)
            return reader.sample_rate, reader.channels, reader.format, samples

    def check(self, data: bytes) -> None:
        with open(self._path, "wb") as f:
            f.write(data)
        block_frames = 1 + len(data) % 13
        readers: Dict[str, Callable[[], Any]] = {
            "bytes": lambda: self._read(data),
            "path": lambda: self._read(self._path),
            "BytesIO (seekable)": lambda: self._read(io.BytesIO(data)),
            "buffered pipe": lambda: self._read(_Pipe(data)),
            "raw stream, short reads": lambda: self._read(_RawShortReads(data)),
        }
        if hasattr(self.wav, "WavReader"):
            readers[f"WavReader blocks of {block_frames}"] = lambda: self._blocks(data, block_frames)
            readers[f"WavReader blocks of {block_frames}, short reads"] = \
                lambda: self._stream_blocks(_RawShortReads(data), block_frames)
        outcomes = {name: _outcome(read) for name, read in readers.items()}
        ref_name, (ref_kind, ref) = next(iter(outcomes.items()))
        for name, (kind, value) in outcomes.items():
            if kind != ref_kind:
                raise Finding("sources disagree (error vs audio)",
                              f"{ref_name}: {_describe(ref_kind, ref)}; {name}: {_describe(kind, value)}")
            if kind == "error" and value != ref:
                raise Finding("sources disagree (error reason)", f"{ref_name}: {ref}; {name}: {value}")
            if kind == "ok":
                if value[:3] != ref[:3]:
                    raise Finding("sources disagree (rate/channels/format)", f"{ref_name}: {ref[:3]}; {name}: {value[:3]}")
                if value[3].shape != ref[3].shape or not np.array_equal(value[3], ref[3]):
                    raise Finding("sources disagree (samples)",
                                  f"{ref_name}: {ref[3].shape}; {name}: {value[3].shape}")
        if ref_kind == "ok":
            _check_samples("read_wav_channels", ref[3])


def _wav_input(rng: random.Random) -> bytes:
    from .generate import build_wav, mutate

    data = build_wav(rng)
    return mutate(rng, data) if rng.random() < 0.3 else data


def _describe(kind: str, value: Any) -> str:
    if kind == "error":
        return value
    rate, channels, fmt, samples = value
    return f"{fmt} {channels} ch {rate} Hz, {len(samples)} frames"


# --- load_audio ------------------------------------------------------------------------


class LoadAudioTarget(Target):
    """Decode and resample: bounded work, the asked rate, stream == one shot."""

    name = "load_audio"
    RATES = (16000, 8000, 22050, 44100)

    def setup(self) -> None:
        from edge_ser.audio import load_audio
        from edge_ser.resample import StreamResampler, resample_factors
        from edge_ser.wav import read_wav

        from edge_ser import wav

        self.load_audio, self.read_wav = load_audio, read_wav
        self.min_rate = int(getattr(wav, "MIN_SAMPLE_RATE", 4000))  # the plausible-rate floor (issue 11)
        self.StreamResampler, self.resample_factors = StreamResampler, resample_factors

    def generate(self, rng: random.Random) -> bytes:
        return _wav_input(rng)

    def seeds(self) -> List[bytes]:
        from .generate import wav_seeds

        return wav_seeds()

    def check(self, data: bytes) -> None:
        target = self.RATES[len(data) % len(self.RATES)]
        try:
            samples, rate = self.load_audio(data, target, name="<fuzz>")
        except EdgeSerError:
            return
        if rate != target:
            raise Finding("load_audio returned another rate", f"asked {target}, got {rate}")
        if samples.ndim != 1:
            raise Finding("load_audio samples are not 1-D", str(samples.shape))
        _check_samples("load_audio", samples)
        # Work bounded by the input: no accepted rate turns one byte (an 8-bit mono frame) into
        # more than target / MIN_SAMPLE_RATE output samples, so more means a header multiplied it.
        per_byte = -(-target // self.min_rate)
        if len(samples) > per_byte * len(data) + 2:
            raise Finding("output out of proportion to the input",
                          f"{len(data)} bytes -> {len(samples)} samples at {target} Hz "
                          f"(at most {per_byte} per byte with rates >= {self.min_rate} Hz)")
        decoded = self.read_wav(data, name="<fuzz>")
        up, down = self.resample_factors(decoded.sample_rate, target)
        expected = -(-len(decoded.samples) * up // down)  # ceil(frames * up / down)
        if len(samples) != expected:
            raise Finding("load_audio length does not follow from the frames",
                          f"{len(decoded.samples)} frames at {decoded.sample_rate} Hz -> {len(samples)} at {target} "
                          f"(expected {expected})")
        stream = self.StreamResampler(decoded.sample_rate, target)
        rng = random.Random(len(data))
        parts, pos, x = [], 0, decoded.samples
        while pos < len(x):
            step = rng.choice((1, 7, 160, 1000, 4096))
            parts.append(stream.process(x[pos:pos + step]))
            pos += step
        parts.append(stream.flush())
        streamed = np.clip(np.concatenate(parts), -1.0, 1.0)
        if streamed.shape != samples.shape or not np.allclose(streamed, samples, atol=1e-6):
            raise Finding("StreamResampler in chunks differs from load_audio",
                          f"{decoded.sample_rate}->{target} Hz: {streamed.shape} vs {samples.shape}")


# --- classify --------------------------------------------------------------------------


class ClassifyTarget(Target):
    """The whole pipeline gives one answer per clip, however the clip arrives."""

    name = "classify"

    def setup(self) -> None:
        from edge_ser.classify import Classifier
        from edge_ser.wav import read_wav

        self.classifier = Classifier(None, num_threads=1)  # the shipped model, whichever it is
        self.read_wav = read_wav
        self._dir = tempfile.TemporaryDirectory(prefix="edge-ser-fuzz-")
        self._path = os.path.join(self._dir.name, "input.wav")

    def close(self) -> None:
        self._dir.cleanup()

    def generate(self, rng: random.Random) -> bytes:
        from .generate import build_wav, mutate

        # now and then longer than a window (3 s), so the two-pass and window paths run
        data = build_wav(rng, max_data=160_000 if rng.random() < 0.1 else 4096)
        return mutate(rng, data) if rng.random() < 0.2 else data

    def seeds(self) -> List[bytes]:
        from .generate import wav_seeds

        return wav_seeds()

    def _signal(self, data: bytes) -> Any:
        audio = self.read_wav(data, name="<fuzz>")
        return self.classifier.classify_signal(audio.samples, audio.sample_rate, "<fuzz>")

    def check(self, data: bytes) -> None:
        with open(self._path, "wb") as f:
            f.write(data)
        c = self.classifier
        ways: Dict[str, Callable[[], Any]] = {
            "bytes": lambda: c.classify_file(data, name="<fuzz>"),
            "path": lambda: c.classify_file(self._path),
            "buffered pipe": lambda: c.classify_file(_Pipe(data), name="<fuzz>"),
            "samples (classify_signal)": lambda: self._signal(data),
            "bytes, windows=True": lambda: c.classify_file(data, name="<fuzz>", windows=True),
        }
        outcomes = {name: _outcome(way) for name, way in ways.items()}
        ref_name, (ref_kind, ref) = next(iter(outcomes.items()))
        for name, (kind, value) in outcomes.items():
            if kind != ref_kind:
                raise Finding("classify: sources disagree (error vs answer)",
                              f"{ref_name}: {_summary(ref_kind, ref)}; {name}: {_summary(kind, value)}")
            if kind == "ok":
                a, b = np.array(list(ref.probabilities.values())), np.array(list(value.probabilities.values()))
                # an int8 output rounds each probability to 1/256: the sum may be off by half that per label
                if not np.all(np.isfinite(b)) or (b < 0).any() or abs(float(b.sum()) - 1.0) > len(b) / 512 + 1e-6:
                    raise Finding("classify: probabilities not a distribution", f"{name}: {b}")
                if (value.window_count, round(value.duration, 6)) != (ref.window_count, round(ref.duration, 6)) \
                        or not np.allclose(a, b, atol=1e-6, rtol=0):
                    raise Finding("classify: sources disagree (answer)",
                                  f"{ref_name}: {_summary(kind, ref)}; {name}: {_summary(kind, value)}")
        kind, windowed = outcomes["bytes, windows=True"]
        if kind == "ok" and windowed.windows:
            mean = np.mean([list(w.probabilities.values()) for w in windowed.windows], axis=0)
            if len(windowed.windows) != windowed.window_count or \
                    not np.allclose(mean, list(windowed.probabilities.values()), atol=1e-6, rtol=0):
                raise Finding("classify: clip probabilities are not the mean of its windows",
                              f"{len(windowed.windows)} windows, window_count {windowed.window_count}")


def _summary(kind: str, value: Any) -> str:
    if kind == "error":
        return value
    top = max(value.probabilities.values())
    return f"{value.label} {top:.6f}, {value.window_count} windows, {value.duration:.4f} s"


# --- HTTP ------------------------------------------------------------------------------

TOKEN = "fuzz-token-0123456789abcdef"
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3})(?: [^\r\n]*)?\r\n")
_HEADER = re.compile(rb"^([!#$%&'*+.^_`|~0-9A-Za-z-]+): ?([^\r\n]*)$")
#: Every response header name the dashboard server sends (lower case).
KNOWN_HEADERS = frozenset({
    "server", "date", "content-type", "content-length", "cache-control", "connection", "x-content-type-options",
    "content-security-policy", "referrer-policy", "x-frame-options", "set-cookie", "www-authenticate",
    "retry-after", "x-accel-buffering", "allow", "location", "vary", "pragma", "expires",
    "cross-origin-opener-policy", "cross-origin-resource-policy", "permissions-policy",
})


class HttpTarget(Target):
    """The dashboard server answers every request properly and stays up."""

    name = "http"
    READ_TIMEOUT = 30.0

    def setup(self) -> None:
        from edge_ser.outputs.http import DashboardServer, HttpConfig

        # The default timeouts: every request ends in EOF (the client shuts its side down), so a body
        # shorter than announced is over at once, and a short timeout would only turn a busy
        # machine's scheduling delays into findings.
        config = HttpConfig(listen="127.0.0.1:0", token=TOKEN, classify_queue=0)

        def classifier() -> Any:
            from edge_ser.classify import Classifier

            return Classifier(None, num_threads=1)

        self.server = DashboardServer(config, classifier_factory=classifier, info={"device": "fuzz"}).start()
        self.address = ("127.0.0.1", self.server.address[1])
        self._requests = 0

    def close(self) -> None:
        self.server.close()

    def generate(self, rng: random.Random) -> bytes:
        from .generate import build_request, build_wav

        return build_request(rng, TOKEN, lambda r: build_wav(r, max_data=2048))

    def seeds(self) -> List[bytes]:
        from .generate import request_seeds

        return request_seeds(TOKEN)

    def _exchange(self, data: bytes) -> Tuple[bytes, bool]:
        """The server's answer to ``data``, and whether the connection ended in a reset."""
        with socket.create_connection(self.address, timeout=self.READ_TIMEOUT) as sock:
            reset = False
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)  # the request is all there is: the server sees EOF
            except OSError:
                reset = True  # the server answered and closed before reading everything (the reset
                # is reported here, and recv then sees a plain end): read whatever answer arrived
            chunks, size = [], 0
            while size < 1 << 20:
                try:
                    piece = sock.recv(65536)
                except ConnectionResetError:
                    reset = True
                    break
                except socket.timeout:
                    raise Finding("no answer", f"nothing more after {self.READ_TIMEOUT:.0f} s "
                                               f"({size} bytes so far)") from None
                if not piece:
                    break
                chunks.append(piece)
                size += len(piece)
                if b"text/event-stream" in b"".join(chunks)[:4096] and b"\r\n\r\n" in b"".join(chunks):
                    break  # a stream never ends by itself
            return b"".join(chunks), reset

    def check(self, data: bytes) -> None:
        answer, reset = self._exchange(data)
        self._requests += 1
        if not answer:
            if not _request_words(data):
                return  # a blank line is no request: nothing asked, nothing answered
            if reset:
                # The server closed with request bytes unread (an early answer without draining the
                # body): the kernel's RST can discard the answer before the client reads it. Whether
                # it does is timing, so this kind is reported by campaigns, not judged by tests.
                raise Finding("connection reset before a response")
            raise Finding("connection closed without a response")
        match = _STATUS.match(answer)
        if not match:
            raise Finding("malformed status line", repr(answer[:80]))
        code = int(match.group(1))
        if code == 500:  # 501 (method), 503 (busy), 505 (version) are answers; 500 is a crash
            raise Finding("HTTP 500", repr(answer[:200]))
        head, _, body = answer.partition(b"\r\n\r\n")
        headers: Dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:
            m = _HEADER.match(line)
            if not m:
                raise Finding("malformed response header line", repr(line[:100]))
            name = m.group(1).decode("ascii").lower()
            if name not in KNOWN_HEADERS:
                raise Finding("unexpected response header", repr(line[:100]))
            headers[name] = m.group(2).decode("latin-1")
        violation = _framing_violation(data)
        if violation and code not in _REFUSALS:
            raise Finding("framing violation not refused", f"{violation}: HTTP {code}")
        cookie = headers.get("set-cookie")
        if cookie is not None and not cookie.startswith(f"edge_ser_token={TOKEN};"):
            raise Finding("Set-Cookie with a value that is not the configured token", cookie[:100])
        # the one designed non-JSON error: the page a browser gets for the dashboard without its token
        head = _request_words(data)[:1] == ["HEAD"]  # HEAD answers have no body
        dashboard_401 = code == 401 and headers.get("content-type", "").startswith("text/html") \
            and (head or b"token" in body) and _request_path(data).startswith("/")
        if code >= 400 and not dashboard_401:
            if not headers.get("content-type", "").startswith("application/json"):
                raise Finding("error response is not JSON", f"HTTP {code} {headers.get('content-type')!r}")
            if not head:
                import json

                try:
                    json.loads(body.decode("utf-8"))
                except ValueError:
                    raise Finding("error body is not JSON", repr(body[:100])) from None
        if self._requests % 64 == 0:
            self._alive()

    def _alive(self) -> None:
        probe = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
        answer, _ = self._exchange(probe)
        if not answer.startswith(b"HTTP/1.0 200") and not answer.startswith(b"HTTP/1.1 200"):
            raise Finding("server no longer answers /healthz", repr(answer[:100]))


#: Answers that refuse a request before acting on it (its line, its size, its framing, busy).
_REFUSALS = frozenset({400, 408, 414, 431, 501, 503, 505})


def _request_head(data: bytes) -> Tuple[List[bytes], bool]:
    """The request line and header lines as RFC 9112 lets a server read them, and whether a blank
    line ended them.

    One empty line before the request line is skipped (section 2.2), and a bare LF ends a line
    as CRLF does (a CR before the LF is dropped): the dashboard server reads requests so, and
    judging them any other way reads header lines it never sees (a ``Host`` after a bare-LF
    blank line is in the body, not a second ``Host``).
    """
    lines = data.split(b"\n")
    if lines[0] in (b"", b"\r") and len(lines) > 1:
        lines = lines[1:]
    head: List[bytes] = []
    for line in lines[:-1]:  # the last piece has no LF: not a whole line
        line = line[:-1] if line.endswith(b"\r") else line
        if not line:
            return head, True
        head.append(line)
    head += [lines[-1]] if lines[-1] else []
    return head, False


def _framing_violation(data: bytes) -> Optional[str]:
    """What makes this request's framing ambiguous (issue 11: answer 400), or None.

    Only what must be refused whatever else the parser allows: two Host or two
    Content-Length headers, or a Content-Length that is not ASCII digits once the
    surrounding spaces are gone (``+12``, ``1_2``, Arabic-Indic digits, ``12, 12``).
    """
    lines, ended = _request_head(data)
    if not ended or not lines:
        return None
    words = lines[0].decode("latin-1").split()
    if len(words) != 3 or not re.fullmatch(r"HTTP/1\.[01]", words[2]):
        return None  # the request line is refused or read another way first
    hosts = lengths = 0
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or name != name.strip():
            return None  # a malformed line: refused as such (not judged here)
        key = name.lower()
        if key == b"host":
            hosts += 1
        elif key == b"content-length":
            lengths += 1
            digits = value.strip(b" \t")
            if not (digits.isdigit() and digits.isascii()):
                return f"Content-Length {value.decode('latin-1')!r}"
    if hosts > 1:
        return "two Host headers"
    if lengths > 1:
        return "two Content-Length headers"
    return None


def _request_words(data: bytes) -> List[str]:
    """The request line split on any whitespace (latin-1), read as :func:`_request_head` reads it."""
    lines, _ = _request_head(data)
    return lines[0].decode("latin-1").split() if lines else []


def _request_path(data: bytes) -> str:
    words = _request_words(data)
    return words[1].split("?", 1)[0] if len(words) > 1 else ""


TARGETS: Dict[str, Callable[[], Target]] = {"wav": WavTarget, "load_audio": LoadAudioTarget,
                                             "classify": ClassifyTarget, "http": HttpTarget}


def make_target(name: str) -> Target:
    target = TARGETS[name]()
    target.setup()
    return target
