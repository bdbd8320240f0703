"""What the dashboard server remembers about the daemon, and its Prometheus rendering.

:class:`DaemonState` folds the event stream into the few numbers ``/api/status`` and
``/metrics`` report (last result, last status, counters, latency histogram) so that
neither endpoint has to scan the history. Everything is O(1) per event and guarded
by one lock: ``observe`` runs on the daemon's thread, the readers on handler threads.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["LatencyHistogram", "DaemonState", "render_prometheus", "STATE_NAMES"]

#: Result event types (carry an emotion).
RESULT_TYPES = ("utterance", "window")
#: Daemon status ``event`` names -> the state shown on the dashboard. ``periodic`` keeps the state.
STATE_NAMES = {
    "start": "started", "started": "started",
    "stop": "stopped", "stopped": "stopped",
    "device_lost": "device_lost", "device_recovered": "device_recovered",
    "error": "error",
}
#: Seconds. Event latency includes the end-of-speech wait (600 ms by default), so the
#: interesting range is 0.1 s .. a few seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class LatencyHistogram:
    """A Prometheus-style cumulative histogram of event latencies (seconds)."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0:
            return
        self.count += 1
        self.sum += seconds
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1

    def snapshot(self) -> Tuple[List[Tuple[float, int]], int, float]:
        return list(zip(self.buckets, self.counts)), self.count, self.sum


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class DaemonState:
    """The daemon as seen through its events."""

    def __init__(self, info: Optional[Mapping[str, Any]] = None) -> None:
        self._lock = threading.Lock()
        self.started_monotonic = time.monotonic()
        self.info: Dict[str, Any] = dict(info or {})
        self.state = "waiting"
        self.last_result: Optional[Dict[str, Any]] = None
        self.last_status: Optional[Dict[str, Any]] = None
        self.last_level: Optional[Dict[str, Any]] = None
        self.counters: Dict[str, Any] = {}
        self.events_by_type: Dict[str, int] = {}
        self.emotions: Dict[str, int] = {}
        self.latency = LatencyHistogram()
        self.device = str(self.info.get("device", "") or "")
        self.model = str(self.info.get("model", "") or "")

    def observe(self, event: Mapping[str, Any]) -> None:
        kind = str(event.get("type", "message"))
        with self._lock:
            self.events_by_type[kind] = self.events_by_type.get(kind, 0) + 1
            if event.get("device"):
                self.device = str(event["device"])
            if event.get("model"):
                self.model = str(event["model"])
            if kind == "level":
                self.last_level = dict(event)
            elif kind in RESULT_TYPES:
                self.last_result = dict(event)
                emotion = event.get("emotion")
                if emotion is not None:
                    self.emotions[str(emotion)] = self.emotions.get(str(emotion), 0) + 1
                latency_ms = _number(event.get("latency_ms"))
                if latency_ms is not None:
                    self.latency.observe(latency_ms / 1000.0)
                if self.state in ("waiting", "started", "device_recovered"):
                    self.state = "listening"
            elif kind == "status":
                self.last_status = dict(event)
                name = event.get("state") or event.get("event")
                if name in STATE_NAMES:
                    self.state = STATE_NAMES[str(name)]
                counters = event.get("counters")
                if isinstance(counters, Mapping):
                    self.counters = dict(counters)

    def snapshot(self, provided: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The body of ``/api/status``; ``provided`` (the daemon's live numbers) wins."""
        with self._lock:
            counters = dict(self.counters)
            results = sum(self.events_by_type.get(k, 0) for k in RESULT_TYPES)
            # The last status event may be minutes old: results seen since then count too.
            for key, kind in (("utterances", "utterance"), ("windows", "window")):
                seen = self.events_by_type.get(kind, 0)
                if seen or key == "utterances":
                    held = _number(counters.get(key))
                    counters[key] = max(int(held or 0), seen)
            body: Dict[str, Any] = {
                "state": self.state,
                "device": self.device,
                "model": self.model,
                "counters": counters,
                "last_event": self.last_result,
                "last_status": self.last_status,
                "level": self.last_level,
                "results": results,
                "emotions": dict(self.emotions),
                "server_uptime": round(time.monotonic() - self.started_monotonic, 3),
            }
        if provided:
            extra = dict(provided)
            live = extra.pop("counters", None)
            if isinstance(live, Mapping):
                body["counters"].update(live)
            body.update(extra)
        body["uptime"] = body["counters"].get("uptime", body["server_uptime"])
        return body

    def event_counts(self) -> Dict[str, int]:
        """Events received so far, by type (a copy: the daemon's thread keeps adding)."""
        with self._lock:
            return dict(self.events_by_type)

    def latency_snapshot(self) -> Tuple[List[Tuple[float, int]], int, float]:
        with self._lock:
            return self.latency.snapshot()


# -- Prometheus text format (version 0.0.4) --------------------------------------------------------

def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, Any]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs.items()) + "}"


def _fmt(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: List[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: Iterable[Tuple[Mapping[str, Any], float]]) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in rows:
            self.lines.append(f"{name}{_labels(labels)} {_fmt(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


# daemon counter name -> (metric name, type, help)
_DAEMON_COUNTERS = {
    "utterances": ("edge_ser_utterances_total", "counter", "Utterances classified by the daemon."),
    "windows": ("edge_ser_windows_total", "counter", "Windows classified in continuous mode."),
    "overflows": ("edge_ser_input_overflows_total", "counter", "Audio input overflows reported by the device."),
    "dropped_seconds": ("edge_ser_dropped_audio_seconds_total", "counter",
                        "Audio dropped because the capture queue was full, in seconds."),
    "device_losses": ("edge_ser_device_losses_total", "counter", "Times the input device was lost."),
    "classify_errors": ("edge_ser_classify_errors_total", "counter", "Utterances the daemon failed to classify."),
    "sink_dropped": ("edge_ser_sink_dropped_total", "counter", "Events dropped by full output queues."),
    "uptime": ("edge_ser_uptime_seconds", "gauge", "Seconds since the daemon started."),
}


def render_prometheus(status: Mapping[str, Any], latency: Tuple[List[Tuple[float, int]], int, float],
                      server: Mapping[str, Any]) -> str:
    """``/metrics``: daemon counters, last result gauges, latency histogram, server health."""
    w = _Writer()
    w.metric("edge_ser_info", "gauge", "Device and model of this daemon (value is always 1).",
             [({"device": status.get("device", ""), "model": status.get("model", ""),
                "state": status.get("state", "")}, 1)])
    counters = status.get("counters") or {}
    for key, (name, kind, help_text) in _DAEMON_COUNTERS.items():
        value = _number(counters.get(key))
        if value is not None:
            w.metric(name, kind, help_text, [({}, value)])
    emotions = status.get("emotions") or {}
    w.metric("edge_ser_emotion_results_total", "counter", "Results received, by top emotion.",
             [({"emotion": e}, n) for e, n in sorted(emotions.items())])
    last = status.get("last_event") or {}
    w.metric("edge_ser_last_confidence", "gauge", "Confidence of the most recent result.",
             [({"emotion": last.get("emotion", "")}, _number(last.get("confidence")))] if last else [])
    probabilities = last.get("probabilities") if isinstance(last.get("probabilities"), Mapping) else {}
    w.metric("edge_ser_last_probability", "gauge", "Probabilities of the most recent result, by emotion.",
             [({"emotion": e}, _number(p)) for e, p in probabilities.items()])
    level = status.get("level") or {}
    w.metric("edge_ser_input_level_dbfs", "gauge", "Most recent input level (dBFS).",
             [({}, _number(level.get("level_db")))] if level else [])
    buckets, count, total = latency
    rows = [({"le": _fmt(bound)}, n) for bound, n in buckets] + [({"le": "+Inf"}, count)]
    w.lines.append("# HELP edge_ser_event_latency_seconds From the end of an utterance to its event.")
    w.lines.append("# TYPE edge_ser_event_latency_seconds histogram")
    for labels, value in rows:
        w.lines.append(f"edge_ser_event_latency_seconds_bucket{_labels(labels)} {_fmt(value)}")
    w.lines.append(f"edge_ser_event_latency_seconds_sum {_fmt(total)}")
    w.lines.append(f"edge_ser_event_latency_seconds_count {count}")
    w.metric("edge_ser_http_stream_clients", "gauge", "Connected /api/stream clients.",
             [({}, server.get("stream_clients", 0))])
    w.metric("edge_ser_http_stream_clients_dropped_total", "counter",
             "Stream clients dropped because they fell too far behind.", [({}, server.get("dropped_clients", 0))])
    w.metric("edge_ser_http_events_stored", "gauge", "Events held in the in-memory history.",
             [({}, server.get("history", 0))])
    w.metric("edge_ser_http_events_total", "counter", "Events received by the HTTP output, by type.",
             [({"type": t}, n) for t, n in sorted((server.get("events_by_type") or {}).items())])
    w.metric("edge_ser_http_requests_total", "counter", "HTTP responses sent, by status code.",
             [({"code": c}, n) for c, n in sorted((server.get("responses") or {}).items())])
    w.metric("edge_ser_http_classify_total", "counter", "POST /api/classify requests, by outcome.",
             [({"outcome": o}, n) for o, n in sorted((server.get("classify") or {}).items())])
    uploads = server.get("uploads") or {}
    w.metric("edge_ser_http_uploads_active", "gauge",
             "Upload slots in use (bodies arriving, queued or being classified).",
             [({}, uploads.get("active", 0))])
    w.metric("edge_ser_http_upload_slots", "gauge", "Uploads admitted at once; one more gets 503.",
             [({}, uploads.get("slots", 0))])
    w.metric("edge_ser_http_connections_refused_total", "counter",
             "Connections refused because max_connections were open.", [({}, server.get("refused", 0))])
    return w.text()
