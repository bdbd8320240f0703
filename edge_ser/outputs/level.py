"""Input-level events for the dashboard's live meter, at a steady few per second.

The daemon sees one level per audio chunk (50 ms by default); a browser needs no more
than ~5 updates a second, and each update should show the loudest moment since the
last one (a meter that samples would miss short peaks). :class:`LevelTicker` folds
chunk levels into ``{"type": "level", "level_db", "speech", "stream_time"}`` events,
one per ``interval`` seconds of *stream* time, so a file read faster than real time
yields the same events as the live microphone.

These events are for the HTTP output only: they are not numbered, not stored in the
dashboard's history, and should not go to the stdout/file/MQTT sinks.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

__all__ = ["LevelTicker", "level_db"]

#: The floor reported for digital silence (log of zero).
SILENCE_DB = -120.0


def level_db(rms: float) -> float:
    """dBFS of an RMS value of float samples in [-1, 1] (full-scale sine RMS ~ -3 dBFS)."""
    return round(20.0 * math.log10(rms), 1) if rms > 10 ** (SILENCE_DB / 20) else SILENCE_DB


class LevelTicker:
    """Call :meth:`push` for every chunk; it returns a level event every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.interval = interval
        self._next_at: Optional[float] = None
        self._peak = -math.inf
        self._speech = False

    def push(self, chunk_level_db: float, speech: bool, stream_time: float) -> Optional[Dict[str, Any]]:
        """Fold one chunk (its level, whether the VAD called it speech, its end time in seconds)."""
        if math.isfinite(chunk_level_db):
            self._peak = max(self._peak, chunk_level_db)
        self._speech = self._speech or bool(speech)
        if self._next_at is None:
            self._next_at = stream_time + self.interval
            return None
        if stream_time + 1e-9 < self._next_at:
            return None
        event = {"type": "level", "level_db": round(max(self._peak, SILENCE_DB), 1), "speech": self._speech,
                 "stream_time": round(stream_time, 3)}
        self._peak, self._speech = -math.inf, False
        # after a gap (device lost), restart the rhythm instead of bursting to catch up
        self._next_at = max(self._next_at + self.interval, stream_time + self.interval / 2)
        return event
