"""The daemon's output records: plain dicts, one JSON line each.

Three types, all with ``type``, ``seq`` (one counter over every event of a run, so a
consumer can spot gaps), ``device`` and ``model``:

* ``utterance`` (and ``window`` in continuous mode): ``start``/``end`` as ISO 8601 UTC
  wall-clock times and ``stream_start``/``stream_end`` in seconds since the stream
  began, ``duration``, ``emotion``, ``confidence``, ``probabilities`` (every label),
  ``level_db`` (speech-band level, dBFS), ``latency_ms`` (from the moment the last
  sample of the utterance was captured to the moment the event was built: includes the
  end-of-speech wait, queueing and classification), ``classify_ms``, ``end_reason``.
* ``status``: ``event`` is "start", "stop", "device_lost", "device_recovered" or
  "periodic", with ``counters`` (overflows, dropped_seconds, utterances, uptime, ...).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Dict, Optional

from .segmenter import Utterance


def iso_utc(epoch_seconds: float) -> str:
    """``2026-11-24T05:12:03.123Z`` (milliseconds, always UTC)."""
    moment = _dt.datetime.fromtimestamp(epoch_seconds, tz=_dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class EventFactory:
    """Numbers events and fills the fields every event shares."""

    def __init__(self, model_id: str, device: str = "") -> None:
        self.model_id = model_id
        self.device = device
        self.seq = 0

    def _base(self, kind: str) -> Dict[str, Any]:
        self.seq += 1
        return {"type": kind, "seq": self.seq}

    def result(
        self,
        kind: str,
        utterance: Utterance,
        wall_end: float,
        label: str,
        confidence: float,
        probabilities: Dict[str, float],
        latency_ms: float,
        classify_ms: float,
        extra: Optional[Dict[str, Any]] = None,
    ) -> Dict[str, Any]:
        event = self._base(kind)
        event.update({
            "start": iso_utc(wall_end - utterance.duration),
            "end": iso_utc(wall_end),
            "stream_start": round(utterance.start, 3),
            "stream_end": round(utterance.end, 3),
            "duration": round(utterance.duration, 3),
            "emotion": label,
            "confidence": round(float(confidence), 4),
            "probabilities": {k: round(float(v), 4) for k, v in probabilities.items()},
            "level_db": round(utterance.level_db, 1),
            "speech_ratio": round(utterance.speech_ratio, 3),
            "end_reason": utterance.reason,
            "device": self.device,
            "model": self.model_id,
            "latency_ms": round(latency_ms, 1),
            "classify_ms": round(classify_ms, 1),
        })
        if extra:
            event.update(extra)
        return event

    def status(self, what: str, stream_time: float, counters: Dict[str, Any],
               extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        event = self._base("status")
        event.update({
            "event": what,
            "time": iso_utc(time.time()),
            "stream_time": round(stream_time, 3),
            "device": self.device,
            "model": self.model_id,
            "counters": counters,
        })
        if extra:
            event.update(extra)
        return event
