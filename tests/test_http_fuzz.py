"""Property-based fuzzing of HTTP request handling (hypothesis), over a real socket.

Two properties:

* :func:`parse_framing` either refuses a header block with :class:`FramingError` or
  agrees with the standard library's header parser on what frames the request (one
  ``Content-Length`` of the same value, at most one ``Host``): there is no block the
  two read differently;
* whatever bytes arrive, the server answers with a well-formed response: a status line,
  only headers it means to send (nothing from the request injected), never 500, every
  error as JSON naming its status, and it goes on serving.

A short run by default; ``EDGE_SER_FUZZ_EXAMPLES=N`` sets the number of examples for a
longer campaign (e.g. ``make fuzz``).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_ser.outputs.http import DashboardServer
from edge_ser.outputs.http_config import HttpConfig
from edge_ser.outputs.http_request import FramingError, parse_framing
from tests.test_http import read_until_closed, request
from tests.test_http_hostile import Gated, split_response

EXAMPLES = int(os.environ.get("EDGE_SER_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="EDGE_SER_FUZZ_EXAMPLES" not in os.environ)

NAMES = st.one_of(
    st.sampled_from([b"Host", b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Transfer-Encoding",
                     b"Cookie", b"Authorization", b"Last-Event-ID", b"X-A", b"Content-Length ", b" Host"]),
    st.binary(min_size=0, max_size=10),
)
SEPARATORS = st.sampled_from([b":", b": ", b":  ", b":\t", b" :", b""])
VALUES = st.one_of(
    st.sampled_from([b"0", b"4", b"12", b"+4", b"-4", b"1_2", b" 4 ", b"4\t", b"0x4", b"\xb2", "\u0664".encode(),
                     b"0004", b"99999999999999999999", b"127.0.0.1", b"evil.example", b"chunked",
                     b"Bearer x", b"edge_ser_token=x", b"a\rb", b"\x00"]),
    st.binary(max_size=12),
)
LINE_ENDS = st.sampled_from([b"\r\n", b"\n"])
HEADER_LINES = st.lists(st.tuples(NAMES, SEPARATORS, VALUES, LINE_ENDS).map(b"".join), max_size=6)


@FUZZ
@given(lines=HEADER_LINES, folded=st.booleans())
def test_framing_agrees_with_the_standard_library_or_refuses(lines: Any, folded: bool) -> None:
    block = b"".join(lines) + (b" folded\r\n" if folded else b"") + b"\r\n"
    try:
        framing = parse_framing(block)
    except FramingError:
        return
    try:
        message = http.client.parse_headers(io.BytesIO(block))
    except http.client.HTTPException:
        raise AssertionError(f"accepted a block the standard library cannot parse: {block!r}") from None
    lengths = message.get_all("Content-Length") or []
    assert len(lengths) <= 1 and len(message.get_all("Host") or []) <= 1, block
    if framing.content_length is None:
        assert not lengths, block
    else:
        assert [int(v) for v in lengths] == [framing.content_length], block
    assert framing.transfer_encoding == ("Transfer-Encoding" in message), block


METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"BREW", b"get", b""])
PATHS = st.one_of(
    st.sampled_from([b"/", b"/healthz", b"/api/classify", b"/api/status", b"/api/events", b"/metrics",
                     b"/app.js", b"/favicon.ico", b"/../etc/passwd", b"*", b"/?token=a%0d%0aX-Injected:%20y",
                     b"/api/events?since=-1", b"/api/classify?name=%0d%0a&windows=0"]),
    st.binary(max_size=20),
)
VERSIONS = st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/1.x", b"HTTP/0.9", b""])
ALLOWED_RESPONSE_HEADERS = {
    "server", "date", "content-type", "content-length", "cache-control", "x-content-type-options",
    "referrer-policy", "x-frame-options", "connection", "allow", "retry-after", "www-authenticate",
    "content-security-policy", "location", "set-cookie", "x-accel-buffering",
}


def exchange(address: Any, data: bytes) -> bytes:
    """Send the request, end our side (so nothing waits for more input), read the answer."""
    with socket.create_connection(address, timeout=30) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server answered and closed early: its answer is still readable
        return read_until_closed(sock)


@pytest.fixture(scope="module")
def server() -> Iterator[DashboardServer]:
    """One server for every example (an instant stand-in classifier: the model is not under test)."""
    with DashboardServer(HttpConfig(listen="127.0.0.1:0", request_timeout=5.0),
                         classifier_factory=lambda: Gated(open_gate=True)) as running:
        yield running


@FUZZ
@given(method=METHODS, path=PATHS, version=VERSIONS, lines=HEADER_LINES, body=st.binary(max_size=64))
def test_any_request_gets_a_well_formed_answer(server: DashboardServer, method: bytes, path: bytes,
                                               version: bytes, lines: Any, body: bytes) -> None:
    data = b" ".join(p for p in (method, path, version) if p) + b"\r\n" + b"".join(lines) + b"\r\n" + body
    reply = exchange(server.address, data)
    if not reply:
        return  # an empty request line: nothing to answer
    status, headers, payload, raw_lines = split_response(reply)
    assert reply.startswith(b"HTTP/1.0 "), reply[:100]
    assert status != 500, (data, reply[:300])
    names = {line.partition(":")[0].strip().lower() for line in raw_lines}
    assert names <= ALLOWED_RESPONSE_HEADERS, (data, names - ALLOWED_RESPONSE_HEADERS)
    if status >= 400 and method != b"HEAD" and payload:
        assert headers["content-type"].startswith("application/json"), (data, reply[:300])
        assert json.loads(payload)["status"] == status
    assert request(server, "GET", "/healthz")[0] == 200
