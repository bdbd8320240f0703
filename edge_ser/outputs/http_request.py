"""Reading a request strictly: the request line, the framing rules of the header block, an
upload body that must keep arriving at a minimum rate, and a bounded drain of what was not read.

Why a request line of its own: ``str.split()`` (what the standard library's parser uses) splits
on any run of whitespace, and once the bytes are decoded as Latin-1 that includes tab, VT, FF,
bare CR, U+001C-U+001F, NEL (``\\x85``) and NBSP (``\\xa0``). RFC 9112 separates the three parts
with single SP bytes; :func:`parse_request_line` does exactly that, so ``GET\\xa0/x\\xa0HTTP/1.1``
is a 400 here rather than a request for ``/x`` that a proxy or a logger would read otherwise.
The target is kept as received: ``//`` is not ``/``.

Why strict framing: where a request ends must not be open to interpretation. Two
``Content-Length`` headers, ``+12``, ``1_2``, `` 12 ``, a folded header line or a bare CR
are read one way by Python (``int()`` accepts the first four) and another way by a
proxy or a logger in front of the device, which is how requests are smuggled or spoofed.
A careful client never sends any of that, so each one is a 400 here, before a byte
of the body is read.

Why a minimum body rate: an upload holds one of a few upload slots (and its body's
memory) while it arrives. A client that opens an upload and stalls would hold its
slot for as long as it likes; with :func:`read_body` it must deliver at least
``min_rate`` bytes a second on average once ``grace`` seconds have passed, or it gets
:class:`SlowBody` (408). The rule is a running budget, not a per-read timeout, so a
trickle of one byte every few seconds cannot stretch it either.

Why a drain (:func:`drain`): closing a socket while input is unread makes the kernel send a
reset at once and drop whatever of the answer it has not sent yet, so a client still uploading
sees "connection reset" instead of the 400 or 413 it was sent. Reading and dropping a bounded
amount first lets the answer through; the bound keeps a hostile client from holding the worker.
"""

from __future__ import annotations

import mmap
import re
import socket
import time
from dataclasses import dataclass
from typing import BinaryIO, Optional

__all__ = ["RequestLine", "RequestLineError", "parse_request_line", "Framing", "FramingError", "parse_framing",
           "read_body", "UploadBody", "SlowBody", "BodyEnded", "drain"]

#: RFC 9110 ``token``: what a method or a header name may be made of (no spaces, no colon).
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: RFC 9112 ``HTTP-version``: case-sensitive name, one digit each side of the dot.
_VERSION = re.compile(rb"HTTP/([0-9])\.([0-9])")
#: A request target is a URI: visible ASCII only (anything else must arrive percent-encoded).
_TARGET = re.compile(rb"[\x21-\x7e]+")
#: ASCII digits only (``int()`` would also take ``+``, ``_``, spaces and other scripts' digits).
_LENGTH = re.compile(rb"[0-9]{1,18}")


class RequestLineError(ValueError):
    """The request line is not ``METHOD SP request-target SP HTTP-version``: answer ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestLine:
    """The three parts of a request line, as received (the target is not normalised)."""

    method: str
    target: str
    version: str


def parse_request_line(line: bytes) -> RequestLine:
    """Split ``line`` (as received, line ending included) on single SP bytes (RFC 9112 section 3).

    Exactly three parts: a token method, a target of visible ASCII, ``HTTP/1.x``; else
    :class:`RequestLineError` (505 for a well-formed other major version). A bare LF ends
    the line as well as CRLF (RFC 9112 section 2.2); no ending at all means the client
    stopped mid-request.
    """
    if not line.endswith(b"\n"):
        raise RequestLineError("incomplete request line: it must end with CRLF")
    text = line[:-2] if line.endswith(b"\r\n") else line[:-1]
    parts = text.split(b" ")
    if len(parts) != 3:
        raise RequestLineError(f"malformed request line {_shown(text)}: expected METHOD, target and "
                               "HTTP version separated by single spaces")
    method, target, version = parts
    match = _VERSION.fullmatch(version)
    if match is None:
        raise RequestLineError(f"malformed HTTP version {_shown(version)} in the request line: "
                               "expected HTTP/1.0 or HTTP/1.1")
    if match.group(1) != b"1":
        raise RequestLineError(f"{version.decode('ascii')} is not supported; use HTTP/1.0 or 1.1", 505)
    if not _TOKEN.fullmatch(method):
        raise RequestLineError(f"malformed method {_shown(method)} in the request line")
    if not _TARGET.fullmatch(target):
        raise RequestLineError(f"malformed target {_shown(target)} in the request line: "
                               "only visible ASCII (percent-encode the rest)")
    return RequestLine(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"))


def _shown(raw: bytes, limit: int = 60) -> str:
    """``raw`` quoted for an error message: short, every odd byte escaped."""
    return repr(raw[:limit].decode("latin-1")) + ("..." if len(raw) > limit else "")


class FramingError(ValueError):
    """The header block is ambiguous about where the request ends: answer 400."""


@dataclass(frozen=True)
class Framing:
    """What the header block says about the body."""

    content_length: Optional[int]
    transfer_encoding: bool


def parse_framing(block: bytes) -> Framing:
    """Check the raw header lines (as received, final blank line included) and read the framing.

    Rules: header names are RFC 9110 tokens directly followed by ``:``; no folded lines,
    no bare CR or NUL; at most one ``Host`` and one ``Content-Length``; the length is
    ``Content-Length:`` followed by at most one space or tab and 1-18 ASCII digits, and
    nothing else; ``Transfer-Encoding`` and ``Content-Length`` never together.
    """
    lengths = []
    hosts = 0
    transfer_encoding = False
    for line in block.split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue  # the blank line that ends the block
        if line[:1] in (b" ", b"\t"):
            raise FramingError("folded header lines are not accepted")
        if b"\r" in line or b"\0" in line:
            raise FramingError("a header line holds a bare CR or a NUL byte")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise FramingError(f"malformed header line {line[:40].decode('latin-1')!r}")
        key = name.lower()
        if key == b"host":
            hosts += 1
        elif key == b"content-length":
            digits = value[1:] if value[:1] in (b" ", b"\t") else value
            if not _LENGTH.fullmatch(digits):
                raise FramingError(f"Content-Length must be 1-18 ASCII digits, "
                                   f"got {value[:40].decode('latin-1')!r}")
            lengths.append(int(digits))
        elif key == b"transfer-encoding":
            transfer_encoding = True
    if hosts > 1:
        raise FramingError("more than one Host header")
    if len(lengths) > 1:
        raise FramingError("more than one Content-Length header")
    if transfer_encoding and lengths:
        raise FramingError("Transfer-Encoding and Content-Length together")
    return Framing(lengths[0] if lengths else None, transfer_encoding)


class SlowBody(Exception):
    """The body fell behind the minimum rate (or stalled)."""

    def __init__(self, received: int, length: int) -> None:
        super().__init__(f"received {received} of {length} bytes")
        self.received = received
        self.length = length


class BodyEnded(Exception):
    """The client closed the connection before the whole body arrived."""

    def __init__(self, received: int, length: int) -> None:
        super().__init__(f"body ended after {received} of {length} bytes")
        self.received = received
        self.length = length


class UploadBody:
    """An upload's bytes, in an anonymous memory map of the announced length.

    Why a map and not a growing ``bytearray``: the kernel commits a page only when it is
    written, so the memory used follows the bytes that arrived, not what
    ``Content-Length`` claimed; the buffer is contiguous from the start, so it is never
    copied while it grows (a ``bytearray`` is reallocated, briefly twice its size, and
    fragments the heap when several uploads grow at once); and :meth:`close` gives the
    pages back to the system at once. :attr:`view` is what the classifier reads.
    """

    def __init__(self, length: int) -> None:
        self._map = mmap.mmap(-1, max(1, length))
        self.view = memoryview(self._map)[:length]

    def close(self) -> None:
        """Give the memory back (if a consumer still holds a view, when that view goes)."""
        try:
            self.view.release()
            self._map.close()
        except BufferError:
            pass

    def __enter__(self) -> "UploadBody":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_body(rfile: BinaryIO, sock: socket.socket, length: int, *, min_rate: float, grace: float,
              restore_timeout: Optional[float]) -> UploadBody:
    """Exactly ``length`` bytes from ``rfile`` (buffered over ``sock``), in an :class:`UploadBody`.

    At any moment ``t`` seconds after the first call, at least ``min_rate * (t - grace)``
    bytes must have arrived, else :class:`SlowBody`; so each wait lasts only until the
    budget earned by the bytes so far runs out. ``sock``'s timeout is set back to
    ``restore_timeout`` afterwards (for the answer). The caller closes the body.
    """
    body = UploadBody(length)
    received = 0
    start = time.monotonic()
    try:
        while received < length:
            wait = start + grace + received / min_rate - time.monotonic()
            if wait <= 0:
                raise SlowBody(received, length)
            sock.settimeout(wait)
            window = body.view[received:received + 65536]
            try:
                count = rfile.readinto1(window)  # type: ignore[attr-defined]
            except socket.timeout:
                raise SlowBody(received, length) from None
            finally:
                window.release()
            if not count:
                raise BodyEnded(received, length)
            received += count
    except BaseException:
        body.close()
        raise
    finally:
        sock.settimeout(restore_timeout)
    return body


def drain(sock: socket.socket, limit: int, seconds: float) -> int:
    """Read and drop at most ``limit`` bytes from ``sock``; how many were read.

    Stops at end of input, at ``limit``, or when nothing more arrives before ``seconds``
    have passed. Input that has already arrived is read even once the time is up (a zero
    timeout), so a worker that gets here late on a busy machine still empties what is
    there; ``limit`` bounds that, and the scratch buffer is reused, so memory and time stay
    bounded whatever the client announced.
    """
    scratch = bytearray(min(limit, 16384))
    deadline = time.monotonic() + seconds
    total = 0
    try:
        while total < limit:
            sock.settimeout(max(0.0, deadline - time.monotonic()))
            count = sock.recv_into(scratch, min(len(scratch), limit - total))
            if not count:
                break
            total += count
    except OSError:  # nothing more in time (timeout, or nothing pending at zero timeout), or a reset
        pass
    return total
