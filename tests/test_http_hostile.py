"""Hostile requests to the dashboard / HTTP API over real sockets (issue 11).

* the ``?token=`` cookie: set only from a query token that is itself valid, never from raw input;
* strict framing: one ``Host``, one ``Content-Length`` of ASCII digits, no header tricks -> 400;
* every error answers JSON, also those of request-line and header parsing;
* uploads: a slot is reserved before the body is read (503 + Retry-After when none is free, queued
  bodies included), and a body arriving slower than the minimum rate gets 408.
* the request line is split on single SP only (RFC 9112): other whitespace, NEL or NBSP -> 400, at once;
* a path is a route only when it is exactly one: ``//?token=`` is 404 and sets no cookie;
* an answer given without reading the announced body is not cut off by a reset, and the drain
  that makes it so is bounded.

The slow-body test stalls for good, so its answer does not depend on how fast the machine is.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Dict, Tuple

import pytest

from edge_ser.outputs.http_config import TOKEN_ENV, HttpConfigError, HttpConfig
from edge_ser.outputs.http_request import drain
from tests.test_http import (  # noqa: F401
    LABELS, make_server, raw_exchange, read_until_closed, request, status_of, wait_until,
)

TOKEN = "0123456789abcdef0123"


def split_response(response: bytes) -> Tuple[int, Dict[str, str], bytes, list]:
    """Status, headers (lower-case names, last wins), body, and the raw header lines."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers, body, lines[1:]


# -- the token cookie ---------------------------------------------------------------------------------

@pytest.fixture
def token_server(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    return make_server(token=TOKEN)


def test_query_token_cannot_inject_a_response_header(token_server: Any) -> None:
    request_bytes = (b"GET /?token=zz%0d%0aX-Injected:%20yes HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n")
    status, headers, _, lines = split_response(raw_exchange(token_server, request_bytes))
    assert not any(line.lower().startswith("x-injected") for line in lines), lines
    assert "set-cookie" not in headers, "an invalid query token must never become a cookie"
    assert status in (200, 303)


def test_wrong_query_token_does_not_replace_a_good_cookie(token_server: Any) -> None:
    good_cookie = {"Cookie": f"edge_ser_token={TOKEN}"}
    status, headers, _ = request(token_server, "GET", "/?token=wrong", good_cookie)
    assert status in (200, 303) and "set-cookie" not in headers
    status, headers, _ = request(token_server, "GET", "/?token=" + "y" * len(TOKEN), good_cookie)
    assert status in (200, 303) and "set-cookie" not in headers
    # the valid one still becomes the cookie, with the server's own token as its value
    status, headers, _ = request(token_server, "GET", f"/?token={TOKEN}")
    assert status == 303 and headers["set-cookie"].split(";")[0] == f"edge_ser_token={TOKEN}"


# -- strict framing -----------------------------------------------------------------------------------

BAD_FRAMING = {
    "duplicate Content-Length": b"Content-Length: 4\r\nContent-Length: 4\r\n",
    "duplicate Content-Length, differing": b"Content-Length: 4\r\nContent-Length: 40\r\n",
    "duplicate Host": b"Host: evil.example\r\n",
    "signed length": b"Content-Length: +4\r\n",
    "underscore in length": b"Content-Length: 0_4\r\n",
    "spaces around length": b"Content-Length:  4 \r\n",
    "tab after length": b"Content-Length: 4\t\r\n",
    "non-ASCII digits (UTF-8)": "Content-Length: \u0664\r\n".encode("utf-8"),
    "non-ASCII digit (Latin-1 superscript)": b"Content-Length: \xb2\r\n",
    "negative length": b"Content-Length: -4\r\n",
    "hex length": b"Content-Length: 0x4\r\n",
    "empty length": b"Content-Length: \r\n",
    "space before colon": b"Content-Length : 4\r\n",
    "folded header": b"X-Note: a\r\n  folded\r\n",
    "Transfer-Encoding with Content-Length": b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
}


@pytest.mark.parametrize("path", ["GET /healthz", "POST /api/classify"])
@pytest.mark.parametrize("case", sorted(BAD_FRAMING))
def test_ambiguous_framing_is_400_json(make_server: Any, path: str, case: str) -> None:
    classifiers = []
    server = make_server(classifier_factory=lambda: classifiers.append(Gated(open_gate=True)) or classifiers[-1])
    data = path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + BAD_FRAMING[case] + b"\r\nRIFF"
    status, headers, body, _ = split_response(raw_exchange(server, data))
    assert status == 400, (case, status, body[:200])
    assert not classifiers, "refused at the framing, before any body is read or classified"
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["status"] == 400 and json.loads(body)["error"]


def test_plain_lengths_still_work(make_server: Any) -> None:
    gated = Gated(open_gate=True)
    server = make_server(classifier_factory=lambda: gated)
    for line in (b"Content-Length: 4", b"Content-Length:4", b"content-length: 4", b"Content-Length: 0004"):
        data = b"POST /api/classify HTTP/1.0\r\nHost: 127.0.0.1\r\n" + line + b"\r\n\r\nRIFF"
        status, _, body, _ = split_response(raw_exchange(server, data))
        assert status == 200 and json.loads(body)["label"] == "calm", (line, body)
    assert status_of(raw_exchange(server, b"GET /healthz HTTP/1.0\r\nContent-Length: 0\r\n\r\n")) == 200


@pytest.mark.parametrize("data, code", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /healthz HTTP/9.9\r\n\r\n", 505),
    (b"GET /healthz HTTP/1.x\r\n\r\n", 400),
    (b"GET / HTTP/0.9\r\n\r\n", 505),  # else a headerless HTTP/0.9 answer: no Content-Type, no CSP
    (b"GET \x00 \x00 HTTP/0.9\r\n\r\n", 400),  # a malformed request line: still a status line
    (b"GET /" + b"a" * 10000 + b" HTTP/1.0\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.0\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"BREW /healthz HTTP/1.0\r\n\r\n", 405),
])
def test_standard_library_errors_answer_json(make_server: Any, data: bytes, code: int) -> None:
    server = make_server()
    status, headers, body, _ = split_response(raw_exchange(server, data))
    assert status == code
    assert headers["content-type"].startswith("application/json"), headers
    payload = json.loads(body)
    assert payload["status"] == code and isinstance(payload["error"], str) and payload["error"]
    assert int(headers["content-length"]) == len(body)


def test_header_values_with_line_breaks_are_never_sent(make_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared send path refuses CR/LF in any header: no code path can inject one."""
    from edge_ser.outputs import http as http_module

    refused: Dict[str, str] = {}

    def careless_endpoint(self: Any, path: str) -> None:
        try:
            self._send(200, b"{}", "application/json", {"X-Test": "a\r\nX-Injected: yes"})
        except ValueError as exc:
            refused["why"] = str(exc)
            self._error(500, "refused")

    monkeypatch.setattr(http_module._Handler, "_healthz", careless_endpoint)
    server = make_server()
    response = raw_exchange(server, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert b"X-Injected" not in response.partition(b"\r\n\r\n")[0]
    assert "why" in refused and status_of(response) == 500


# -- upload slots and the minimum body rate ------------------------------------------------------------

class Gated:
    """A stand-in classifier that holds its worker until the test opens the gate."""

    model_id = "gated"

    def __init__(self, open_gate: bool = False) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        if open_gate:
            self.gate.set()

    def classify_bytes(self, data: Any, name: str, *, windows: bool = False) -> Any:
        self.entered.set()
        self.gate.wait(60)
        from edge_ser.classify import Prediction

        return Prediction(label="calm", confidence=1.0, probabilities={"calm": 1.0}, duration=0.0, source=name)


def start_upload(server: Any, length: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(server.address, timeout=60)
    sock.sendall(b"POST /api/classify HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % length + first)
    return sock


def test_upload_slot_is_reserved_before_the_body_is_read(make_server: Any) -> None:
    # one slot; a generous minimum-rate grace so the stalled upload keeps its slot
    server = make_server(classify_workers=1, classify_queue=0, upload_grace_seconds=600.0)
    holder = start_upload(server, 1_000_000, b"RIFF")  # starts its body and stalls
    wait_until(lambda: server.counters()["uploads"]["active"] == 1, "the first upload to take the slot")
    # the next one is refused before a byte of its body is read (it sends none)
    late = start_upload(server, 1_000_000)
    status, headers, body, _ = split_response(read_until_closed(late))
    assert status == 503 and int(headers["retry-after"]) > 0 and json.loads(body)["status"] == 503
    late.close()
    assert server.counters()["classify"].get("busy") == 1
    holder.close()  # the slot comes back when the first upload ends
    wait_until(lambda: server.counters()["uploads"]["active"] == 0, "the slot to be released")


def test_queued_bodies_count_toward_the_bound(make_server: Any) -> None:
    gated = Gated()
    # one worker, one queue place: two slots, whether a body is being classified, queued or received
    server = make_server(classifier_factory=lambda: gated, classify_workers=1, classify_queue=1,
                         upload_grace_seconds=600.0)
    replies: Dict[str, bytes] = {}

    def post(name: str) -> None:
        sock = start_upload(server, 4, b"RIFF")
        replies[name] = read_until_closed(sock)
        sock.close()

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert gated.entered.wait(30)  # being classified: slot 1
    second = threading.Thread(target=post, args=("second",))
    second.start()  # complete body, queued behind the worker: slot 2
    wait_until(lambda: server.counters()["uploads"]["active"] == 2, "the queued upload")
    third = start_upload(server, 1_000_000)  # no body sent at all
    assert status_of(read_until_closed(third)) == 503
    third.close()
    gated.gate.set()
    first.join(60)
    second.join(60)
    assert status_of(replies["first"]) == 200 and status_of(replies["second"]) == 200
    wait_until(lambda: server.counters()["uploads"]["active"] == 0, "the slots to be released")
    assert server.counters()["classify"] == {"ok": 2, "busy": 1}


def test_stalled_body_gets_408(make_server: Any) -> None:
    # a short grace: the client stalls for good after 1000 bytes, far longer than the grace
    server = make_server(upload_grace_seconds=0.2, min_upload_rate=65536, request_timeout=30.0)
    sock = start_upload(server, 1_000_000, b"RIFF" + b"\0" * 996)
    status, headers, body, _ = split_response(read_until_closed(sock))
    sock.close()
    assert status == 408, body[:200]
    payload = json.loads(body)
    assert payload["status"] == 408 and "65536 bytes/s" in payload["error"]
    assert server.counters()["classify"] == {"slow": 1}
    wait_until(lambda: server.counters()["uploads"]["active"] == 0, "the slot to be released")


def test_upload_settings_are_validated() -> None:
    config = HttpConfig()
    assert (config.min_upload_rate, config.upload_grace_seconds) == (65536, 5.0)
    assert config.upload_slots == config.classify_workers + config.classify_queue
    with pytest.raises(HttpConfigError, match="min_upload_rate"):
        HttpConfig(min_upload_rate=10)
    with pytest.raises(HttpConfigError, match="upload_grace_seconds"):
        HttpConfig.from_mapping({"upload_grace_seconds": -1.0})
    assert HttpConfig.from_mapping({"min_upload_rate": 8192, "upload_grace_seconds": 2}).upload_grace_seconds == 2.0


# -- the request line: split on single SP only (RFC 9112 section 3) ------------------------------------

#: Request lines that ``str.split()`` would read as three words (or that are otherwise not
#: ``METHOD SP TARGET SP HTTP/x.y``): each is a 400, never a request for /healthz.
BAD_REQUEST_LINES = {
    "NEL (U+0085) as separator": b"GET\x85/healthz\x85HTTP/1.0",
    "NBSP (U+00A0) as separator": b"GET\xa0/healthz\xa0HTTP/1.0",
    "NEL before the version": b"GET /healthz\x85HTTP/1.0",
    "NEL inside the target": b"GET /heal\x85thz HTTP/1.0",
    "tab": b"GET\t/healthz HTTP/1.0",
    "vertical tab": b"GET\x0b/healthz HTTP/1.0",
    "form feed": b"GET /healthz\x0cHTTP/1.0",
    "bare CR": b"GET /healthz\rHTTP/1.0",
    "unit separator (U+001F)": b"GET\x1f/healthz HTTP/1.0",
    "two spaces": b"GET  /healthz HTTP/1.0",
    "leading space": b" GET /healthz HTTP/1.0",
    "trailing space": b"GET /healthz HTTP/1.0 ",
    "no version": b"GET /healthz",
    "two-digit minor version": b"GET /healthz HTTP/1.10",
    "lower-case protocol name": b"GET /healthz http/1.0",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUEST_LINES))
def test_request_line_is_split_on_single_spaces_only(make_server: Any, case: str) -> None:
    server = make_server()
    data = BAD_REQUEST_LINES[case] + b"\r\nHost: 127.0.0.1\r\n\r\n"
    status, headers, body, _ = split_response(raw_exchange(server, data))
    assert status == 400, (case, status, body[:200])
    assert headers["content-type"].startswith("application/json")
    payload = json.loads(body)
    assert payload["status"] == 400
    assert "request line" in payload["error"] or "HTTP version" in payload["error"], payload
    assert b'"ok"' not in body
    assert server.counters()["responses"] == {"400": 1}, "nothing was served"


def test_malformed_request_line_is_answered_at_once(make_server: Any) -> None:
    """The 400 comes before any header is read: a client that sends only the line is not left waiting."""
    server = make_server(request_timeout=600.0)
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"GET\xa0/healthz\xa0HTTP/1.1\r\n")  # no header block follows, and the client waits
        status, _, body, _ = split_response(read_until_closed(sock))
    assert status == 400 and json.loads(body)["status"] == 400


def test_request_line_edge_cases(make_server: Any) -> None:
    server = make_server()
    # RFC 9112 section 2.2: one empty line before the request line is ignored
    assert status_of(raw_exchange(server, b"\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200
    assert status_of(raw_exchange(server, b"\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n")) == 400
    # a request line that ends without CRLF (the client stopped sending) is incomplete
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0")
        sock.shutdown(socket.SHUT_WR)
        assert status_of(read_until_closed(sock)) == 400
    # another major version is 505, whatever follows
    assert status_of(raw_exchange(server, b"GET /healthz HTTP/2.0\r\n\r\n")) == 505


# -- paths are matched exactly: // is not / ------------------------------------------------------------

@pytest.mark.parametrize("target", ["//", f"//?token={TOKEN}", f"///?token={TOKEN}", f"//index.html?token={TOKEN}",
                                    f"/index.html/?token={TOKEN}", "//app.js"])
def test_a_path_that_is_not_a_route_is_404_and_sets_no_cookie(token_server: Any, target: str) -> None:
    data = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    status, headers, body, _ = split_response(raw_exchange(token_server, data))
    assert status == 404, (target, status, body[:200])
    assert "set-cookie" not in headers and "location" not in headers
    assert json.loads(body) == {"error": "not found", "status": 404}


def test_double_slash_is_not_the_dashboard_without_a_token_either(make_server: Any) -> None:
    server = make_server()
    response = raw_exchange(server, b"GET // HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(response) == 404 and b"<!doctype html>" not in response
    assert status_of(raw_exchange(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200


# -- an answer given before the body was read still reaches the client ---------------------------------

def _small_window_client(server: Any) -> socket.socket:
    """A client with the smallest receive buffer: an answer larger than it waits in the server's kernel."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.settimeout(60)
    sock.connect(server.address)
    return sock


@pytest.mark.parametrize("method, path, code", [
    ("X" * 3000, "/healthz", 405),  # refused before the body; the answer names the method, so it is large
    ("GET", "/", 200),  # a body nobody asked for; the page is larger than the client's window
])
def test_answer_is_not_cut_off_by_a_reset_when_the_body_was_not_read(make_server: Any, method: str, path: str,
                                                                      code: int) -> None:
    server = make_server()
    sock = _small_window_client(server)
    # part of an announced body is already sent (more than the server's read buffer); the client
    # then waits without reading, as one that is still uploading would
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n".encode()
                 + b"\0" * 30000)
    wait_until(lambda: server.counters()["responses"].get(str(code)) == 1, "the answer")
    wait_until(lambda: server.counters()["open_connections"] == 0, "the server to let the connection go")
    status, headers, body, _ = split_response(read_until_closed(sock))
    sock.close()
    assert status == code
    assert len(body) == int(headers["content-length"]), "the answer was cut off (the server reset the connection)"


def test_unread_body_is_drained_only_up_to_a_bound(make_server: Any) -> None:
    """A client announcing a huge body and sending without pause is not read to the end: the server
    answers, reads a bounded amount, and closes while the client is still sending."""
    server = make_server()
    total = 256 * 1024 * 1024
    sent = {"bytes": 0, "stopped": False}
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(b"POST /no-such-page HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n" % (10 ** 15))

        def send_forever() -> None:
            chunk = b"\0" * 65536
            try:
                while sent["bytes"] < total:
                    sock.sendall(chunk)
                    sent["bytes"] += len(chunk)
            except OSError:
                sent["stopped"] = True  # the server closed: what the test expects

        sender = threading.Thread(target=send_forever)
        sender.start()
        status, headers, body, _ = split_response(read_until_closed(sock))
        sender.join(120)
    assert status == 404 and json.loads(body)["status"] == 404
    assert sent["stopped"] and sent["bytes"] < total, "the server read the body to the end"
    wait_until(lambda: server.counters()["open_connections"] == 0, "the connection to end")


def test_drain_stops_at_its_limit_and_at_end_of_input() -> None:
    """The helper behind the above, over a socket pair: bounded by bytes, and already-arrived input
    is read even when no time is left (a late worker on a busy machine must not turn the answer into a reset)."""
    left, right = socket.socketpair()
    with left, right:
        right.sendall(b"x" * 1000)
        assert drain(left, 65536, 0.0) == 1000

        def send_and_end() -> None:
            right.sendall(b"y" * 80_000)
            right.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_and_end)
        sender.start()
        assert drain(left, 65536, 60.0) == 65536  # the limit, though more is coming
        sender.join(60)
        assert drain(left, 65536, 60.0) == 80_000 - 65536  # the rest, then end of input ends it
        assert drain(left, 65536, 60.0) == 0
