"""A "microphone" for tests: an ALSA capture PCM fed from a FIFO, no sound card needed.

ALSA's ``file`` plugin serves capture from ``infile``; PortAudio lists user-defined
PCMs, so pyaudio opens it like any microphone (see shared/notes/alsa-file-capture.md).
A regular file is read as fast as the client asks (thousands of times real time), so
:class:`FifoMic` makes ``infile`` a named pipe and a writer thread feeds it at a chosen
pace: the daemon then sees a live, paced device. The writer holds the FIFO open
read-write, so PortAudio's probing (open/close without reading) never breaks it. It
never lets more than two blocks wait in the pipe: audio written while nobody reads
(before the daemon has started, or while a loaded machine slows it down) would
otherwise reach the daemon as one burst at thousands of times real time, and a burst
is the overload test's business, not every test's.

* :meth:`FifoMic.play` queues audio; between clips the writer sends a quiet room
  (low noise), like a real microphone. :meth:`FifoMic.clip_start` is where a played
  clip begins in the FIFO, in seconds: the daemon's stream time of that sample (the
  stream starts at the FIFO's first byte), whatever backlog the daemon has. Tests wait
  on it rather than on "now + n seconds", so a loaded machine only makes them slower.
* :meth:`FifoMic.unplug` stops the audio and removes the FIFO: the open stream stalls
  (the device delivers nothing) and reopening fails (the PCM cannot open its infile),
  as with a USB microphone pulled out. :meth:`FifoMic.replug` brings it back.

The ALSA configuration is a temporary file passed through ``ALSA_CONFIG_PATH``; the
machine's own ``~/.asoundrc`` is never touched. :func:`file_mic_env` configures a
plain-file infile instead (unpaced: for overload tests).
"""

from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

SYSTEM_ALSA_CONF = "/usr/share/alsa/alsa.conf"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def block_frames(rate: int) -> int:
    """The writer's block: 200 ms, a multiple of any period a reader is likely to ask for
    (10/20/25/40/50/100 ms): the file plugin zero-fills a read that finds fewer bytes in
    the pipe than it asked for, which would add frames the writer never sent."""
    return max(1, rate // 5)


def alsa_config(path: Path, infile: Path, rate: int, channels: int, name: str = "edgemic") -> Dict[str, str]:
    """Write an ALSA config with a capture PCM ``name`` (plug -> file) and return the env to use it.

    ``rate``/``channels`` are the infile's format; clients may open ``name`` at any rate
    and channel count (``plug`` converts), like a USB microphone behind ALSA's default.
    """
    path.write_text(f"""
pcm.{name}_raw {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
pcm.{name} {{
    type plug
    slave {{ pcm "{name}_raw"; format S16_LE; rate {rate}; channels {channels} }}
}}
""")
    return {"ALSA_CONFIG_PATH": f"{SYSTEM_ALSA_CONF}:{path}"}


def to_pcm16(samples: np.ndarray) -> bytes:
    """float [-1, 1] (frames,) or (frames, channels) -> interleaved s16le bytes."""
    x = np.clip(np.asarray(samples, np.float64), -1.0, 1.0)
    return (np.round(x * 32767.0)).astype("<i2").tobytes()


class FifoMic:
    """A paced ALSA capture device; see the module docstring."""

    def __init__(self, directory: Path, rate: int = 16000, channels: int = 1, speed: float = 1.0,
                 noise_level: float = 3e-4, name: str = "edgemic") -> None:
        self.directory = Path(directory)
        self.rate, self.channels, self.speed = rate, channels, speed
        self.name = name
        self.fifo = self.directory / f"{name}.fifo"
        self.env = alsa_config(self.directory / f"{name}.asoundrc", self.fifo, rate, channels, name)
        self.noise_level = noise_level
        self._pending: List[bytes] = []
        self._fresh: List[bool] = []  # per pending clip: none of it written yet
        self._clip_starts: List[float] = []
        self._started = threading.Condition(threading.Lock())
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._paused = threading.Event()
        self._stop = threading.Event()
        self._fd: Optional[int] = None
        self._old_fds: List[int] = []
        self._rng = np.random.default_rng(7)
        self.written_seconds = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> "FifoMic":
        self._make_fifo()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_fifo(self) -> None:
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self._fd = os.open(self.fifo, os.O_RDWR)
        try:  # room for a few blocks even at 48 kHz stereo
            fcntl.fcntl(self._fd, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for fd in [self._fd, *self._old_fds]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._fd = None
        if self.fifo.exists():
            self.fifo.unlink()

    # -- audio -------------------------------------------------------------------------------------
    def play(self, samples: np.ndarray) -> None:
        """Queue audio (float, mono or (frames, channels)) after what is already queued.

        The clip is padded with quiet room to whole writer blocks, so no read finds a
        partial block (which the file plugin would zero-fill, shifting stream time)."""
        frames = len(samples)
        pad = -frames % block_frames(self.rate)
        room = self.noise_level * np.random.default_rng(frames).standard_normal((pad, self.channels))
        data = to_pcm16(samples) + to_pcm16(room)  # (not self._room: its generator is the writer's)
        with self._lock:
            self._pending.append(data)
            self._fresh.append(True)
            self._idle.clear()

    def clip_start(self, index: int, timeout: float = 60.0) -> float:
        """Seconds of audio written before clip ``index`` (0 = the first :meth:`play`) began."""
        with self._started:
            if not self._started.wait_for(lambda: len(self._clip_starts) > index, timeout):
                raise AssertionError(f"clip {index} did not start within {timeout} s")
            return self._clip_starts[index]

    def wait_played(self, timeout: float) -> bool:
        """Wait until every queued clip has been written."""
        return self._idle.wait(timeout)

    def unplug(self) -> None:
        """The device goes away: no more audio, and the PCM can no longer be opened."""
        self._paused.set()
        if self._fd is not None:
            self._old_fds.append(self._fd)  # kept open: a closed writer would mean EOF, not a stall
            self._fd = None
        self.fifo.unlink()

    def stall(self) -> None:
        """The device stays but delivers nothing (a hung driver): every read blocks."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def replug(self) -> None:
        self._make_fifo()
        self._paused.clear()

    @staticmethod
    def _unread_bytes(fd: int) -> int:
        """Bytes written to the FIFO and not read yet (FIONREAD)."""
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def _room(self, frames: int) -> bytes:
        noise = self.noise_level * self._rng.standard_normal((frames, self.channels))
        return to_pcm16(noise)

    def _run(self) -> None:
        block = block_frames(self.rate)
        frame_bytes = 2 * self.channels
        t0 = time.monotonic()
        sent = 0  # frames written since t0
        while not self._stop.is_set():
            fd = self._fd
            if self._paused.is_set() or fd is None:
                time.sleep(0.02)
                t0, sent = time.monotonic(), 0
                continue
            with self._lock:
                if self._pending:
                    if self._fresh[0]:
                        self._fresh[0] = False
                        with self._started:
                            self._clip_starts.append(self.written_seconds)
                            self._started.notify_all()
                    data = self._pending[0][: block * frame_bytes]
                    self._pending[0] = self._pending[0][len(data):]
                    if not self._pending[0]:
                        self._pending.pop(0)
                        self._fresh.pop(0)
                else:
                    data = b""
                    self._idle.set()
            if not data:
                data = self._room(block)
            while (self._unread_bytes(fd) >= 2 * block * frame_bytes and not self._stop.is_set()
                   and not self._paused.is_set()):
                time.sleep(0.005)  # nobody reads (yet): wait, like a microphone nobody has opened
                t0, sent = time.monotonic(), 0
            try:
                os.write(fd, data)
            except OSError:
                time.sleep(0.02)
                continue
            sent += len(data) // frame_bytes
            self.written_seconds += len(data) / frame_bytes / self.rate
            delay = t0 + sent / (self.rate * self.speed) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -1.0:  # the reader was away (pipe full): do not burst to catch up
                t0, sent = time.monotonic(), 0


def file_mic_env(directory: Path, samples: np.ndarray, rate: int, name: str = "filemic") -> Dict[str, str]:
    """A capture PCM reading a regular file: unpaced, then zeros forever (overload tests)."""
    raw = Path(directory) / f"{name}.raw"
    raw.write_bytes(to_pcm16(samples))
    return alsa_config(Path(directory) / f"{name}.asoundrc", raw, rate, 1, name)
