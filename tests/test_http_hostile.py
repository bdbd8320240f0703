"""Hostile requests to the dashboard / HTTP API over real sockets (issue 11).

* the ``?token=`` cookie: set only from a query token that is itself valid, never from raw input;
* strict framing: one ``Host``, one ``Content-Length`` of ASCII digits, no header tricks -> 400;
* every error answers JSON, also those raised by the standard library's request parsing;
* uploads: a slot is reserved before the body is read (503 + Retry-After when none is free, queued
  bodies included), and a body arriving slower than the minimum rate gets 408.

The slow-body test stalls for good, so its answer does not depend on how fast the machine is.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any, Dict, Tuple

import pytest

from edge_ser.outputs.http_config import TOKEN_ENV, HttpConfigError, HttpConfig
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
    (b"GET \x00 \x00 HTTP/0.9\r\n\r\n", 400),  # refused by the standard library, still with a status line
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
