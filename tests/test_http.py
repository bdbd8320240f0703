"""The web dashboard / HTTP API over real sockets on 127.0.0.1 (ephemeral ports).

Every endpoint, SSE resume, token enforcement, path traversal, request limits, uploads
classified by the real shipped model, and the promise that a client that stops reading
is dropped while ``emit()`` goes on.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from edge_ser.errors import EdgeSerError
from edge_ser.outputs.http import DashboardServer, create_dashboard
from edge_ser.outputs.level import LevelTicker, level_db
from edge_ser.outputs.http_config import TOKEN_ENV, HttpConfig, HttpConfigError, add_http_arguments
from tests.wavgen import sine, wav_file

TOKEN = "0123456789abcdef0123"
LABELS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


# -- helpers ----------------------------------------------------------------------------------------

def utterance(seq: int, emotion: str = "angry", latency_ms: float = 640.0, **extra: Any) -> Dict[str, Any]:
    probabilities = {label: 0.02 for label in LABELS}
    probabilities[emotion] = 0.86
    event = {"type": "utterance", "seq": seq, "start": "2026-11-24T05:00:01.120Z",
             "end": "2026-11-24T05:00:02.920Z", "stream_start": 12.3, "stream_end": 14.1, "duration": 1.8,
             "emotion": emotion, "confidence": 0.86, "probabilities": probabilities, "level_db": -23.5,
             "device": "USB mic", "model": "edge-ser 1.0 ab12cd", "latency_ms": latency_ms}
    event.update(extra)
    return event


def request(server: DashboardServer, method: str, path: str, headers: Optional[Dict[str, str]] = None,
            body: Optional[bytes] = None) -> Tuple[int, Dict[str, str], bytes]:
    host, port = server.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def get_json(server: DashboardServer, path: str, headers: Optional[Dict[str, str]] = None) -> Any:
    status, _, body = request(server, "GET", path, headers)
    assert status == 200, (path, status, body)
    return json.loads(body)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer is fine)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def raw_exchange(server: DashboardServer, data: bytes) -> bytes:
    """Send bytes as they are (no client-side URL normalization) and read until the server closes."""
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(data)
        return read_until_closed(sock)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


class SseReader:
    """A minimal EventSource: reads frames from /api/stream over a plain socket."""

    def __init__(self, server: DashboardServer, path: str = "/api/stream",
                 headers: Optional[Dict[str, str]] = None, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(server.address, timeout=timeout)
        lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.address[1]}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self.headers = head.decode("latin-1").lower()

    def next(self) -> Optional[Dict[str, Any]]:
        """The next frame with data (``{"id", "event", "data"}``), or None at end of stream."""
        while True:
            while b"\n\n" not in self.buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return None
                self.buffer += chunk
            frame, _, self.buffer = self.buffer.partition(b"\n\n")
            fields: Dict[str, Any] = {}
            for line in frame.decode("utf-8").split("\n"):
                if line.startswith(":") or not line:
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                fields["data"] = json.loads(fields["data"])
                return fields

    def close(self) -> None:
        self.sock.close()


def wait_until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    """Polls ``predicate``; the timeout only guards against a hang, it is not a speed requirement."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def make_server() -> Iterator[Any]:
    servers: List[DashboardServer] = []

    def make(*, status_provider: Any = None, classifier_factory: Any = None, info: Any = None,
             **config: Any) -> DashboardServer:
        config.setdefault("listen", "127.0.0.1:0")
        server = DashboardServer(HttpConfig(**config), status_provider=status_provider,
                                 classifier_factory=classifier_factory, info=info)
        servers.append(server.start())
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def classifier() -> Any:
    from edge_ser.classify import Classifier

    return Classifier(num_threads=1)


# -- configuration ------------------------------------------------------------------------------------

def test_config_defaults_are_loopback_and_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = HttpConfig()
    assert (config.host, config.port, config.loopback, config.token) == ("127.0.0.1", 8080, True, None)
    assert HttpConfig(listen="[::1]:0").host == "::1"
    with pytest.raises(HttpConfigError, match="without a token"):
        HttpConfig(listen="0.0.0.0:8080")
    with pytest.raises(HttpConfigError, match="without a token"):
        HttpConfig(listen="192.168.1.20:8080")
    with pytest.raises(HttpConfigError, match="without a token"):
        HttpConfig.from_mapping({"listen": "pi.local:8080"})
    with pytest.raises(HttpConfigError, match="at least 16"):
        HttpConfig(token="short")
    with pytest.raises(HttpConfigError, match="letters, digits"):
        HttpConfig(token="0123456789abcdef;x")
    with pytest.raises(HttpConfigError, match="port must be"):
        HttpConfig(listen="127.0.0.1:99999")
    with pytest.raises(HttpConfigError, match="no port"):
        HttpConfig(listen="localhost")
    with pytest.raises(HttpConfigError, match="unknown key.*lisen"):
        HttpConfig.from_mapping({"lisen": "0.0.0.0:80"})
    with pytest.raises(HttpConfigError, match="'history_size' must be an integer"):
        HttpConfig.from_mapping({"history_size": "100"})
    with pytest.raises(HttpConfigError, match="'history_size' must be 1"):
        HttpConfig.from_mapping({"history_size": 0})
    with pytest.raises(HttpConfigError, match="do not put 'token'"):
        HttpConfig.from_mapping({"token": TOKEN})
    assert "0123456789" not in repr(HttpConfig(token=TOKEN))

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    lan = HttpConfig.from_mapping({"listen": "0.0.0.0:8080", "token_file": str(token_file), "history_size": 50})
    assert (lan.token, lan.loopback, lan.history_size) == (TOKEN, False, 50)
    with pytest.raises(HttpConfigError, match="cannot read token_file"):
        HttpConfig(token_file=str(tmp_path / "missing"))
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert HttpConfig(listen="0.0.0.0:8080").token == TOKEN


def test_flags_and_toml_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    parser = argparse.ArgumentParser()
    add_http_arguments(parser)
    assert HttpConfig.from_args(parser.parse_args([])) is None
    assert HttpConfig.from_args(parser.parse_args([]), {"enabled": False, "listen": "127.0.0.1:9"}) is None
    assert HttpConfig.from_args(parser.parse_args(["--http"])).listen == "127.0.0.1:8080"
    assert HttpConfig.from_args(parser.parse_args([]), {"listen": "127.0.0.1:9000"}).port == 9000
    assert HttpConfig.from_args(parser.parse_args(["--http", "127.0.0.1:9001"]), {"listen": "127.0.0.1:9000"}).port == 9001
    with pytest.raises(HttpConfigError, match="without a token"):
        HttpConfig.from_args(parser.parse_args(["--http", "0.0.0.0:8080"]))
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = HttpConfig.from_args(parser.parse_args(["--http", "0.0.0.0:8080", "--token-file", str(token_file)]))
    assert config.token == TOKEN and not config.loopback
    with pytest.raises(HttpConfigError, match="no --http"):
        HttpConfig.from_args(parser.parse_args(["--http-history", "10"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--http-token", "supersecretvalue123"])
    assert "supersecretvalue123" not in capsys.readouterr().err


def test_port_in_use_is_a_clear_error(make_server: Any) -> None:
    first = make_server()
    second = DashboardServer(HttpConfig(listen=f"127.0.0.1:{first.address[1]}"))
    with pytest.raises(HttpConfigError, match="cannot listen on"):
        second.start()


# -- static files and path safety ---------------------------------------------------------------------

def test_dashboard_assets(make_server: Any) -> None:
    server = make_server()
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'<script src="app.js"' in body and b'id="timeline"' in body
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    for path, kind, marker in (("/app.js", "text/javascript", b"EventSource"), ("/style.css", "text/css", b".card"),
                               ("/index.html", "text/html", b"<!doctype html>")):
        status, headers, body = request(server, "GET", path)
        assert status == 200 and headers["content-type"].startswith(kind) and marker in body, path
    status, headers, body = request(server, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000
    assert request(server, "GET", "/favicon.ico")[0] == 204


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd",
    "/etc/passwd", "//etc/passwd", "/web/index.html", "/web/../../pyproject.toml", "/app.js/",
    "/App.js", "/app.js%00", "/./app.js", "/static/app.js", "/api/../app.js", "/edge_ser/outputs/http.py",
    "http://127.0.0.1/etc/passwd", "*",
])
def test_traversal_and_unknown_paths_are_404(make_server: Any, path: str) -> None:
    server = make_server()
    response = raw_exchange(server, f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status_of(response) == 404, response[:200]
    assert b"root:" not in response and b"[project]" not in response and b"import" not in response


# -- JSON API -----------------------------------------------------------------------------------------

def test_status_events_healthz(make_server: Any) -> None:
    server = make_server(info={"labels": LABELS, "backend": "tflite-runtime"})
    status = get_json(server, "/api/status")
    assert status["state"] == "waiting" and status["last_event"] is None and status["labels"] == LABELS
    assert get_json(server, "/healthz") == {"status": "ok", "state": "waiting"}

    server.emit({"type": "status", "seq": 1, "event": "start", "device": "USB mic", "model": "edge-ser 1.0 ab12cd",
                 "counters": {"overflows": 0, "dropped_seconds": 0.0, "utterances": 0, "uptime": 0.5}})
    for seq in range(2, 6):
        server.emit(utterance(seq, "happy" if seq % 2 else "sad"))
    server.emit({"type": "level", "level_db": -41.2, "speech": False, "stream_time": 12.5})
    server.emit({"type": "status", "seq": 6, "event": "device_lost", "counters": {
        "overflows": 2, "dropped_seconds": 1.25, "utterances": 4, "uptime": 30.0}})

    status = get_json(server, "/api/status")
    assert status["state"] == "device_lost"
    assert status["counters"] == {"overflows": 2, "dropped_seconds": 1.25, "utterances": 4, "uptime": 30.0}
    assert status["uptime"] == 30.0
    assert (status["device"], status["model"]) == ("USB mic", "edge-ser 1.0 ab12cd")
    assert status["last_event"]["seq"] == 5 and status["last_event"]["emotion"] == "happy"
    assert status["level"]["level_db"] == -41.2
    assert status["emotions"] == {"sad": 2, "happy": 2}
    assert status["server"]["history"] == 6  # the level event is not stored
    assert status["info"]["backend"] == "tflite-runtime"

    page = get_json(server, "/api/events")
    assert [e["id"] for e in page["events"]] == [1, 2, 3, 4, 5, 6]
    assert [e.get("seq") for e in page["events"]] == [1, 2, 3, 4, 5, 6]
    assert (page["oldest_id"], page["newest_id"]) == (1, 6)
    page = get_json(server, "/api/events?since=2&limit=2")
    assert [e["id"] for e in page["events"]] == [3, 4] and page["next_since"] == 4
    assert [e["id"] for e in get_json(server, "/api/events?limit=2")["events"]] == [5, 6]
    assert get_json(server, "/api/events?since=6")["events"] == []
    assert get_json(server, "/api/events?limit=100000")["events"][0]["id"] == 1  # clamped, not an error
    for bad in ("since=abc", "since=-1", "limit=0", "limit=x"):
        status_code, _, body = request(server, "GET", f"/api/events?{bad}")
        assert status_code == 400 and b"error" in body, bad


def test_status_provider_wins_and_its_failure_is_reported(make_server: Any) -> None:
    live = {"counters": {"utterances": 42, "overflows": 1, "dropped_seconds": 0.0, "uptime": 99.0},
            "device": "hw:1,0"}
    server = make_server(status_provider=lambda: live)
    server.emit({"type": "status", "event": "start", "device": "old", "counters": {"utterances": 0, "uptime": 1.0}})
    status = get_json(server, "/api/status")
    assert status["counters"]["utterances"] == 42 and status["uptime"] == 99.0 and status["device"] == "hw:1,0"

    def broken() -> Dict[str, Any]:
        raise RuntimeError("daemon is shutting down")

    server = make_server(status_provider=broken)
    status = get_json(server, "/api/status")
    assert "daemon is shutting down" in status["status_error"] and status["state"] == "waiting"


def test_history_is_bounded(make_server: Any) -> None:
    server = make_server(history_size=5)
    for seq in range(1, 13):
        server.emit(utterance(seq))
    page = get_json(server, "/api/events?limit=100")
    assert [e["id"] for e in page["events"]] == [8, 9, 10, 11, 12] and page["oldest_id"] == 8
    assert [e["id"] for e in get_json(server, "/api/events?since=1")["events"]] == [8, 9, 10, 11, 12]


def _parse_prometheus(text: str) -> Dict[str, float]:
    samples = {}
    line_format = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+$", line), line
            continue
        match = line_format.match(line)
        assert match, f"not Prometheus text format: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def test_metrics(make_server: Any) -> None:
    server = make_server()
    server.emit({"type": "status", "event": "start", "device": 'Mic "USB"\\1', "model": "m1",
                 "counters": {"overflows": 3, "dropped_seconds": 0.5, "utterances": 3, "uptime": 10.0}})
    latencies = [80.0, 640.0, 1200.0]
    for seq, latency in enumerate(latencies, 2):
        server.emit(utterance(seq, "calm", latency_ms=latency, device='Mic "USB"\\1', model="m1"))
    server.emit({"type": "level", "level_db": -50.0, "speech": True})
    reader = SseReader(server)
    wait_until(lambda: server.hub.client_count == 1, "the stream client")
    status, headers, body = request(server, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    m = _parse_prometheus(body.decode())
    assert m["edge_ser_input_overflows_total"] == 3 and m["edge_ser_dropped_audio_seconds_total"] == 0.5
    assert m["edge_ser_utterances_total"] == 3 and m["edge_ser_uptime_seconds"] == 10
    assert m['edge_ser_emotion_results_total{emotion="calm"}'] == 3
    assert m["edge_ser_input_level_dbfs"] == -50
    assert m['edge_ser_info{device="Mic \\"USB\\"\\\\1",model="m1",state="listening"}'] == 1
    assert m["edge_ser_event_latency_seconds_count"] == 3
    assert math.isclose(m["edge_ser_event_latency_seconds_sum"], sum(latencies) / 1000)
    assert m['edge_ser_event_latency_seconds_bucket{le="0.1"}'] == 1
    assert m['edge_ser_event_latency_seconds_bucket{le="0.75"}'] == 2
    assert m['edge_ser_event_latency_seconds_bucket{le="1.5"}'] == 3
    assert m['edge_ser_event_latency_seconds_bucket{le="+Inf"}'] == 3
    buckets = [v for k, v in m.items() if k.startswith("edge_ser_event_latency_seconds_bucket")]
    assert buckets == sorted(buckets), "histogram buckets must be cumulative"
    assert m["edge_ser_http_stream_clients"] == 1 and m["edge_ser_http_stream_clients_dropped_total"] == 0
    assert m['edge_ser_http_events_total{type="level"}'] == 1
    reader.close()


# -- Server-Sent Events -------------------------------------------------------------------------------

def test_stream_live_and_resume(make_server: Any) -> None:
    server = make_server()
    reader = SseReader(server)
    assert reader.status == 200 and "content-type: text/event-stream" in reader.headers
    wait_until(lambda: server.hub.client_count == 1, "the stream client")
    for seq in (1, 2, 3):
        server.emit(utterance(seq))
    server.emit({"type": "level", "level_db": -30.0, "speech": True, "stream_time": 1.0})
    frames = [reader.next() for _ in range(4)]
    assert [f.get("id") for f in frames] == ["1", "2", "3", None]  # level frames carry no id
    assert [f["event"] for f in frames] == ["utterance"] * 3 + ["level"]
    assert [f["data"].get("seq") for f in frames[:3]] == [1, 2, 3] and frames[0]["data"]["id"] == 1
    reader.close()
    wait_until(lambda: server.hub.client_count == 0, "the client to leave")

    server.emit(utterance(4))
    server.emit({"type": "status", "event": "periodic", "counters": {"utterances": 4}})
    # EventSource reconnects with the Last-Event-ID header: missed events first, then live ones
    reader = SseReader(server, headers={"Last-Event-ID": "3"})
    assert [(f["id"], f["event"]) for f in (reader.next(), reader.next())] == [("4", "utterance"), ("5", "status")]
    server.emit(utterance(6))
    assert reader.next()["id"] == "6"
    reader.close()

    # ?last_event_id= for the first connection; the header wins when both are given
    reader = SseReader(server, "/api/stream?last_event_id=4")
    assert [reader.next()["id"] for _ in range(2)] == ["5", "6"]
    reader.close()
    reader = SseReader(server, "/api/stream?last_event_id=1", headers={"Last-Event-ID": "5"})
    assert reader.next()["id"] == "6"
    reader.close()
    # an id from a previous server run (newer than anything here) replays the whole history
    reader = SseReader(server, headers={"Last-Event-ID": "999"})
    assert reader.next()["id"] == "1"
    reader.close()
    assert SseReader(server, headers={"Last-Event-ID": "abc"}).status == 400


def test_stream_client_limit_and_close(make_server: Any) -> None:
    server = make_server(max_stream_clients=1)
    first = SseReader(server)
    wait_until(lambda: server.hub.client_count == 1, "the stream client")
    second = SseReader(server)
    assert second.status == 503
    second.close()
    server.close()
    assert first.next() is None  # close() ends open streams
    server.emit(utterance(1))  # emit after close is ignored, not an error
    first.close()


def test_stuck_stream_client_is_dropped_while_emit_goes_on(make_server: Any) -> None:
    # A long socket timeout: the only way to drop the stuck client is its full queue.
    server = make_server(client_queue_size=16, history_size=16, request_timeout=600.0)
    stuck = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(server.address)
    stuck.sendall(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # ... and never reads
    wait_until(lambda: server.hub.client_count == 1, "the stuck client")
    good = SseReader(server)
    wait_until(lambda: server.hub.client_count == 2, "the good client")

    received: List[int] = []
    done = threading.Event()

    def read_good() -> None:
        while True:
            frame = good.next()
            if frame is None or frame["data"].get("last"):
                break
            received.append(frame["data"]["seq"])
        done.set()

    thread = threading.Thread(target=read_good, daemon=True)
    thread.start()
    padding = "x" * 32768
    emitted = 0
    while server.hub.dropped_clients == 0 and emitted < 3000:
        emitted += 1
        server.emit(utterance(emitted, padding=padding))
        # lock-step with the good client, so only the stuck one can fall behind
        wait_until(lambda: len(received) >= emitted, f"the good client to get event {emitted}")
    assert server.hub.dropped_clients == 1, f"stuck client not dropped after {emitted} events"
    for seq in range(emitted + 1, emitted + 21):  # emit() still works, the good client still gets everything
        server.emit(utterance(seq))
        wait_until(lambda: len(received) >= seq, f"the good client to get event {seq}")
    server.emit(utterance(emitted + 21, last=True))
    assert done.wait(30)
    assert received == list(range(1, emitted + 21))
    assert server.hub.client_count == 1 and server.hub.dropped_clients == 1
    stuck.settimeout(30)
    with pytest.raises((ConnectionResetError, AssertionError)):
        while stuck.recv(1 << 20):  # the server shut the stuck connection: drain reaches EOF or a reset
            pass
        raise AssertionError("EOF")
    metrics = _parse_prometheus(request(server, "GET", "/metrics")[2].decode())
    assert metrics["edge_ser_http_stream_clients_dropped_total"] == 1
    stuck.close()
    good.close()


# -- tokens -------------------------------------------------------------------------------------------

def test_token_enforced_on_every_path(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    server = make_server(token=TOKEN)
    for method, path in (("GET", "/"), ("GET", "/app.js"), ("GET", "/api/status"), ("GET", "/api/events"),
                         ("GET", "/api/stream"), ("GET", "/healthz"), ("GET", "/metrics"),
                         ("POST", "/api/classify"), ("GET", "/no-such-page")):
        status, headers, _ = request(server, method, path, body=b"" if method == "POST" else None)
        assert status == 401, (method, path, status)
        assert headers["www-authenticate"].startswith("Bearer")
        wrong = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert request(server, method, path, wrong, body=b"" if method == "POST" else None)[0] == 401
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert get_json(server, "/api/status", bearer)["state"] == "waiting"
    assert get_json(server, f"/api/status?token={TOKEN}")["state"] == "waiting"
    assert request(server, "GET", "/metrics", bearer)[0] == 200
    assert request(server, "GET", "/api/status?token=" + "y" * len(TOKEN))[0] == 401
    # the dashboard opened with ?token= moves it into an HttpOnly cookie and out of the address bar
    status, headers, _ = request(server, "GET", f"/?token={TOKEN}")
    assert status == 303 and headers["location"] == "./"
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    cookie_header = {"Cookie": cookie.split(";")[0]}
    assert request(server, "GET", "/", cookie_header)[0] == 200
    assert request(server, "GET", "/app.js", cookie_header)[0] == 200
    # EventSource cannot send headers: ?token= works for the stream
    reader = SseReader(server, f"/api/stream?token={TOKEN}")
    assert reader.status == 200
    server.emit(utterance(1))
    assert reader.next()["id"] == "1"
    reader.close()
    # with a token the Host check is off (the token is the protection): a LAN name works
    assert request(server, "GET", "/healthz", {**bearer, "Host": "pi.local:8080"})[0] == 200


def test_no_token_server_answers_only_to_loopback_host_names(make_server: Any) -> None:
    server = make_server()
    port = server.address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        assert request(server, "GET", "/healthz", {"Host": host})[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"192.168.1.5:{port}", "127.0.0.1.evil.example"):
        status, _, body = request(server, "GET", "/api/status", {"Host": host})
        assert status == 403 and b"not allowed" in body, host


# -- request limits -----------------------------------------------------------------------------------

def test_request_limits(make_server: Any) -> None:
    server = make_server(max_header_bytes=4096, max_headers=20, max_body_bytes=2048, request_timeout=0.5,
                         upload_grace_seconds=0.5)
    huge_header = b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n"
    assert status_of(raw_exchange(server, huge_header)) == 431
    many = b"".join(b"X-H%d: 1\r\n" % i for i in range(40))
    assert status_of(raw_exchange(server, b"GET /healthz HTTP/1.0\r\n" + many + b"\r\n")) == 431
    assert status_of(raw_exchange(server, b"GET /" + b"a" * 10000 + b" HTTP/1.0\r\n\r\n")) == 414
    assert status_of(raw_exchange(server, b"GARBAGE\r\n\r\n")) == 400
    # body limits and methods on /api/classify
    too_big = b"POST /api/classify HTTP/1.0\r\nContent-Length: 1000000000\r\n\r\n"
    response = raw_exchange(server, too_big)
    assert status_of(response) == 413 and b"exceeds the limit of 2048 bytes" in response
    # a client that sends the whole oversized body still gets the 413 (not a connection reset)
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"POST /api/classify HTTP/1.0\r\nContent-Length: 3000000\r\n\r\n")
        sender = threading.Thread(target=lambda: _send_quietly(sock, b"\0" * 3_000_000))
        sender.start()
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        sender.join(60)
    assert status_of(reply) == 413
    assert status_of(raw_exchange(server, b"POST /api/classify HTTP/1.0\r\n\r\n")) == 411
    chunked = b"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert status_of(raw_exchange(server, chunked)) == 411
    assert status_of(raw_exchange(server, b"POST /api/classify HTTP/1.0\r\nContent-Length: nope\r\n\r\n")) == 400
    status, headers, _ = request(server, "GET", "/api/classify")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = request(server, "POST", "/api/status", body=b"{}")
    assert status == 405 and "GET" in headers["allow"]
    assert request(server, "DELETE", "/api/events")[0] == 405
    # a client that connects and sends nothing (or half a request) is disconnected by the socket timeout
    for partial in (b"", b"GET /healthz HTTP/1.0\r\nHost: 12"):
        with socket.create_connection(server.address, timeout=60) as sock:
            sock.sendall(partial)
            assert sock.recv(1024) == b""
    # a body shorter than its Content-Length stalls: answered 408 once the grace is over, nothing classified
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"POST /api/classify HTTP/1.0\r\nContent-Length: 1000\r\n\r\nRIFF")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert status_of(reply) == 408
    assert "ok" not in server.counters()["classify"]


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # the server stopped reading after its answer: fine, the answer is what the test checks


def test_connection_cap(make_server: Any) -> None:
    server = make_server(max_connections=2, request_timeout=30.0)
    idle = [socket.create_connection(server.address, timeout=30) for _ in range(2)]
    wait_until(lambda: server.counters()["open_connections"] == 2, "two open connections")
    assert status_of(raw_exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")) == 503
    for sock in idle:
        sock.close()
    wait_until(lambda: server.counters()["open_connections"] == 0, "the idle connections to end")
    assert request(server, "GET", "/healthz")[0] == 200
    assert server.counters()["refused"] == 1


# -- POST /api/classify with the real model ---------------------------------------------------------

def test_classify_corpus_clip(make_server: Any, classifier: Any, ravdess_dir: Path) -> None:
    server = make_server(classifier_factory=lambda: classifier)
    clip = ravdess_dir / "Actor_01" / "03-01-05-01-01-01-01.wav"  # emotion 05 = angry
    body = clip.read_bytes()
    status, headers, reply = request(server, "POST", "/api/classify?name=clip.wav", {"Content-Type": "audio/wav"}, body)
    assert status == 200, reply
    result = json.loads(reply)
    expected = classifier.classify_bytes(body, "clip.wav", windows=True)
    assert result["label"] == expected.label and result["source"] == "clip.wav"
    assert set(result["probabilities"]) == set(classifier.labels)
    assert math.isclose(sum(result["probabilities"].values()), 1.0, abs_tol=0.02)
    for label, p in expected.probabilities.items():
        assert math.isclose(result["probabilities"][label], p, abs_tol=1e-6)
    assert math.isclose(result["duration"], expected.duration, abs_tol=1e-3)
    assert len(result["windows"]) == len(expected.windows) and result["model"] == classifier.model_id
    status, _, reply = request(server, "POST", "/api/classify?windows=0", body=body)
    assert status == 200 and "windows" not in json.loads(reply)


def test_classify_synthesized_wav_with_the_daemon_entry_point(make_server: Any) -> None:
    # create_dashboard: the daemon's constructor; its upload classifier is its own (shipped model here)
    server = create_dashboard(HttpConfig(listen="127.0.0.1:0"), device_name="USB mic", model_id="m",
                              labels=LABELS)
    assert get_json(server, "/api/status")["info"]["device"] == "USB mic"
    samples = sine(220.0, 1.5, 22050, amplitude=0.4)
    body = wav_file((samples * 32767).astype("int64").reshape(-1, 1), "pcm16", sample_rate=22050)
    status, _, reply = request(server, "POST", "/api/classify", body=body)
    assert status == 200, reply
    result = json.loads(reply)
    assert result["label"] in LABELS and len(result["probabilities"]) == 8
    assert math.isclose(result["duration"], 1.5, abs_tol=0.01)
    assert server.counters()["classify"] == {"ok": 1}
    server.close()


@pytest.mark.parametrize("body", [b"this is not audio at all", b"RIFF\x10\x00\x00\x00WAVEfmt ", b"\x00" * 4096])
def test_classify_bad_body_is_400_with_the_decoder_message(make_server: Any, classifier: Any, body: bytes) -> None:
    server = make_server(classifier_factory=lambda: classifier)
    with pytest.raises(EdgeSerError) as decoder_error:
        classifier.classify_bytes(body, "upload.wav")
    status, _, reply = request(server, "POST", "/api/classify", body=body)
    assert status == 400
    assert json.loads(reply)["error"] == str(decoder_error.value)
    assert request(server, "GET", "/healthz")[0] == 200  # and the server goes on


def test_classify_pool_is_bounded(make_server: Any, classifier: Any, ravdess_dir: Path) -> None:
    """One worker, no queue: while an upload is being classified, the next one gets 503."""
    gate = threading.Event()
    entered = threading.Event()

    class Gated:
        """The real classifier, held at the door until the test opens it."""

        model_id = classifier.model_id

        def classify_bytes(self, data: Any, name: str, *, windows: bool = False) -> Any:
            entered.set()
            gate.wait(60)
            return classifier.classify_bytes(data, name, windows=windows)

    server = make_server(classifier_factory=Gated, classify_workers=1, classify_queue=0)
    body = (ravdess_dir / "Actor_02" / "03-01-03-01-01-01-02.wav").read_bytes()
    first: Dict[str, Any] = {}
    thread = threading.Thread(target=lambda: first.update(r=request(server, "POST", "/api/classify", body=body)))
    thread.start()
    assert entered.wait(30)
    status, headers, reply = request(server, "POST", "/api/classify", body=body)
    assert status == 503 and headers["retry-after"] and b"busy" in reply
    assert request(server, "GET", "/api/status")[0] == 200  # the rest of the API is not blocked
    gate.set()
    thread.join(60)
    assert first["r"][0] == 200 and json.loads(first["r"][2])["label"] in LABELS
    assert server.counters()["classify"] == {"busy": 1, "ok": 1}


# -- robustness -----------------------------------------------------------------------------------------

def test_emit_survives_odd_values(make_server: Any) -> None:
    server = make_server()
    server.emit({"type": "utterance", "seq": 1, "emotion": "sad", "confidence": float("nan"),
                 "latency_ms": float("inf"), "path": Path("/tmp/x.wav"), "probabilities": {"sad": 1.0}})
    server.emit({"type": "weird type!", "seq": 2})
    events = get_json(server, "/api/events")["events"]
    assert events[0]["confidence"] is None and events[0]["path"] == "/tmp/x.wav"
    assert events[1]["type"] == "weird type!"
    reader = SseReader(server, headers={"Last-Event-ID": "0"})
    assert [reader.next()["event"] for _ in range(2)] == ["utterance", "message"]
    reader.close()


def test_ipv6_loopback(make_server: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        server = make_server(listen="[::1]:0")
    except HttpConfigError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")
    assert server.url.startswith("http://[::1]:")
    assert get_json(server, "/healthz")["status"] == "ok"


def test_level_ticker_folds_chunks_into_five_events_a_second() -> None:
    ticker = LevelTicker(0.2)
    events = []
    for i in range(1, 41):  # 2 s of 50 ms chunks; one loud chunk, one speech chunk
        level = -20.0 if i == 7 else -60.0
        event = ticker.push(level, speech=(i == 13), stream_time=i * 0.05)
        if event:
            events.append(event)
    assert [e["stream_time"] for e in events] == [round(0.25 + 0.2 * k, 3) for k in range(9)]
    # chunk 7 (t=0.35) falls in the second event, chunk 13 (t=0.65) in the third: peaks are not sampled away
    assert [e["level_db"] for e in events[:3]] == [-60.0, -20.0, -60.0]
    assert [e["speech"] for e in events[:4]] == [False, False, True, False]
    assert ticker.push(-50.0, False, 100.0)["stream_time"] == 100.0  # after a gap: one event, no burst
    assert ticker.push(-50.0, False, 100.05) is None
    assert level_db(0.0) == -120.0 and level_db(1.0) == 0.0 and level_db(0.1) == -20.0
