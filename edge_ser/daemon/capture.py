"""Capture thread and the bounded queue between capture and the worker.

Capture must never wait for classification: a microphone that is not read overruns
in the driver and the audio is lost without a trace. So a thread does nothing but
read the source and put blocks into :class:`CaptureQueue`. The queue holds at most
``capacity_seconds`` of audio; when the worker falls behind on a live source the
OLDEST audio is dropped, which keeps memory flat and the results current. Non-live
sources (files, stdin) block instead, so no audio is lost when reading faster than
real time.

Lost audio travels with the audio: every :class:`Chunk` carries ``lost_before``, the
seconds lost right before it (inside the source, e.g. PortAudio's callback buffer,
or dropped from this queue, whose dropped chunk hands its duration on to the chunk
that follows it). The worker adds it up as it takes chunks, so for everything it has
processed ``stream time == audio processed + audio lost + device outages`` holds by
construction, whichever thread reads the counters and whenever. Audio lost after the
last chunk the worker takes is past the end of the stream and counted nowhere.
Closing the queue (at stop) refuses further audio, so what is left to drain is final.

Control messages (source opened, device lost/recovered, end of stream) travel in the
same queue, in order with the audio, and are never dropped.

The thread also owns device recovery: a :class:`~edge_ser.daemon.sources.SourceError`
closes the source, reports ``device_lost`` once, and reopens with exponential
backoff (capped) until audio flows again, then reports ``device_recovered``. Stream
time keeps running during the outage (the gap is skipped), so event times stay
comparable with the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, Optional, Union

import numpy as np

from .sources import AudioSource, SourceError


@dataclass
class Chunk:
    """Mono audio with its place in the stream."""

    samples: np.ndarray
    rate: int
    start: float  # stream seconds of the first sample
    arrival: float  # monotonic time the last sample became available
    wall: float  # wall clock at that moment
    lost_before: float = 0.0  # seconds of audio lost right before this chunk (source or queue)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass
class Control:
    """An event from the capture side: "opened", "device_lost", "device_recovered", "eof", "fatal"."""

    kind: str
    info: Dict[str, Any] = field(default_factory=dict)


Item = Union[Chunk, Control]


class CaptureQueue:
    """Bounded FIFO of chunks (by seconds of audio) plus unbounded-but-rare control items.

    ``dropped_seconds``/``dropped_chunks`` are this queue's own statistics; what the daemon
    reports is the ``lost_before`` of the chunks the worker took (see the module docstring).
    """

    def __init__(self, capacity_seconds: float, block_when_full: bool = False) -> None:
        self.capacity = capacity_seconds
        self.block_when_full = block_when_full
        self._items: Deque[Item] = deque()
        self._seconds = 0.0
        self._cond = threading.Condition()
        self.dropped_seconds = 0.0
        self.dropped_chunks = 0
        self.peak_seconds = 0.0
        self._closed = False

    @property
    def seconds(self) -> float:
        with self._cond:
            return self._seconds

    def put(self, item: Item, stop: Optional[threading.Event] = None) -> None:
        """Queue ``item``; audio put after :meth:`close` is refused (it is past the stream's end)."""
        with self._cond:
            if isinstance(item, Chunk):
                if self.block_when_full:
                    while (self._seconds + item.duration > self.capacity and not self._closed
                           and any(isinstance(x, Chunk) for x in self._items)):
                        if stop is not None and stop.is_set():
                            return
                        self._cond.wait(0.1)
                if self._closed:
                    return
                if not self.block_when_full:
                    while self._seconds + item.duration > self.capacity and self._drop_oldest_audio(item):
                        pass
                self._seconds += item.duration
                self.peak_seconds = max(self.peak_seconds, self._seconds)
            self._items.append(item)
            self._cond.notify_all()

    def _drop_oldest_audio(self, incoming: Chunk) -> bool:
        """Drop the oldest chunk, handing its loss on to the next chunk; False when no audio is queued."""
        for i, old in enumerate(self._items):
            if isinstance(old, Chunk):
                del self._items[i]
                heir = next((x for x in self._items if isinstance(x, Chunk)), incoming)
                heir.lost_before += old.lost_before + old.duration
                self._seconds -= old.duration
                self.dropped_seconds += old.duration
                self.dropped_chunks += 1
                if not any(isinstance(x, Chunk) for x in self._items):
                    self._seconds = 0.0  # no float residue from the running sum
                return True
        self._seconds = 0.0
        return False

    def get(self, timeout: float) -> Optional[Item]:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item = self._items.popleft()
            if isinstance(item, Chunk):
                self._seconds -= item.duration
                if not self._items:
                    self._seconds = 0.0
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Refuse further audio and release a producer blocked on a full queue.

        After this returns, the queued chunks and the losses they carry are final, so a
        consumer that drains the queue sees the whole stream up to its end.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class CaptureThread(threading.Thread):
    """Reads ``source`` into ``queue`` until stopped, recovering from device loss."""

    def __init__(self, source: AudioSource, queue: CaptureQueue, retry_initial: float = 0.5,
                 retry_max: float = 30.0, read_timeout: float = 0.1) -> None:
        super().__init__(name="edge-ser-capture", daemon=True)
        self.source = source
        self.queue = queue
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.read_timeout = read_timeout
        self.stop_event = threading.Event()
        self.position = 0.0  # stream seconds of the next sample
        self.device_losses = 0
        self.open_failures = 0

    def stop(self) -> None:
        self.stop_event.set()
        self.queue.close()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug must not kill capture silently
            self.queue.put(Control("fatal", {"reason": f"capture thread crashed: {exc!r}"}))
        finally:
            try:
                self.source.close()
            except Exception:
                pass

    def _run(self) -> None:
        backoff = self.retry_initial
        lost_at: Optional[float] = None  # monotonic time of the loss, while in an outage
        lost_position = 0.0
        opened_once = False
        awaiting_audio = False
        while not self.stop_event.is_set():
            # -- (re)open ------------------------------------------------------------------------
            try:
                self.source.open()
            except SourceError as exc:
                if not exc.retryable:
                    self.queue.put(Control("fatal", {"reason": exc.reason}))
                    return
                self.open_failures += 1
                if lost_at is None:
                    lost_at, lost_position = time.monotonic(), self.position
                    self.device_losses += 1
                    self.queue.put(Control("device_lost", {"reason": exc.reason, "stream_time": round(self.position, 3)}))
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2.0, self.retry_max)
                continue
            if not opened_once:
                opened_once = True
                self.queue.put(Control("opened", self.source.describe()))
            awaiting_audio = lost_at is not None
            rate = self.source.sample_rate
            frames_since_open = 0
            base = self.position
            # -- read until the stream ends, fails, or we are stopped --------------------------------
            while not self.stop_event.is_set():
                try:
                    block = self.source.read(self.read_timeout)
                except SourceError as exc:
                    if not exc.retryable:
                        self.queue.put(Control("fatal", {"reason": exc.reason}))
                        return
                    if lost_at is None:
                        lost_at, lost_position = time.monotonic(), self.position
                        self.device_losses += 1
                        self.queue.put(Control("device_lost", {"reason": exc.reason, "stream_time": round(self.position, 3)}))
                    self.source.close()
                    self.stop_event.wait(backoff)
                    backoff = min(backoff * 2.0, self.retry_max)
                    break
                if block is None:
                    self.queue.put(Control("eof", {"stream_time": self.position}))
                    return
                if len(block.samples) == 0:
                    continue
                if awaiting_audio and lost_at is not None:
                    # Audio flows again: the outage is over. Skip stream time by its length.
                    outage = time.monotonic() - lost_at
                    base = self.position = lost_position + outage
                    frames_since_open = 0
                    self.queue.put(Control("device_recovered", {
                        "outage_seconds": round(outage, 3), "stream_time": round(self.position, 3),
                        **self.source.describe()}))
                    lost_at, awaiting_audio, backoff = None, False, self.retry_initial
                frames_since_open += block.skipped  # lost inside the source: a gap, not a shift
                start = base + frames_since_open / rate
                frames_since_open += len(block.samples)
                self.position = base + frames_since_open / rate
                self.queue.put(Chunk(block.samples, rate, start, block.arrival, block.wall, block.skipped / rate),
                               self.stop_event)
