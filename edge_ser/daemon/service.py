"""The listening loop: capture queue -> resample -> VAD/segmenter -> classifier -> sinks.

One worker (the thread that calls :meth:`Listener.run`, normally the main thread)
does all the computing; the capture thread only reads audio (see
:mod:`edge_ser.daemon.capture`), and every sink has its own thread. So a slow model
costs dropped audio (counted) rather than a driver overrun, and a slow consumer of
events costs dropped events (counted) rather than a stalled microphone.

Stopping (SIGTERM/SIGINT, end of a file, ``max_seconds``): capture stops and the
queue is closed, what is already queued is processed, an utterance in progress is
closed and classified, a "stop" status event with the final counters is emitted and
the sinks are flushed.

The audio counters are kept by the worker alone, from the chunks it takes
(``audio_seconds`` from their length, ``dropped_seconds`` from the loss each one
carries): ``stream_time == audio_seconds + dropped_seconds`` plus the length of any
device outages, at every status event, however fast the capture side runs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from .capture import CaptureQueue, CaptureThread, Chunk, Control
from .events import EventFactory
from .notify import Notifier
from .segmenter import ProbabilitySmoother, Segmenter, SlidingWindows, Utterance
from .sinks import FanOut
from .sources import AudioSource, MicrophoneSource
from .vad import make_vad

log = logging.getLogger("edge_ser.daemon")

#: Chunks whose start differs from the expected position by more than this are a gap.
GAP_TOLERANCE_S = 0.002


class Listener:
    """Runs one source through one classifier into the sinks until stopped."""

    def __init__(self, settings: Dict[str, Dict[str, Any]], classifier: Any, source: AudioSource,
                 sinks: FanOut, notifier: Optional[Notifier] = None) -> None:
        self.settings = settings
        self.classifier = classifier
        self.source = source
        self.sinks = sinks
        self.notifier = notifier or Notifier({})
        self.rate = int(classifier.sample_rate)
        src = settings["source"]
        self.queue = CaptureQueue(src["queue_seconds"], block_when_full=not source.live)
        self.capture = CaptureThread(source, self.queue, src["retry_initial_seconds"], src["retry_max_seconds"])
        vad = make_vad(settings["vad"], self.rate)
        cont = settings["continuous"]
        seg = settings["segmenter"]
        self.continuous = bool(cont["enabled"])
        self.segmenter: Any
        if self.continuous:
            self.segmenter = SlidingWindows(vad, self.rate, cont["window_seconds"], cont["hop_seconds"],
                                            cont["min_speech_ratio"])
        else:
            self.segmenter = Segmenter(vad, self.rate, seg["pre_roll_ms"], seg["end_silence_ms"],
                                       seg["min_utterance_ms"], seg["max_utterance_seconds"],
                                       settings["vad"]["onset_ms"])
        self.smoother = ProbabilitySmoother(seg["smoothing"])
        self.events = EventFactory(str(classifier.model_id), source.name)
        self.save_dir = settings["output"]["save_utterances"] or None
        if self.save_dir:
            os.makedirs(self.save_dir, exist_ok=True)
        self.max_seconds = float(settings["service"]["max_seconds"])
        self.status_interval = float(settings["output"]["status_interval_seconds"])
        self.watchdog = bool(settings["service"]["watchdog"])

        #: Sinks that also want ``{"type": "level"}`` meter events (the web dashboard). Those
        #: events are not numbered and never reach the other sinks.
        self.level_sinks: List[Any] = []
        self._level_ticker: Any = None
        self._stop = threading.Event()
        self._stop_reason = ""
        self._resampler: Any = None
        self._in_rate = 0
        self._expected_start: Optional[float] = None
        self._timeline: Deque[Tuple[float, float, float]] = deque(maxlen=8192)  # (end, arrival, wall)
        self._started = False
        self._t0 = time.monotonic()
        self._last_status = self._t0
        self.stream_time = 0.0
        self.audio_seconds = 0.0
        self.dropped_seconds = 0.0
        self.results = 0
        self.classify_errors = 0
        self.gaps = 0
        self.exit_code = 0

    # -- control ------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "signal") -> None:
        """Ask the worker to stop (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            self._stop_reason = reason
            self._stop.set()

    def counters(self) -> Dict[str, Any]:
        overflows = int(getattr(self.source, "overflows", 0))
        return {
            "uptime": round(time.monotonic() - self._t0, 3),
            "stream_time": round(self.stream_time, 3),
            "audio_seconds": round(self.audio_seconds, 3),
            "utterances" if not self.continuous else "windows": self.results,
            "discarded": int(getattr(self.segmenter, "discarded", getattr(self.segmenter, "skipped", 0))),
            "overflows": overflows,
            "dropped_seconds": round(self.dropped_seconds, 3),
            "queue_peak_seconds": round(self.queue.peak_seconds, 3),
            "gaps": self.gaps,
            "device_losses": self.capture.device_losses,
            "abandoned_streams": int(getattr(self.source, "abandoned_streams", 0)),
            "classify_errors": self.classify_errors,
            "sink_dropped": self.sinks.dropped,
        }

    def _status(self, what: str, extra: Optional[Dict[str, Any]] = None) -> None:
        self.sinks.emit(self.events.status(what, self.stream_time, self.counters(), extra))

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> int:
        """Listen until stopped; the exit code (0 after a clean stop, 1 after a fatal source error)."""
        self.capture.start()
        try:
            while not self._stop.is_set():
                item = self.queue.get(timeout=0.1)
                if self.watchdog and self._started:  # READY=1 first, then the pings
                    self.notifier.watchdog()
                if item is not None:
                    self._handle(item)
                if self.status_interval > 0 and time.monotonic() - self._last_status >= self.status_interval:
                    self._last_status = time.monotonic()
                    self._status("periodic")
        finally:
            self._shutdown()
        return self.exit_code

    def _handle(self, item: Any) -> None:
        if isinstance(item, Chunk):
            self._process_chunk(item)
            return
        assert isinstance(item, Control)
        if item.kind == "opened":
            self.events.device = item.info.get("device", self.events.device)
            self._announce_start(item.info)
        elif item.kind == "device_lost":
            self._announce_start({"device_available": False})
            self._close_segment("device_lost")
            log.warning("device lost: %s (retrying)", item.info.get("reason"))
            self._status("device_lost", item.info)
        elif item.kind == "device_recovered":
            self.events.device = item.info.get("device", self.events.device)
            log.warning("device recovered after %.1f s", item.info.get("outage_seconds", 0.0))
            self._status("device_recovered", item.info)
        elif item.kind == "eof":
            self.request_stop("end_of_stream")
        elif item.kind == "fatal":
            log.error("%s", item.info.get("reason"))
            self._announce_start({"device_available": False})
            self._status("error", item.info)
            self.exit_code = 1
            self.request_stop("error")

    def _announce_start(self, info: Dict[str, Any]) -> None:
        if self._started:
            return
        self._started = True
        extra = {"model_path": str(getattr(self.classifier, "model_path", "")),
                 "backend": str(getattr(self.classifier, "backend_name", "")),
                 "model_rate": self.rate, "mode": "continuous" if self.continuous else "utterance", **info}
        self._status("start", extra)
        self.notifier.ready(f"listening on {self.events.device}")
        log.info("listening on %s (%s Hz) with model %s", self.events.device, info.get("sample_rate", "?"),
                 self.events.model_id)

    def _process_chunk(self, chunk: Chunk) -> None:
        samples = chunk.samples
        if self.max_seconds > 0 and chunk.end > self.max_seconds:
            keep = max(0, int(round((self.max_seconds - chunk.start) * chunk.rate)))
            samples = samples[:keep]
            chunk = Chunk(samples, chunk.rate, chunk.start, chunk.arrival, chunk.wall, chunk.lost_before)
            self.request_stop("max_seconds")
        if chunk.rate != self._in_rate:
            self._close_segment("rate_change")
            self._in_rate = chunk.rate
            self._resampler = self._make_resampler(chunk.rate)
            self.segmenter.reset(chunk.start)
        elif self._expected_start is not None and abs(chunk.start - self._expected_start) > GAP_TOLERANCE_S:
            self.gaps += 1
            self._close_segment("gap")
            if self._resampler is not None:
                self._resampler.reset()
            self.segmenter.reset(chunk.start)
        self._expected_start = chunk.end
        self.stream_time = chunk.end
        self.audio_seconds += chunk.duration
        self.dropped_seconds += chunk.lost_before
        self._timeline.append((chunk.end, chunk.arrival, chunk.wall))
        x = self._resampler.process(samples) if self._resampler is not None else samples
        for utterance in self.segmenter.push(x):
            self._classify(utterance)
        if self.level_sinks:
            self._meter(samples, chunk.end)

    def _meter(self, samples: np.ndarray, stream_time: float) -> None:
        """Feed the live level meter (peak chunk level, speech flag) of the level sinks."""
        if self._level_ticker is None:
            from ..outputs.level import LevelTicker, level_db

            self._level_ticker, self._level_db = LevelTicker(), level_db
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
        event = self._level_ticker.push(self._level_db(rms), self.segmenter.in_speech, stream_time)
        if event is not None:
            for sink in self.level_sinks:
                sink.emit(event)

    def _make_resampler(self, rate: int) -> Any:
        if rate == self.rate:
            return None
        from ..resample import StreamResampler

        return StreamResampler(rate, self.rate)

    def _close_segment(self, reason: str) -> None:
        """Close an utterance in progress (its audio is not continued by what comes next)."""
        if self._resampler is not None:
            tail = self._resampler.flush()
            if len(tail):
                for utterance in self.segmenter.push(tail):
                    self._classify(utterance)
        for utterance in self.segmenter.flush(reason):
            self._classify(utterance)

    # -- results ------------------------------------------------------------------------------------
    def _arrival_of(self, stream_time: float) -> Tuple[float, float]:
        """(monotonic, wall) time at which the sample at ``stream_time`` had been captured."""
        chosen: Optional[Tuple[float, float, float]] = None
        for entry in reversed(self._timeline):
            if entry[0] + 1e-6 >= stream_time:
                chosen = entry
            else:
                break
        if chosen is None:
            chosen = self._timeline[-1] if self._timeline else (stream_time, time.monotonic(), time.time())
        end, arrival, wall = chosen
        return arrival, wall - max(0.0, end - stream_time)

    def _classify(self, utterance: Utterance) -> None:
        t0 = time.monotonic()
        try:
            prediction = self.classifier.classify_signal(utterance.samples, self.rate)
        except Exception as exc:  # one bad utterance must not end an unattended daemon
            self.classify_errors += 1
            log.error("classification failed: %s", exc)
            return
        done = time.monotonic()
        probabilities = self.smoother.update(prediction.probabilities)
        label = max(probabilities, key=probabilities.get)
        arrival, wall_end = self._arrival_of(utterance.end)
        extra: Dict[str, Any] = {}
        if self.smoother.weight > 0:
            extra["raw_emotion"] = prediction.label
        if self.save_dir:
            extra["audio"] = self._save(utterance, label)
        self.results += 1
        kind = "window" if self.continuous else "utterance"
        latency_ms = (time.monotonic() - arrival) * 1000.0
        event = self.events.result(kind, utterance, wall_end, label, probabilities[label], probabilities,
                                   latency_ms, (done - t0) * 1000.0, extra)
        self.sinks.emit(event)

    def _save(self, utterance: Utterance, label: str) -> str:
        from ..wav import write_wav

        name = f"utt-{self.events.seq + 1:06d}-{utterance.start:010.3f}s-{label}.wav"
        path = os.path.join(self.save_dir or ".", name)
        try:
            write_wav(path, utterance.samples, self.rate)
        except OSError as exc:
            log.error("cannot save %s: %s", path, exc)
            return ""
        return path

    # -- stopping -----------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.notifier.stopping()
        self.capture.stop()  # closes the queue: no audio enters after this
        self.capture.join(1.0)  # (only so the device is released; nothing below depends on it)
        # What was captured before the stop is still classified: all of it, which is bounded
        # (the closed queue holds at most its capacity), so the stop counters are final.
        while (item := self.queue.get(timeout=0.0)) is not None:
            if isinstance(item, Chunk) and not (self.max_seconds > 0 and item.start >= self.max_seconds):
                self._process_chunk(item)
        self._close_segment("stop")
        self._announce_start({"device_available": False})
        self._status("stop", {"reason": self._stop_reason or "stop"})
        log.info("stopped (%s)", self._stop_reason or "stop")
        self.notifier.close()
