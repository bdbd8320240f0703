"""Where audio comes from: a microphone, a WAV file, or raw PCM on stdin.

Every source delivers mono float32 blocks (:class:`Block`) at its own ``sample_rate``
through one small interface, :class:`AudioSource`::

    source.open()                    # may raise SourceError
    block = source.read(timeout)     # Block (possibly empty = nothing yet), None = end of stream
    source.close()

``live`` sources (a microphone) cannot be paused: when the worker falls behind, the
capture queue drops their oldest audio. Non-live sources (files, stdin) are simply
read more slowly (back-pressure), so nothing is lost.

pyaudio is imported only when a microphone is opened, so files and stdin work on a
machine without PortAudio.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Deque, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from ..errors import AudioError, EdgeSerError

#: PortAudio error numbers (pyaudio raises OSError(errno, text)).
PA_INVALID_SAMPLE_RATE = -9997
PA_INVALID_CHANNEL_COUNT = -9998


class SourceError(EdgeSerError):
    """Audio cannot be read right now. ``retryable``: a device that may come back."""

    def __init__(self, reason: str, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass
class Block:
    """Mono float32 audio with the moment its last sample became available."""

    samples: np.ndarray
    arrival: float  # time.monotonic()
    wall: float  # time.time() at the same moment
    skipped: int = 0  # frames lost right before this block (source overflow): a stream-time gap, counted dropped

    @staticmethod
    def empty() -> "Block":
        return Block(np.zeros(0, np.float32), time.monotonic(), time.time())


def to_mono(interleaved: np.ndarray, channels: int, channel: int) -> np.ndarray:
    """(frames*channels,) -> (frames,): one channel, or the average of all (``channel`` = -1)."""
    if channels == 1:
        return interleaved
    frames = interleaved[: len(interleaved) // channels * channels].reshape(-1, channels)
    if channel >= 0:
        return np.ascontiguousarray(frames[:, channel])
    return frames.mean(axis=1, dtype=np.float32)


def pcm16_to_float(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) * np.float32(1.0 / 32768.0)


class AudioSource:
    """Interface of all sources; see the module docstring."""

    name: str = "source"
    sample_rate: int = 0
    channels: int = 1
    live: bool = False

    def open(self) -> None:
        raise NotImplementedError

    def read(self, timeout: float) -> Optional[Block]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """Facts for status events."""
        return {"source": type(self).__name__, "device": self.name, "sample_rate": self.sample_rate,
                "channels": self.channels}


# -- microphone ------------------------------------------------------------------------------------

def _import_pyaudio() -> Any:
    try:
        import pyaudio  # type: ignore[import-not-found]
    except ImportError:
        raise SourceError("microphone capture needs pyaudio: pip install pyaudio "
                          "(and the PortAudio library, e.g. apt install libportaudio2)", retryable=False) from None
    return pyaudio


#: One redirection of fd 2 at a time: save/restore pairs from two threads must not interleave.
_NOISE_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_noise_hidden() -> Iterator[None]:
    """Hide what ALSA, JACK and PortAudio print on fd 2 while PortAudio starts or opens a stream.

    Starting PortAudio probes every PCM and JACK ("Cannot connect to server socket", unknown
    PCM cards), and a failed open prints its own lines ("ALSA lib pcm_file.c: ... failed",
    "Expression ... failed in pa_linux_alsa.c"). Harmless, but a daemon retrying an unplugged
    microphone would repeat them into the journal every few seconds. So every start and
    stream open goes through here, the first open and every reopen alike; why an open failed
    still reaches the log from PortAudio's error code. ``EDGE_SER_PORTAUDIO_DEBUG=1`` shows
    everything. Only fd 2 is redirected: the daemon's own log lines go to a copy of it
    (:func:`edge_ser.daemon.cli.private_stderr`), so other threads' messages still get through.
    """
    if os.environ.get("EDGE_SER_PORTAUDIO_DEBUG"):
        yield
        return
    with _NOISE_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def list_input_devices() -> List[Dict[str, Any]]:
    """Input devices as PortAudio sees them (index, name, channels, default rate, default?)."""
    pyaudio = _import_pyaudio()
    with _native_noise_hidden():
        pa = pyaudio.PyAudio()
    try:
        try:
            default_index = pa.get_default_input_device_info()["index"]
        except (IOError, OSError):
            default_index = None
        devices = []
        for i in range(pa.get_device_count()):
            info = pa.get_device_info_by_index(i)
            if int(info.get("maxInputChannels", 0)) <= 0:
                continue
            host = pa.get_host_api_info_by_index(info["hostApi"])["name"]
            devices.append({
                "index": i,
                "name": info["name"],
                "channels": int(info["maxInputChannels"]),
                "default_rate": int(info["defaultSampleRate"]),
                "host_api": host,
                "default": i == default_index,
            })
        return devices
    finally:
        pa.terminate()


def find_input_device(devices: Sequence[Dict[str, Any]], spec: Union[int, str]) -> Dict[str, Any]:
    """Pick a device by index, exact name, or case-insensitive name substring."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        for d in devices:
            if d["index"] == index:
                return d
        raise SourceError(f"no input device with index {index}")
    if spec == "":
        for d in devices:
            if d["default"]:
                return d
        if devices:
            return devices[0]
        raise SourceError("no input device found")
    wanted = spec.lower()
    exact = [d for d in devices if d["name"].lower() == wanted]
    if exact:
        return exact[0]
    partial = [d for d in devices if wanted in d["name"].lower()]
    if not partial:
        names = ", ".join(repr(d["name"]) for d in devices) or "none"
        raise SourceError(f"no input device matching {spec!r} (inputs: {names})")
    return partial[0]


def candidate_rates(requested: int, device_default: int) -> List[int]:
    """Rates to try in order: the one asked for, the device's default, 48 kHz, 44.1 kHz."""
    out: List[int] = []
    for rate in (requested, device_default, 48000, 44100):
        if rate > 0 and rate not in out:
            out.append(rate)
    return out


class MicrophoneSource(AudioSource):
    """A PortAudio input stream in callback mode.

    The callback (PortAudio's thread) only converts and appends to a small bounded
    deque, so it never blocks; PortAudio's own overflow flag (``paInputOverflow``) is
    counted in ``overflows``. A stream that stops delivering for ``stall_seconds`` or
    goes inactive is reported as lost (SourceError), and the capture loop reopens it.
    A fresh PyAudio instance per open re-scans devices, so a re-plugged USB
    microphone is found again.
    """

    live = True
    CLOSE_TIMEOUT = 1.0
    #: Streams whose close is still stuck in the driver; no new stream is opened beyond this,
    #: so a driver that hangs every stream cannot make the daemon leak a thread per retry.
    MAX_STUCK_CLOSES = 3

    def __init__(self, device: Union[int, str] = "", rate: int = 16000, channels: int = 1, channel: int = -1,
                 chunk_ms: int = 50, stall_seconds: float = 2.0) -> None:
        self.device_spec = device
        self.requested_rate = rate
        self.requested_channels = channels
        self.channel = channel
        self.chunk_ms = chunk_ms
        self.stall_seconds = stall_seconds
        self.name = str(device) if device != "" else "default"
        self.overflows = 0
        self.abandoned_streams = 0
        self._generation = 0  # callbacks of an abandoned stream must not feed the new one
        self._stuck: List[threading.Thread] = []
        self._pa: Any = None
        self._stream: Any = None
        self._blocks: Deque[Block] = deque()
        self._max_blocks = 1
        self._ready = threading.Condition()
        self._last_data = 0.0
        self._pyaudio: Any = None

    def open(self) -> None:
        pyaudio = self._pyaudio = _import_pyaudio()
        self.close()
        self._stuck = [t for t in self._stuck if t.is_alive()]
        if len(self._stuck) >= self.MAX_STUCK_CLOSES:
            raise SourceError(f"{len(self._stuck)} earlier streams are still stuck in the audio driver; "
                              "not opening another until they finish")
        with _native_noise_hidden():
            self._pa = pyaudio.PyAudio()
            try:
                devices = self._devices()
                info = find_input_device(devices, self.device_spec)
                self.name = info["name"]
                self._open_stream(info)
            except SourceError:
                self.close()
                raise
            except Exception as exc:  # PortAudio errors are OSError/IOError with codes
                self.close()
                raise SourceError(f"cannot open input device {self.name!r}: {exc}") from None
        self._last_data = time.monotonic()

    def _devices(self) -> List[Dict[str, Any]]:
        try:
            default_index = self._pa.get_default_input_device_info()["index"]
        except (IOError, OSError):
            default_index = None
        out = []
        for i in range(self._pa.get_device_count()):
            d = self._pa.get_device_info_by_index(i)
            if int(d.get("maxInputChannels", 0)) > 0:
                out.append({"index": i, "name": d["name"], "channels": int(d["maxInputChannels"]),
                            "default_rate": int(d["defaultSampleRate"]), "default": i == default_index})
        return out

    def _open_stream(self, info: Dict[str, Any]) -> None:
        pyaudio = self._pyaudio
        channel_options = [self.requested_channels]
        if info["channels"] not in channel_options:
            channel_options.append(min(info["channels"], 64))
        last_error: Optional[BaseException] = None
        self._generation += 1
        generation = self._generation

        def callback(in_data: bytes, frame_count: int, time_info: Any, status: int) -> Any:
            return self._callback(generation, in_data, status)

        for channels in channel_options:
            if self.channel >= channels:
                last_error = SourceError(f"channel {self.channel} requested but {info['name']!r} is opened with "
                                         f"{channels} channel(s)", retryable=False)
                continue
            for rate in candidate_rates(self.requested_rate, info["default_rate"]):
                frames = max(16, int(rate * self.chunk_ms / 1000))
                self.sample_rate, self.channels = rate, channels
                self._max_blocks = max(4, int(2000 / self.chunk_ms))  # ~2 s inside the callback deque
                try:
                    self._stream = self._pa.open(
                        format=pyaudio.paInt16, channels=channels, rate=rate, input=True,
                        input_device_index=info["index"], frames_per_buffer=frames,
                        stream_callback=callback)
                    return
                except (OSError, IOError, ValueError) as exc:
                    last_error = exc
                    code = exc.args[0] if exc.args else None
                    if code == PA_INVALID_CHANNEL_COUNT:
                        break  # next channel count
                    if code != PA_INVALID_SAMPLE_RATE:
                        raise SourceError(f"cannot open input device {info['name']!r}: {exc}") from None
        if isinstance(last_error, SourceError):
            raise last_error
        raise SourceError(f"input device {info['name']!r} accepts none of the tried rates/channels ({last_error})")

    def _callback(self, generation: int, in_data: bytes, status: int) -> Any:
        if generation != self._generation:
            return (None, self._pyaudio.paAbort)
        now, wall = time.monotonic(), time.time()
        if status & self._pyaudio.paInputOverflow:
            self.overflows += 1
        samples = to_mono(pcm16_to_float(in_data), self.channels, self.channel)
        with self._ready:
            block = Block(samples, now, wall)
            if len(self._blocks) >= self._max_blocks:
                dropped = self._blocks.popleft()  # its loss rides on the next block (Block.skipped)
                (self._blocks[0] if self._blocks else block).skipped += dropped.skipped + len(dropped.samples)
            self._blocks.append(block)
            self._ready.notify()
        return (None, self._pyaudio.paContinue)

    def read(self, timeout: float) -> Optional[Block]:
        if self._stream is None:
            raise SourceError("stream is not open")
        with self._ready:
            if not self._blocks:
                self._ready.wait(timeout)
            block = self._blocks.popleft() if self._blocks else None
        if block is not None:
            self._last_data = time.monotonic()
            return block
        try:
            active = self._stream.is_active()
        except Exception:  # a dead stream can raise instead of answering
            active = False
        if not active:
            raise SourceError(f"input stream of {self.name!r} stopped")
        stalled = time.monotonic() - self._last_data
        if stalled > self.stall_seconds:
            raise SourceError(f"no audio from {self.name!r} for {stalled:.1f} s")
        return Block.empty()

    def close(self) -> None:
        """Close the stream without ever hanging the caller.

        PortAudio joins its callback thread on close; when the driver is stuck in a read
        (a hung USB device, a stalled pipe) that join never returns. So closing runs in a
        helper thread and is abandoned after ``CLOSE_TIMEOUT`` seconds (counted in
        ``abandoned_streams``); the next open makes a fresh PyAudio instance.
        """
        stream, self._stream = self._stream, None
        pa, self._pa = self._pa, None
        with self._ready:
            self._blocks.clear()
        if stream is None and pa is None:
            return

        def release() -> None:
            for action in ((stream.close,) if stream is not None else ()) + ((pa.terminate,) if pa else ()):
                try:
                    action()
                except Exception:
                    pass

        closer = threading.Thread(target=release, name="edge-ser-close-stream", daemon=True)
        closer.start()
        closer.join(self.CLOSE_TIMEOUT)
        if closer.is_alive():
            self.abandoned_streams += 1
            self._stuck.append(closer)

    def describe(self) -> Dict[str, Any]:
        out = super().describe()
        out.update(requested_rate=self.requested_rate, channel=self.channel)
        return out


# -- files and pipes -------------------------------------------------------------------------------

class WavFileSource(AudioSource):
    """A WAV file, read block by block (so hour-long files need little memory).

    16-bit PCM is streamed with the stdlib ``wave`` reader; other encodings are decoded
    whole by :func:`edge_ser.wav.read_wav_channels`. ``realtime`` paces delivery like a
    microphone would; otherwise blocks come as fast as the consumer takes them.
    """

    def __init__(self, path: str, realtime: bool = False, channel: int = -1, chunk_ms: int = 50) -> None:
        self.path = path
        self.realtime = realtime
        self.channel = channel
        self.chunk_ms = chunk_ms
        self.name = os.path.basename(path)
        self._wave: Optional[wave.Wave_read] = None
        self._decoded: Optional[np.ndarray] = None
        self._pos = 0
        self._t0 = 0.0

    def open(self) -> None:
        self.close()
        try:
            reader = wave.open(self.path, "rb")
            if reader.getsampwidth() != 2:
                reader.close()
                raise wave.Error("not 16-bit")
            self._wave = reader
            self.sample_rate, self.channels = reader.getframerate(), reader.getnchannels()
        except (wave.Error, EOFError):
            from ..wav import read_wav_channels

            try:
                audio = read_wav_channels(self.path)
            except AudioError as exc:
                raise SourceError(str(exc), retryable=False) from None
            self._decoded = audio.samples
            self.sample_rate, self.channels = audio.sample_rate, audio.channels
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open ({exc.strerror or exc})", retryable=False) from None
        if self.channel >= self.channels:
            raise SourceError(f"{self.path}: channel {self.channel} requested, the file has {self.channels}",
                              retryable=False)
        self._pos = 0
        self._t0 = time.monotonic()

    def read(self, timeout: float) -> Optional[Block]:
        n = max(1, int(self.sample_rate * self.chunk_ms / 1000))
        if self.realtime:
            due = self._t0 + (self._pos + n) / self.sample_rate
            wait = due - time.monotonic()
            if wait > timeout:
                time.sleep(timeout)
                return Block.empty()
            if wait > 0:
                time.sleep(wait)
        if self._wave is not None:
            raw = self._wave.readframes(n)
            if not raw:
                return None
            samples = to_mono(pcm16_to_float(raw), self.channels, self.channel)
        elif self._decoded is not None:
            part = self._decoded[self._pos: self._pos + n]
            if len(part) == 0:
                return None
            samples = np.ascontiguousarray(part[:, self.channel]) if self.channel >= 0 else part.mean(
                axis=1, dtype=np.float32)
        else:
            raise SourceError("file source is not open", retryable=False)
        self._pos += len(samples)
        return Block(samples.astype(np.float32, copy=False), time.monotonic(), time.time())

    def close(self) -> None:
        if self._wave is not None:
            self._wave.close()
        self._wave = None
        self._decoded = None


class StdinSource(AudioSource):
    """Raw signed 16-bit little-endian PCM on a file descriptor (stdin by default).

    ``arecord -f S16_LE -r 16000 -c 1 -t raw | edge-ser listen --stdin`` works as is.
    Reads use ``select`` so a stop request is noticed even when nothing arrives.
    """

    def __init__(self, rate: int = 16000, channels: int = 1, channel: int = -1, chunk_ms: int = 50,
                 stream: Optional[BinaryIO] = None) -> None:
        self.sample_rate, self.channels, self.channel = rate, channels, channel
        self.chunk_ms = chunk_ms
        self.name = "stdin"
        self._stream = stream
        self._fd = -1
        self._rest = b""

    def open(self) -> None:
        if self.channel >= self.channels:
            raise SourceError(f"channel {self.channel} requested, stdin has {self.channels}", retryable=False)
        stream = self._stream if self._stream is not None else sys.stdin.buffer
        self._fd = stream.fileno()

    def read(self, timeout: float) -> Optional[Block]:
        frame_bytes = 2 * self.channels
        want = max(1, int(self.sample_rate * self.chunk_ms / 1000)) * frame_bytes
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return Block.empty()
        data = os.read(self._fd, want)
        if not data:
            return None
        data = self._rest + data
        usable = len(data) // frame_bytes * frame_bytes
        self._rest = data[usable:]
        samples = to_mono(pcm16_to_float(data[:usable]), self.channels, self.channel)
        return Block(samples, time.monotonic(), time.time())

    def close(self) -> None:
        self._fd = -1
