"""Seeded generators of hostile-but-plausible inputs, shared by the atheris and hypothesis engines.

Random bytes almost never get past ``RIFF....WAVE`` or an HTTP request line, so the
generators build the real structure and then lie in it: every header field is drawn
from "right", "boundary" and "anything" values, chunks come in any order, sizes may
disagree with the bytes that follow, and the result may be truncated or mutated. All of
it is a function of a :class:`random.Random`, so a seed reproduces an input.
"""

from __future__ import annotations

import random
import struct
from typing import Callable, List, Sequence

__all__ = ["build_wav", "build_request", "mutate", "wav_seeds", "request_seeds", "ISSUE_HEADERS"]

#: Headers quoted in issue 11 (one decoded differently from bytes and from a pipe; a 1 Hz rate).
ISSUE_HEADERS: Sequence[bytes] = (
    bytes.fromhex("52494646a407000057415645666d74201000000001000200803e0500fa00000004001000646174610000"
                  "000045666d742010005200"),
)

_U32_EDGES = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF,
              0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000, 192000, 384000, 1, 2, 100, 1000, 3999,
          4000, 7999, 16001, 65521, 65535, 0, 0xFFFFFFFF, 0x80000000)
_KSDATAFORMAT_TAIL = bytes.fromhex("000000001000800000aa00389b71")  # GUID after the 2-byte format tag


def _pick(rng: random.Random, right: int, edges: Sequence[int], bits: int) -> int:
    """Mostly the right value, sometimes a boundary one, sometimes anything that fits ``bits``."""
    roll = rng.random()
    if roll < 0.7:
        return right
    if roll < 0.9:
        return rng.choice(edges) & ((1 << bits) - 1)
    return rng.getrandbits(bits)


def _chunk(cid: bytes, payload: bytes, size: int, pad: bool) -> bytes:
    return cid + struct.pack("<I", size & 0xFFFFFFFF) + payload + (b"\0" if pad and len(payload) % 2 else b"")


def _samples(rng: random.Random, n_bytes: int) -> bytes:
    """Sample bytes: silence, noise, full-scale extremes or float specials (NaN, inf)."""
    kind = rng.randrange(5)
    if kind == 0:
        return bytes(n_bytes)
    if kind == 1:
        return rng.randbytes(n_bytes)
    if kind == 2:
        return (b"\xff\x7f\x00\x80" * (n_bytes // 4 + 1))[:n_bytes]
    if kind == 3:  # float32 specials and huge values
        pool = [struct.pack("<f", v) for v in (float("nan"), float("inf"), -float("inf"), 1e30, -1e-30, 1.0, -1.0)]
        return b"".join(rng.choice(pool) for _ in range(n_bytes // 4 + 1))[:n_bytes]
    pool64 = [struct.pack("<d", v) for v in (float("nan"), float("inf"), 1e300, -2.0, 0.5)]
    return b"".join(rng.choice(pool64) for _ in range(n_bytes // 8 + 1))[:n_bytes]


def build_wav(rng: random.Random, max_data: int = 4096) -> bytes:
    """A RIFF/WAVE file, valid or subtly not: lying sizes, odd formats, chunks in any order."""
    tag = rng.choice((1, 1, 1, 3, 3, 0xFFFE, 0xFFFE, 6, 7, 2, 0, 0x55)) if rng.random() < 0.9 else rng.getrandbits(16)
    channels = _pick(rng, rng.choice((1, 1, 2, 2, 3, 6)), (0, 1, 2, 255, 256, 0xFFFF), 16)
    container = rng.choice((8, 16, 24, 32, 64) if tag != 3 else (32, 64))
    bits = _pick(rng, container, (0, 1, 4, 7, 12, 20, 33, 0xFFFF), 16)
    rate = rng.choice(_RATES) if rng.random() < 0.25 else _pick(rng, rng.choice(_RATES[:10]), _RATES, 32)
    block = _pick(rng, max(1, channels * (container // 8)) & 0xFFFF, (0, 1, 3, 0xFFFF), 16)
    byte_rate = _pick(rng, (rate * block) & 0xFFFFFFFF, _U32_EDGES, 32)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, block, bits)
    if tag == 0xFFFE or rng.random() < 0.1:
        sub_tag = rng.choice((1, 3, 6, 0x55)) if rng.random() < 0.9 else rng.getrandbits(16)
        cb_size = _pick(rng, 22, (0, 1, 21, 23, 0xFFFF), 16)
        valid = _pick(rng, bits, (0, 1, 12, 20, 0xFFFF), 16)
        tail = _KSDATAFORMAT_TAIL if rng.random() < 0.9 else rng.randbytes(14)
        fmt += struct.pack("<HHI", cb_size, valid, rng.getrandbits(32)) + struct.pack("<H", sub_tag) + tail
    elif rng.random() < 0.2:
        fmt += struct.pack("<H", _pick(rng, 0, (1, 2, 0xFFFF), 16))
    if rng.random() < 0.1:
        fmt = fmt[: rng.randrange(len(fmt) + 1)]
    fmt_size = _pick(rng, len(fmt), (0, 14, 15, 16, 17, 18, 40, 0xFFFFFFFF), 32)

    data = _samples(rng, rng.randrange(max_data + 1) if rng.random() < 0.8 else rng.randrange(64))
    data_size = rng.choice((len(data),) * 6 + (0, 0xFFFFFFFF, len(data) + 1, max(0, len(data) - 1),
                                                rng.getrandbits(32)))
    pad = rng.random() < 0.8

    chunks: List[bytes] = [_chunk(b"fmt ", fmt, fmt_size, pad), _chunk(b"data", data, data_size, pad)]
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        cid = rng.choice((b"LIST", b"fact", b"JUNK", b"cue ", b"\0\0\0\0", rng.randbytes(4)))
        payload = rng.randbytes(rng.randrange(0, 40))
        chunks.insert(rng.randrange(len(chunks) + 1),
                      _chunk(cid, payload, _pick(rng, len(payload), _U32_EDGES, 32), rng.random() < 0.7))
    roll = rng.random()
    if roll < 0.05:
        chunks.reverse()  # data before fmt
    elif roll < 0.08:
        chunks.append(chunks[0])  # a second fmt
    elif roll < 0.11:
        chunks.pop(rng.randrange(len(chunks)))  # no fmt or no data
    body = b"WAVE" + b"".join(chunks)
    riff_id = b"RIFF" if rng.random() < 0.95 else rng.choice((b"RIFX", b"RF64", b"riff"))
    out = riff_id + struct.pack("<I", _pick(rng, len(body), _U32_EDGES, 32)) + body
    if rng.random() < 0.15:
        out = out[: rng.randrange(len(out) + 1)]
    return out


def mutate(rng: random.Random, data: bytes, rounds: int = 0) -> bytes:
    """A few byte-level edits: flips, boundary 32-bit words, cuts, duplicated or dropped spans."""
    buf = bytearray(data)
    for _ in range(rounds or rng.randrange(1, 5)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and len(buf) >= 4:
            at = min(pos, len(buf) - 4)
            buf[at:at + 4] = struct.pack("<I", rng.choice(_U32_EDGES))
        elif op == 2:
            del buf[pos:]
        elif op == 3:
            end = min(len(buf), pos + rng.randrange(1, 64))
            buf[pos:pos] = buf[pos:end]
        elif op == 4:
            del buf[pos:pos + rng.randrange(1, 16)]
        else:
            buf[pos:pos] = rng.randbytes(rng.randrange(1, 9))
    return bytes(buf)


def wav_seeds(count: int = 64, seed: int = 1) -> List[bytes]:
    """Valid WAVs in every supported format plus generated ones: the atheris seed corpus."""
    import numpy as np

    from edge_ser.wav import SAMPLE_FORMATS, wav_bytes

    rng = random.Random(seed)
    t = np.arange(400) / 400.0
    tone = (0.5 * np.sin(2 * np.pi * 5 * t)).astype(np.float32)
    seeds = [wav_bytes(tone, rate, sample_format=fmt) for fmt in SAMPLE_FORMATS for rate in (8000, 16000, 44100)]
    seeds.append(wav_bytes(np.stack([tone, -tone], axis=1), 48000))
    seeds += list(ISSUE_HEADERS)
    seeds += [build_wav(rng) for _ in range(count)]
    return seeds


# --- HTTP ------------------------------------------------------------------------------

_PATHS = ("/", "/index.html", "/app.js", "/style.css", "/favicon.ico", "/healthz", "/metrics", "/api/status",
          "/api/events", "/api/classify", "/api/stream", "/nope", "//api/status", "/api/../api/status", "*",
          "http://127.0.0.1/api/status", "/%00", "/" + "a" * 5000)
_QUERIES = ("", "?since=0&limit=5", "?since=-1", "?limit=99999999999999999999", "?since=1e3", "?since=%00",
            "?last_event_id=abc", "?token={token}", "?token=wrong", "?token=zz%0d%0aX-Injected:%20yes",
            "?token={token}%0d%0aX-Injected:%20yes", "?token={token}&token=other", "?a=%ff%fe&b")
_CONTENT_LENGTHS = ("{n}", "{n}", "{n}", "+{n}", "-1", " {n} ", "1_2", "\u0661\u0662", "0x10", "99999999999999999999",
                    "{n}, {n}", "")


def build_request(rng: random.Random, token: str, body_source: Callable[[random.Random], bytes]) -> bytes:
    """One raw HTTP request for the dashboard server: mostly well-formed, with hostile framing."""
    method = rng.choice(("GET", "GET", "GET", "POST", "POST", "HEAD", "PUT", "OPTIONS", "DELETE", "G\x00T", "get"))
    target = rng.choice(_PATHS) + rng.choice(_QUERIES).format(token=token)
    version = rng.choice(("HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.x", "", "HTTP/0.9"))
    eol = "\r\n" if rng.random() < 0.9 else "\n"
    headers: List[str] = []
    for _ in range(rng.choice((1, 1, 1, 2))):
        headers.append("Host: " + rng.choice(("127.0.0.1", "localhost", "127.0.0.1:8080", "[::1]", "evil.example",
                                              "", "127.0.0.1\x00")))
    auth = rng.random()
    if auth < 0.6:
        headers.append(f"Authorization: Bearer {token}")
    elif auth < 0.7:
        headers.append("Authorization: Bearer " + rng.choice(("wrong", token + "x", "", token[:-1])))
    if rng.random() < 0.2:
        headers.append("Cookie: edge_ser_token=" + rng.choice((token, "wrong", token + "; other=1")))
    if rng.random() < 0.1:
        headers.append("Last-Event-ID: " + rng.choice(("5", "-1", "x", "9" * 30)))
    body = b""
    if method == "POST" or rng.random() < 0.1:
        body = body_source(rng) if rng.random() < 0.8 else rng.randbytes(rng.randrange(64))
        for _ in range(rng.choice((0, 1, 1, 1, 1, 2))):
            headers.append("Content-Length: " + rng.choice(_CONTENT_LENGTHS).format(n=len(body)))
        if rng.random() < 0.1:
            headers.append("Transfer-Encoding: chunked")
        if rng.random() < 0.2:
            body = body[: rng.randrange(len(body) + 1)]  # shorter than announced
    for _ in range(rng.choice((0, 0, 0, 1, 3))):
        headers.append(rng.choice(("X-Junk: " + "v" * rng.randrange(100), "NoColon", ": empty-name", " Folded: x",
                                   "Content-Type: audio/wav", "Accept: */*", "Connection: keep-alive")))
    rng.shuffle(headers)
    head = f"{method} {target} {version}".rstrip() + eol + "".join(h + eol for h in headers) + eol
    raw = head.encode("utf-8", "surrogateescape") + body
    if rng.random() < 0.1:
        raw = mutate(rng, raw, rounds=1)
    return raw


def request_seeds(token: str, count: int = 64, seed: int = 2) -> List[bytes]:
    """Well-formed requests for every route plus generated ones: the atheris seed corpus."""
    from edge_ser.wav import wav_bytes
    import numpy as np

    wav = wav_bytes(np.zeros(1600, np.float32), 16000)
    good = [f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
            for p in ("/", "/healthz", "/metrics", "/api/status", "/api/events?since=0&limit=3")]
    good.append(f"POST /api/classify HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Length: {len(wav)}\r\n\r\n".encode() + wav)
    good.append(f"GET /?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    rng = random.Random(seed)
    return good + [build_request(rng, token, build_wav) for _ in range(count)]
