"""The event hub behind ``/api/events`` and ``/api/stream``: bounded history, bounded fan-out.

The daemon's thread calls :meth:`EventHub.publish`; that must never wait for a
network client, because a phone that went to sleep with the dashboard open must not
delay the next classification. So ``publish`` does three cheap things under one
short lock: number the event, append it to a bounded history, and ``put_nowait`` the
encoded frame into each stream client's bounded queue. A client whose queue is full
(it stopped reading, or reads slower than events arrive) is dropped and counted: its
socket is shut down, which also frees its handler thread if that thread is blocked in
``send``. A dropped browser reconnects by itself and resumes from ``Last-Event-ID``.

Ids are 1, 2, 3, ... per server run. ``level`` events (the live input meter, several a
second) are not numbered, not kept, and are skipped for a client whose queue is already
half full, so they can never be the reason a client is dropped.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

__all__ = ["EventHub", "StreamClient", "StoredEvent", "encode_frame", "safe_json", "TRANSIENT_TYPES"]

#: Event types sent to live clients only (never stored, never numbered).
TRANSIENT_TYPES = frozenset({"level"})


def _to_json(event: Mapping[str, Any]) -> str:
    # default=str: an odd value (a Path, a numpy float) must not make emit() raise.
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)


def safe_json(event: Any) -> str:
    """Compact JSON that browsers accept: odd objects as strings, NaN/infinity as null."""
    return _safe_json(event)


def _safe_json(event: Any) -> str:
    try:
        return _to_json(event)
    except ValueError:  # NaN/inf are not JSON; browsers' JSON.parse would reject the frame
        cleaned = json.loads(json.dumps(event, default=str))  # Python's json writes NaN; read it back
        return _to_json(_replace_non_finite(cleaned))


def _replace_non_finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _replace_non_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_non_finite(v) for v in value]
    return value


def _event_name(kind: Any) -> str:
    name = str(kind or "message")
    return name if name.replace("_", "").isalnum() else "message"


def encode_frame(event_id: Optional[int], kind: Any, data_json: str) -> bytes:
    """One Server-Sent Events frame; the JSON is one line, so one ``data:`` field suffices."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {_event_name(kind)}\ndata: {data_json}\n\n".encode("utf-8")


@dataclass(frozen=True)
class StoredEvent:
    """One numbered event: the dict (with ``id`` added) and its ready-to-send frame."""

    id: int
    kind: str
    event: Dict[str, Any]
    frame: bytes


class StreamClient:
    """One ``/api/stream`` connection: a bounded queue of frames, filled by the hub.

    ``None`` in the queue means "the server is closing". ``dropped`` is set by the hub
    when the queue overflowed; the handler then stops.
    """

    def __init__(self, queue_size: int, connection: Optional[socket.socket] = None) -> None:
        self.queue: "queue.Queue[Optional[bytes]]" = queue.Queue(queue_size)
        self.queue_size = queue_size
        self.connection = connection
        self.dropped = False
        self.closed = False

    def offer(self, frame: bytes, transient: bool) -> bool:
        """Queue ``frame``; False if the queue is full (the hub then drops this client)."""
        if transient and self.queue.qsize() * 2 >= self.queue_size:
            return True  # the meter can skip a beat; do not fill the queue with it
        try:
            self.queue.put_nowait(frame)
            return True
        except queue.Full:
            return False

    def kill(self) -> None:
        """End the connection now, from any thread (wakes a handler blocked in ``send``)."""
        self.closed = True
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass  # the handler finds the shut-down socket instead
        if self.connection is not None:
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class EventHub:
    """Bounded event history plus the set of live stream clients."""

    def __init__(self, history_size: int, max_clients: int) -> None:
        self._history: Deque[StoredEvent] = deque(maxlen=history_size)
        self._clients: List[StreamClient] = []
        self._lock = threading.Lock()
        self._next_id = 1
        self.max_clients = max_clients
        self.dropped_clients = 0
        self.total_clients = 0
        self.closed = False

    # -- producer side (the daemon's thread) --------------------------------------------------
    def publish(self, event: Mapping[str, Any]) -> Optional[StoredEvent]:
        """Store (unless transient) and fan out ``event``; never blocks on a client."""
        kind = str(event.get("type", "message"))
        transient = kind in TRANSIENT_TYPES
        victims: List[StreamClient] = []
        with self._lock:
            if self.closed:
                return None
            stored: Optional[StoredEvent] = None
            if transient:
                frame = encode_frame(None, kind, _safe_json(event))
            else:
                event_id = self._next_id
                self._next_id += 1
                data = dict(event)
                data["id"] = event_id
                data_json = _safe_json(data)
                frame = encode_frame(event_id, kind, data_json)
                # keep the JSON-clean copy: /api/events then returns exactly what the stream sent
                stored = StoredEvent(event_id, kind, json.loads(data_json), frame)
                self._history.append(stored)
            for client in self._clients:
                if not client.offer(frame, transient):
                    victims.append(client)
            if victims:
                self._clients = [c for c in self._clients if c not in victims]
                self.dropped_clients += len(victims)
        for client in victims:
            client.dropped = True
            client.kill()
        return stored

    # -- consumer side (handler threads) ------------------------------------------------------
    def subscribe(self, after_id: Optional[int], queue_size: int,
                  connection: Optional[socket.socket] = None) -> Optional[Tuple[StreamClient, List[StoredEvent]]]:
        """Register a client; returns it and the stored events it missed, or None when full.

        Registration and the backlog snapshot happen under one lock, so no event falls
        between "sent from history" and "sent live". ``after_id`` newer than anything
        stored means the client saw a previous server run: it gets the whole history.
        """
        with self._lock:
            if self.closed or len(self._clients) >= self.max_clients:
                return None
            backlog = self._after(after_id) if after_id is not None else []
            client = StreamClient(queue_size, connection)
            self._clients.append(client)
            self.total_clients += 1
            return client, backlog

    def drop(self, client: StreamClient) -> None:
        """Drop a client that stopped reading (its send timed out); counted like a full queue."""
        with self._lock:
            if client not in self._clients:
                return
            self._clients.remove(client)
            self.dropped_clients += 1
        client.dropped = True
        client.kill()

    def unsubscribe(self, client: StreamClient) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def events(self, since: Optional[int], limit: int) -> List[StoredEvent]:
        """Up to ``limit`` stored events: the first ones after ``since``, or the newest ones."""
        with self._lock:
            if since is None:
                items = list(self._history)[-limit:] if limit > 0 else []
            else:
                items = self._after(since)[:limit]
        return items

    def _after(self, after_id: int) -> List[StoredEvent]:
        newest = self._next_id - 1
        if after_id > newest:
            after_id = 0
        if not self._history or after_id < self._history[0].id:
            return [e for e in self._history if e.id > after_id]
        # ids in the deque are consecutive: index arithmetic instead of a scan
        start = after_id - self._history[0].id + 1
        return list(self._history)[start:]

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    @property
    def newest_id(self) -> int:
        with self._lock:
            return self._next_id - 1

    @property
    def oldest_id(self) -> Optional[int]:
        with self._lock:
            return self._history[0].id if self._history else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._history)

    def close(self) -> None:
        """Stop accepting events and end every stream."""
        with self._lock:
            self.closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.kill()
