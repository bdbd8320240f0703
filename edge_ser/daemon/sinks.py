"""Where events go. A sink is anything with ``emit(event: dict)`` and ``close()``.

That is the whole interface a future HTTP or MQTT sink has to implement. ``emit``
must not raise for transport trouble (count it instead); ``close`` flushes and
releases. The daemon never calls a sink directly from its worker: every sink is
wrapped in :class:`QueuedSink` (its own thread and bounded queue), so a slow
consumer of stdout or a hung network cannot stall classification; when a sink's
queue is full the newest events for it are dropped and counted.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import IO, Any, Dict, List, Optional, Protocol, Sequence


class Sink(Protocol):
    def emit(self, event: Dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def to_json_line(event: Dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False) + "\n"


class StreamSink:
    """JSON lines on a text stream (stdout by default), flushed per event."""

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.errors = 0
        self.broken = False

    def emit(self, event: Dict[str, Any]) -> None:
        if self.broken:
            self.errors += 1
            return
        try:
            self.stream.write(to_json_line(event))
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True  # the reader went away; keep running for the other sinks
            self.errors += 1
        except (OSError, ValueError):
            self.errors += 1

    def close(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass


class FileSink:
    """Appends JSON lines to a file; flush per event, optional fsync (power-loss safe)."""

    def __init__(self, path: str, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.errors = 0
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")

    def emit(self, event: Dict[str, Any]) -> None:
        try:
            self._file.write(to_json_line(event))
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError:
            self.errors += 1  # disk full etc.: count, keep classifying

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:
            pass


class QueuedSink:
    """Runs a sink in its own thread behind a bounded queue; drops (counted) when full."""

    _STOP = object()

    def __init__(self, sink: Sink, capacity: int = 1000, name: str = "sink") -> None:
        self.sink = sink
        self.dropped = 0
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._run, name=f"edge-ser-{name}", daemon=True)
        self._thread.start()

    def emit(self, event: Dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is self._STOP:
                return
            try:
                self.sink.emit(event)
            except Exception:  # a buggy sink must not take the others down
                self.dropped += 1

    def close(self, timeout: float = 1.0) -> None:
        """Deliver what is queued (waiting at most ``timeout``), then close the sink."""
        try:
            self._queue.put(self._STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self.sink.close()


class FanOut:
    """Sends each event to several sinks."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks: List[Sink] = list(sinks)

    def emit(self, event: Dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.emit(event)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()

    @property
    def dropped(self) -> int:
        """Events a sink dropped or failed to write (sinks without such counters count 0)."""
        total = 0
        for sink in self.sinks:
            for value in (getattr(sink, "dropped", 0), getattr(getattr(sink, "sink", None), "errors", 0)):
                if isinstance(value, int) and not isinstance(value, bool):
                    total += value
        return total
