"""Reading a request strictly: the framing rules of the header block, and an upload body
that must keep arriving at a minimum rate.

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
"""

from __future__ import annotations

import mmap
import re
import socket
import time
from dataclasses import dataclass
from typing import BinaryIO, Optional

__all__ = ["Framing", "FramingError", "parse_framing", "read_body", "UploadBody", "SlowBody", "BodyEnded"]

#: RFC 9110 ``token``: what a header name may be made of (no spaces, no colon).
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: ASCII digits only (``int()`` would also take ``+``, ``_``, spaces and other scripts' digits).
_LENGTH = re.compile(rb"[0-9]{1,18}")


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
        if not colon or not _FIELD_NAME.fullmatch(name):
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
