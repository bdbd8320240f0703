"""The MQTT output's memory of what the broker has not acknowledged yet.

Two structures, both thread-safe (the daemon adds, the network thread sends/acks):

* :class:`Outbox` -- the ordered, bounded queue of events. A message leaves it only
  when the broker has acknowledged it (PUBACK for QoS 1), never when it was merely
  written to a socket, so a broker restart or a dropped link loses nothing: whatever
  was in flight is sent again, in order, on the next connection. When full, the
  oldest message that is not already in flight is dropped (and counted), because a
  fresh event is worth more than an hour-old one and the in-flight ones are about
  to be acknowledged anyway.
* :class:`RetainedTopics` -- the latest value of each retained topic (state, status,
  discovery). Only the newest value matters there, so updates replace each other
  instead of queueing, and every new connection republishes them all (a broker
  restarted without persistence has forgotten its retained messages).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Deque, Dict, List, Optional, Tuple

__all__ = ["OutMessage", "Outbox", "RetainedTopics"]


@dataclass(eq=False)
class OutMessage:
    """One event on its way to the broker; ``acked`` once the broker confirmed it."""

    topic: str
    payload: bytes
    retain: bool = False
    acked: bool = field(default=False, repr=False)


class Outbox:
    """Bounded FIFO whose head is the part "sent on the current connection, awaiting ack".

    ``take_next()`` hands out messages in order and remembers how many were handed
    out (``in_flight``); ``acknowledge()`` removes acknowledged messages from the
    head; ``rewind()`` (on disconnect) makes the unacknowledged ones due again.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: Deque[OutMessage] = deque()
        self._sent = 0  # items at the head already handed to the current connection
        self._dropped = 0
        self._lock = threading.Lock()

    def put(self, message: OutMessage) -> int:
        """Append ``message``; returns how many old messages were dropped to make room."""
        with self._lock:
            dropped = 0
            while len(self._items) >= self.capacity:
                if self._sent < len(self._items):
                    del self._items[self._sent]  # oldest not yet sent
                else:  # everything is in flight (tiny capacity): give up the oldest of those
                    self._items.popleft()
                    self._sent -= 1
                dropped += 1
            self._items.append(message)
            self._dropped += dropped
            return dropped

    def take_next(self) -> Optional[OutMessage]:
        """The oldest message not yet sent on this connection (marked as sent), or None."""
        with self._lock:
            while self._sent < len(self._items):
                message = self._items[self._sent]
                self._sent += 1
                if not message.acked:
                    return message
            return None

    def acknowledge(self, message: OutMessage) -> None:
        """The broker has ``message``: drop it (and any acknowledged run behind it) from the head."""
        with self._lock:
            message.acked = True
            while self._items and self._items[0].acked:
                self._items.popleft()
                self._sent = max(0, self._sent - 1)

    def rewind(self) -> None:
        """The connection is gone: every unacknowledged message must be sent again."""
        with self._lock:
            self._sent = 0

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._sent

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass
class _Slot:
    payload: bytes
    version: int
    sent_version: Optional[int] = None
    acked_version: Optional[int] = None


class RetainedTopics:
    """Latest payload per retained topic, with "sent"/"acknowledged" versions per connection."""

    def __init__(self) -> None:
        self._slots: Dict[str, _Slot] = {}
        self._version = 0
        self._lock = threading.Lock()

    def set(self, topic: str, payload: bytes) -> None:
        """Make ``payload`` the value to publish on ``topic`` (replacing any unsent older one)."""
        with self._lock:
            self._version += 1
            slot = self._slots.get(topic)
            if slot is None:
                self._slots[topic] = _Slot(payload, self._version)
            else:
                slot.payload = payload
                slot.version = self._version

    def get(self, topic: str) -> Optional[bytes]:
        with self._lock:
            slot = self._slots.get(topic)
            return slot.payload if slot else None

    def take_due(self) -> List[Tuple[str, bytes, int]]:
        """(topic, payload, version) of every value not yet sent on this connection; marks them sent."""
        with self._lock:
            due = []
            for topic, slot in self._slots.items():
                if slot.sent_version != slot.version:
                    slot.sent_version = slot.version
                    due.append((topic, slot.payload, slot.version))
            return due

    def acknowledge(self, topic: str, version: int) -> None:
        with self._lock:
            slot = self._slots.get(topic)
            if slot is not None:
                slot.acked_version = max(version, slot.acked_version or 0)

    def all_acknowledged(self) -> bool:
        with self._lock:
            return all(slot.acked_version == slot.version for slot in self._slots.values())

    def rewind(self, topic: Optional[str] = None) -> None:
        """Republish ``topic`` (or all, on a new connection) even if it was sent before."""
        with self._lock:
            for name, slot in self._slots.items():
                if topic is None or name == topic:
                    slot.sent_version = None
                    slot.acked_version = None
