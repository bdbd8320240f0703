"""The dashboard in a real headless Chromium, fed by the real classifier on real clips.

Needs the Debian ``chromium`` package and Playwright for Python (``pip install
playwright``; never ``playwright install``: the system Chromium is used). Skips with
the reason when either is missing.

When ``edge-ser listen`` has ``--http``, the real daemon is driven with ``--file``;
otherwise a small driver in this file runs :class:`edge_ser.classify.Classifier` over
corpus clips and emits the daemon's event types into the server.

A screenshot is saved in the test's tmp dir; with ``EDGE_SER_UPDATE_SCREENSHOT=1`` it
is also written to ``docs/dashboard.png`` (the README's picture).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import numpy as np
import pytest

from edge_ser.outputs.http import DashboardServer
from edge_ser.outputs.http_config import HttpConfig

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: One clip per emotion code (RAVDESS EE = 01..08), from two actors.
CLIPS = ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_01/03-01-03-02-01-01-01.wav",
         "Actor_01/03-01-05-02-01-01-01.wav", "Actor_02/03-01-04-02-02-01-02.wav",
         "Actor_02/03-01-06-02-01-01-02.wav", "Actor_01/03-01-02-02-02-01-01.wav",
         "Actor_02/03-01-07-02-01-01-02.wav", "Actor_01/03-01-08-02-01-01-01.wav"]
TIMEOUT_MS = 60_000  # generous: guards against a hang, not a speed requirement


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (no 'playwright install' needed); make test installs it")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium); make test installs it")
    return sync_playwright


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright = _sync_playwright()
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


def _iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _level_db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if samples.size else 0.0
    return 20 * math.log10(max(rms, 1e-5))


class ClipDriver:
    """Plays the daemon's part: real clips through the real classifier, events into the server.

    Level events are the clips' real RMS levels in 200 ms steps (as the daemon's meter
    events would be); each utterance event carries the classifier's real answer.
    """

    def __init__(self, server: DashboardServer, classifier: Any, clips: List[Path]) -> None:
        self.server = server
        self.classifier = classifier
        self.clips = clips
        self.emitted: List[Dict[str, Any]] = []
        self.t0 = time.time()
        self.seq = 0
        self.levels: List[float] = [-60.0]
        self._meter_stop = threading.Event()
        self._meter: Optional[threading.Thread] = None

    def _event(self, kind: str, **fields: Any) -> Dict[str, Any]:
        self.seq += 1
        return {"type": kind, "seq": self.seq, **fields}

    def counters(self, utterances: int) -> Dict[str, Any]:
        return {"overflows": 0, "dropped_seconds": 0.0, "utterances": utterances,
                "uptime": round(time.time() - self.t0, 1)}

    def run(self) -> None:
        from edge_ser.audio import load_audio

        device = "file: RAVDESS clips"
        self.server.emit(self._event("status", event="start", device=device, model=self.classifier.model_id,
                                     counters=self.counters(0)))
        stream_time = 0.0
        for n, clip in enumerate(self.clips, 1):
            samples, rate = load_audio(str(clip), self.classifier.sample_rate)
            step = int(0.2 * rate)
            for start in range(0, samples.size, step * 3):  # a few meter updates per clip, fast-forwarded
                level = _level_db(samples[start:start + step])
                self.server.emit({"type": "level", "level_db": round(level, 1), "speech": level > -45,
                                  "stream_time": round(stream_time + start / rate, 2)})
                time.sleep(0.02)
            t_start = time.time()
            prediction = self.classifier.classify_file(str(clip))
            classify_ms = (time.time() - t_start) * 1000
            # spread the clips over the last few minutes so the timelines show a room's afternoon
            end = time.time() - (len(self.clips) - n) * 35
            event = self._event(
                "utterance", start=_iso(end - prediction.duration), end=_iso(end),
                stream_start=round(stream_time, 3), stream_end=round(stream_time + prediction.duration, 3),
                duration=round(prediction.duration, 3), emotion=prediction.label,
                confidence=round(prediction.confidence, 4),
                probabilities={k: round(v, 4) for k, v in prediction.probabilities.items()},
                level_db=round(_level_db(samples), 1), device=device, model=self.classifier.model_id,
                latency_ms=round(600 + classify_ms, 1), classify_ms=round(classify_ms, 1))
            stream_time += prediction.duration + 1.0
            self.server.emit(event)
            self.emitted.append(event)
            time.sleep(0.1)
        self.server.emit(self._event("status", event="periodic", device=device, model=self.classifier.model_id,
                                     counters=self.counters(len(self.clips))))
        self.levels = [_level_db(samples[i:i + step]) for i in range(0, samples.size, step)]

    def start_meter(self) -> None:
        """Keep the meter alive as the daemon does (5 level events a second), replaying the last clip's levels."""
        def loop() -> None:
            i = 0
            while not self._meter_stop.wait(0.2):
                level = self.levels[i % len(self.levels)]
                self.server.emit({"type": "level", "level_db": round(level, 1), "speech": level > -45,
                                  "stream_time": round(i * 0.2, 1)})
                i += 1

        self._meter = threading.Thread(target=loop, daemon=True)
        self._meter.start()

    def stop_meter(self) -> None:
        self._meter_stop.set()
        if self._meter is not None:
            self._meter.join(5)


def _daemon_has_http() -> bool:
    try:
        out = subprocess.run([sys.executable, "-m", "edge_ser", "listen", "--help"], capture_output=True,
                             text=True, timeout=120, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--http" in out.stdout


# The page's Content-Security-Policy forbids eval, which Playwright's wait_for_function
# uses; so waits are ``expect`` polls from Python, and the CSP stays on as users get it.

def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _open(page: Any, url: str) -> None:
    page.goto(url, timeout=TIMEOUT_MS)
    _expect()(page.locator("#conn")).to_have_text("live", timeout=TIMEOUT_MS)


def _watch_console(page: Any, problems: List[str]) -> None:
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" or "Content Security Policy" in msg.text else None)


def _check_dashboard(page: Any, expected: List[Dict[str, Any]], check_level: bool = True) -> None:
    expect = _expect()
    last = expected[-1]
    expect(page.locator("#recent li")).to_have_count(len(expected), timeout=TIMEOUT_MS)
    expect(page.locator("#current-emotion")).to_have_text(last["emotion"], timeout=TIMEOUT_MS)
    assert page.text_content("#current-emotion") == last["emotion"]
    assert page.get_attribute("#current", "data-emotion") == last["emotion"]
    assert page.text_content("#current-confidence") == f"confidence {round(100 * last['confidence'])}%"
    # the timeline: one block per utterance, in order, each labelled (not colour alone)
    blocks = page.eval_on_selector_all("#timeline .tl-item", "els => els.map(e => [e.dataset.emotion, e.textContent])")
    assert [b[0] for b in blocks] == [e["emotion"] for e in expected]
    assert all(len(b[1]) == 2 for b in blocks)
    recent = page.eval_on_selector_all("#recent li", "els => els.map(e => e.dataset.emotion)")
    assert recent == [e["emotion"] for e in reversed(expected)]
    # probability bars show the last result; the top one is marked
    top = page.get_attribute("#probs li.top", "data-emotion")
    assert top == last["emotion"]
    width = page.eval_on_selector(f'#probs li[data-emotion="{last["emotion"]}"] .fill', "e => e.style.width")
    assert math.isclose(float(width.rstrip("%")), 100 * last["confidence"], abs_tol=0.2)
    expect(page.locator("#c-utterances")).to_have_text(str(len(expected)), timeout=TIMEOUT_MS)
    if check_level:
        expect(page.locator("#level-text")).to_have_text(re.compile(r"^-?\d+ dBFS$"), timeout=TIMEOUT_MS)
    assert page.text_content("#i-model") == last["model"]


def _screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def test_dashboard_follows_the_classifier(browser: Any, ravdess_dir: Path, tmp_path: Path) -> None:
    from edge_ser.classify import Classifier

    clips = [ravdess_dir / name for name in CLIPS]
    classifier = Classifier(num_threads=1)
    server = DashboardServer(HttpConfig(listen="127.0.0.1:0"),
                             info={"labels": list(classifier.labels), "model": classifier.model_id},
                             classifier_factory=lambda: classifier).start()
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: List[str] = []
        _watch_console(page, errors)
        _open(page, server.url)
        assert page.text_content("#current-emotion") == "waiting for speech"
        driver = ClipDriver(server, classifier, clips)
        thread = threading.Thread(target=driver.run)
        thread.start()
        # the current emotion changes while events flow
        _expect()(page.locator("#current-emotion")).not_to_have_text("waiting for speech", timeout=TIMEOUT_MS)
        first = page.text_content("#current-emotion")
        assert first in [e["emotion"] for e in driver.emitted]
        thread.join(300)
        driver.start_meter()
        _check_dashboard(page, driver.emitted)
        _expect()(page.locator("#speech")).to_have_text("speech", timeout=TIMEOUT_MS)  # a lively meter for the picture
        artifact = _screenshot(page, tmp_path, "dashboard.png")
        if os.environ.get("EDGE_SER_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(artifact, ROOT / "docs" / "dashboard.png")

        # a reload rebuilds the same view from /api/events
        page.reload()
        _expect()(page.locator("#conn")).to_have_text("live", timeout=TIMEOUT_MS)
        _check_dashboard(page, driver.emitted)

        # phone screen: one column, nothing wider than the screen
        phone = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
        _watch_console(phone, errors)
        _open(phone, server.url)
        _check_dashboard(phone, driver.emitted)
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        _screenshot(phone, tmp_path, "dashboard-phone.png")
        assert errors == []
    finally:
        if "driver" in locals():
            driver.stop_meter()
        server.close()


def test_dashboard_with_a_token(browser: Any, ravdess_dir: Path, tmp_path: Path) -> None:
    """Opened once as /?token=..., the page works from its HttpOnly cookie (stream included)."""
    from edge_ser.classify import Classifier

    token = "b7e1c0ffee2d4a55aa90"
    classifier = Classifier(num_threads=1)
    server = DashboardServer(HttpConfig(listen="127.0.0.1:0", token=token)).start()
    try:
        page = browser.new_page()
        response = page.goto(server.url, timeout=TIMEOUT_MS)
        assert response.status == 401 and "token" in page.content()
        _open(page, server.url + f"?token={token}")
        assert "token" not in page.url  # moved into the cookie
        driver = ClipDriver(server, classifier, [ravdess_dir / CLIPS[2]])
        driver.run()
        driver.start_meter()
        try:
            _check_dashboard(page, driver.emitted)
        finally:
            driver.stop_meter()
    finally:
        server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clip_sequence(ravdess_dir: Path, names: List[str], out: Path, gap_s: float = 1.5,
                   tail_s: float = 120.0) -> List[float]:
    """Real clips with silence between them and a long silent tail, as one 16 kHz WAV; returns clip starts."""
    pieces: List[np.ndarray] = []
    starts: List[float] = []
    t = 0.0
    for name in names:
        with wave.open(str(ravdess_dir / name), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
            clip = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        pieces += [np.zeros(int(gap_s * 16000), dtype="<i2"), clip]
        starts.append(t + gap_s)
        t += gap_s + clip.size / 16000
    pieces.append(np.zeros(int(tail_s * 16000), dtype="<i2"))
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.concatenate(pieces).tobytes())
    return starts


def _get_json(url: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow  # real-time pace: about 30 s
def test_dashboard_follows_the_real_daemon(browser: Any, ravdess_dir: Path, tmp_path: Path) -> None:
    """``edge-ser listen --file X --realtime --http``: the page shows what the daemon's API holds."""
    if not _daemon_has_http():
        pytest.skip("edge-ser listen has no --http option yet (the driver test above covers the page)")
    wav = tmp_path / "room.wav"
    starts = _clip_sequence(ravdess_dir, CLIPS[:5], wav)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    daemon = subprocess.Popen([sys.executable, "-m", "edge_ser", "listen", "--file", str(wav), "--realtime",
                               "--http", f"127.0.0.1:{port}", "--no-stdout", "--quiet"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _get_json(url + "healthz")
                break
            except OSError:
                assert daemon.poll() is None, daemon.stderr.read().decode()
                assert time.monotonic() < deadline, "the daemon's dashboard never answered"
                time.sleep(0.2)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors: List[str] = []
        _watch_console(page, errors)
        _open(page, url)
        # wait (bounded) until the daemon has closed an utterance that began in the last clip
        deadline = time.monotonic() + 180
        while True:
            results = [e for e in _get_json(url + "api/events?limit=1000")["events"]
                       if e["type"] in ("utterance", "window")]
            if results and results[-1]["stream_end"] > starts[-1]:
                break
            assert daemon.poll() is None, daemon.stderr.read().decode()
            assert time.monotonic() < deadline, f"the daemon produced only {len(results)} results"
            time.sleep(0.5)
        _check_dashboard(page, results, check_level=False)
        metrics = urllib_text(url + "metrics")
        if 'edge_ser_http_events_total{type="level"}' in metrics:
            _expect()(page.locator("#level-text")).to_have_text(re.compile(r"^-?\d+ dBFS$"), timeout=TIMEOUT_MS)
        assert page.text_content("#i-device").strip() not in ("", "–")
        _screenshot(page, tmp_path, "dashboard-daemon.png")
        assert errors == []
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(30)


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()
