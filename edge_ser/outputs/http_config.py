"""Settings of the web dashboard / HTTP API: one frozen dataclass, from a TOML table or flags.

Kept apart from the server so the daemon can check ``[http]`` and ``--http*`` at start-up
(a typo fails with a clear message instead of "the page never loads" later).

The one rule that matters for a device with a microphone: the server listens on the
loopback interface unless told otherwise, and listening anywhere else needs a token.
The token is never a command-line value or a config-file value (it would show in ``ps``
or sit in a world-readable file): it comes from ``token_file`` or the
``EDGE_SER_HTTP_TOKEN`` environment variable, and it is kept out of ``repr()``.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ..errors import EdgeSerError

__all__ = [
    "HttpConfig",
    "HttpConfigError",
    "TOKEN_ENV",
    "MIN_TOKEN_LENGTH",
    "add_http_arguments",
    "is_loopback_host",
    "parse_listen",
]

#: Environment variable holding the access token (alternative to ``token_file``).
TOKEN_ENV = "EDGE_SER_HTTP_TOKEN"
#: Shorter tokens are refused: a token is all that stands between the LAN and the microphone's results.
MIN_TOKEN_LENGTH = 16
DEFAULT_LISTEN = "127.0.0.1:8080"
# URL-unreserved characters: the token may travel as ?token=... and in a cookie, unescaped.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]+")


class HttpConfigError(EdgeSerError):
    """The ``[http]`` table or the ``--http*`` flags are invalid."""


def parse_listen(listen: str) -> Tuple[str, int]:
    """``"host:port"`` / ``"[v6]:port"`` / ``":port"`` -> ``(host, port)``; port 0 = any free port."""
    text = listen.strip() if isinstance(listen, str) else ""
    if not text:
        raise HttpConfigError("http: 'listen' must be HOST:PORT, e.g. 127.0.0.1:8080")
    if text.isdigit():
        host, port_text = "127.0.0.1", text
    elif text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise HttpConfigError(f"http: 'listen' {listen!r}: write IPv6 as [ADDR]:PORT")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise HttpConfigError(f"http: 'listen' {listen!r} has no port (HOST:PORT, e.g. 127.0.0.1:8080)")
        if ":" in host:
            raise HttpConfigError(f"http: 'listen' {listen!r}: write IPv6 as [ADDR]:PORT")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise HttpConfigError(f"http: 'listen' {listen!r}: port must be 0..65535")
    return host or "0.0.0.0", int(port_text)


def is_loopback_host(host: str) -> bool:
    """True only for addresses no other machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a reachable address


@dataclass(frozen=True)
class HttpConfig:
    """Everything the dashboard server needs; validated in ``__post_init__``.

    ``history_size`` bounds the events kept for ``/api/events`` and for resuming
    streams (about an hour of speech at one utterance every 3-4 s);
    ``client_queue_size`` is how many events a slow stream client may fall behind
    before it is dropped; ``max_body_bytes`` bounds ``POST /api/classify`` uploads
    (10 MiB is 5 minutes of 16 kHz 16-bit mono).

    Uploads hold one of :attr:`upload_slots` (``classify_workers + classify_queue``)
    from before their body is read until their answer is sent, so at most that many
    bodies are in memory at once, whether arriving, queued or being classified; one
    more gets 503. A body must arrive at ``min_upload_rate`` bytes/s on average once
    ``upload_grace_seconds`` have passed, else 408 (a stalled client cannot keep a slot).
    """

    listen: str = DEFAULT_LISTEN
    token: Optional[str] = field(default=None, repr=False)
    token_file: Optional[str] = None
    history_size: int = 1000
    client_queue_size: int = 256
    max_stream_clients: int = 64
    max_connections: int = 128
    max_body_bytes: int = 10 * 1024 * 1024
    classify_workers: int = 1
    classify_queue: int = 2
    min_upload_rate: int = 64 * 1024
    upload_grace_seconds: float = 5.0
    request_timeout: float = 10.0
    keepalive_seconds: float = 15.0
    max_header_bytes: int = 16 * 1024
    max_headers: int = 64

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        host, _ = parse_listen(self.listen)
        set_("listen", self.listen.strip())
        if self.token_file and self.token is None:
            set_("token", _read_token_file(self.token_file))
        if self.token is None:
            env_token = os.environ.get(TOKEN_ENV, "").strip()
            if env_token:
                set_("token", env_token)
        if self.token is not None:
            if not isinstance(self.token, str) or len(self.token) < MIN_TOKEN_LENGTH:
                raise HttpConfigError(
                    f"http: the token must be at least {MIN_TOKEN_LENGTH} characters "
                    "(make one with: openssl rand -hex 16)")
            if not _TOKEN_CHARS.fullmatch(self.token):
                raise HttpConfigError(
                    "http: the token may hold only letters, digits and . _ ~ - (it travels in URLs "
                    "and cookies; make one with: openssl rand -hex 16)")
        if not is_loopback_host(host) and not self.token:
            raise HttpConfigError(
                f"http: refusing to listen on {self.listen} without a token: anyone on the network could "
                f"read the results. Use an SSH tunnel (ssh -L 8080:127.0.0.1:8080 pi@host) or set "
                f"token_file / ${TOKEN_ENV}")
        _check_range("history_size", self.history_size, 1, 1_000_000)
        _check_range("client_queue_size", self.client_queue_size, 1, 1_000_000)
        _check_range("max_stream_clients", self.max_stream_clients, 1, 10_000)
        _check_range("max_connections", self.max_connections, 2, 10_000)
        _check_range("max_body_bytes", self.max_body_bytes, 1024, 1 << 30)
        # a few slots: each may hold a body of max_body_bytes in memory
        _check_range("classify_workers", self.classify_workers, 1, 8)
        _check_range("classify_queue", self.classify_queue, 0, 16)
        _check_range("min_upload_rate", self.min_upload_rate, 1024, 1 << 30)
        _check_range("upload_grace_seconds", self.upload_grace_seconds, 0.0, 3600)
        _check_range("request_timeout", self.request_timeout, 0.1, 3600)
        _check_range("keepalive_seconds", self.keepalive_seconds, 0.1, 3600)
        _check_range("max_header_bytes", self.max_header_bytes, 1024, 1 << 20)
        _check_range("max_headers", self.max_headers, 4, 1000)

    @property
    def host(self) -> str:
        return parse_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return parse_listen(self.listen)[1]

    @property
    def upload_slots(self) -> int:
        """Uploads admitted at once (receiving, queued or being classified); one more gets 503."""
        return self.classify_workers + self.classify_queue

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "HttpConfig":
        """Build from a TOML ``[http]`` table, checking keys and types.

        Unknown keys are errors (a misspelt ``lisen`` must not silently mean "loopback");
        a literal ``token`` key is refused: use ``token_file`` or the environment.
        """
        if not isinstance(mapping, Mapping):
            raise HttpConfigError(f"http: expected a table, got {type(mapping).__name__}")
        if "token" in mapping:
            raise HttpConfigError(f"http: do not put 'token' in the config; use 'token_file' or ${TOKEN_ENV}")
        unknown = sorted(set(mapping) - set(_ALLOWED_KEYS) - {"enabled"})
        if unknown:
            raise HttpConfigError(
                f"http: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_ALLOWED_KEYS))}, enabled")
        values: Dict[str, Any] = {}
        for key, value in mapping.items():
            if key == "enabled":
                _check_type(key, value, "bool")
                continue
            values[key] = _check_type(key, value, _ALLOWED_KEYS[key])
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  table: Optional[Mapping[str, Any]] = None) -> Optional["HttpConfig"]:
        """Merge a TOML ``[http]`` table with the ``--http*`` flags (flags win).

        Returns ``None`` when the web interface is not asked for: no ``--http`` flag and
        no ``[http]`` table (or one with ``enabled = false``), so the daemon can write
        ``cfg = HttpConfig.from_args(args, toml.get("http"))`` and start a server only ``if cfg``.
        """
        if table is not None and not isinstance(table, Mapping):
            raise HttpConfigError(f"http: expected an [http] table, got {type(table).__name__}")
        merged: Dict[str, Any] = dict(table or {})
        enabled = table is not None and merged.get("enabled", True) is not False
        listen = getattr(args, "http", None)
        if listen is not None:
            enabled = True
            if listen != _FLAG_DEFAULT_LISTEN:
                merged["listen"] = listen
        for dest, key in _FLAG_TO_KEY.items():
            value = getattr(args, dest, None)
            if value is not None:
                merged[key] = value
        if not enabled:
            given = sorted(k for k in merged if k != "enabled")
            if table is None and given:
                raise HttpConfigError(f"http: settings given ({', '.join(given)}) but no --http")
            return None
        merged.pop("enabled", None)
        return cls.from_mapping(merged)

    def with_overrides(self, **changes: Any) -> "HttpConfig":
        """A copy with some fields changed (re-validated)."""
        return replace(self, **changes)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise HttpConfigError(f"http: '{name}' must be {low}..{high}, got {value!r}")


def _read_token_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HttpConfigError(f"http: cannot read token_file {path!r}: {exc.strerror or exc}") from exc
    token = text.strip()
    if not token:
        raise HttpConfigError(f"http: token_file {path!r} is empty")
    return token


_ALLOWED_KEYS: Dict[str, str] = {f.name: str(f.type) for f in fields(HttpConfig) if f.name != "token"}
_TYPES: Dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "Optional[str]": str}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}


def _check_type(key: str, value: Any, annotation: str) -> Any:
    expected = _TYPES[annotation]
    if isinstance(value, bool) and expected is not bool:
        raise HttpConfigError(f"http: '{key}' must be {_TYPE_NAMES[expected]}, got {value!r}")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        raise HttpConfigError(f"http: '{key}' must be {_TYPE_NAMES[expected]}, got {value!r}")
    return value


# ``--http`` with no value means "the default address"; argparse needs a distinct marker.
_FLAG_DEFAULT_LISTEN = "__default__"
# argparse dest -> HttpConfig field
_FLAG_TO_KEY = {
    "http_token_file": "token_file",
    "http_history": "history_size",
    "http_max_body_bytes": "max_body_bytes",
    "http_client_queue": "client_queue_size",
}


class _RefuseToken(argparse.Action):
    """Turns ``--http-token`` into a usage error that does not echo the value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        parser.error(f"--http-token is not accepted (it would be visible in 'ps'); "
                     f"use --http-token-file FILE or ${TOKEN_ENV}")


def add_http_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--http [HOST:PORT]`` and the ``--http-*`` flags (in their own help group).

    Defaults are ``None`` so :meth:`HttpConfig.from_args` can tell "not given" from
    "given" and the TOML table fills what the flags leave out. ``--token-file`` is an
    alias of ``--http-token-file``. There is deliberately no ``--http-token``.
    """
    group = parser.add_argument_group(
        "web dashboard / HTTP API",
        f"serve a live dashboard and a JSON API; listening beyond 127.0.0.1 needs a token "
        f"(--http-token-file FILE or ${TOKEN_ENV})")
    group.add_argument("--http", metavar="HOST:PORT", nargs="?", const=_FLAG_DEFAULT_LISTEN, default=None,
                       help=f"serve the dashboard (default address {DEFAULT_LISTEN})")
    group.add_argument("--http-token-file", "--token-file", dest="http_token_file", metavar="FILE",
                       help="file holding the access token (required beyond loopback)")
    # Exact-match decoy: without it argparse would take "--http-token SECRET" as an
    # abbreviation of --http-token-file and later print SECRET in "cannot read file".
    group.add_argument("--http-token", nargs="?", action=_RefuseToken, help=argparse.SUPPRESS)
    group.add_argument("--http-history", metavar="N", type=int,
                       help="events kept for /api/events and stream resume (1000)")
    group.add_argument("--http-max-body-bytes", metavar="N", type=int,
                       help="largest WAV accepted by POST /api/classify (10485760)")
    group.add_argument("--http-client-queue", metavar="N", type=int,
                       help="events a stream client may fall behind before it is dropped (256)")
