"""Web dashboard and HTTP API, served by the daemon with the standard library only.

=========================  ======  =====================================================
``/``                      GET     the dashboard (``index.html``, ``app.js``, ``style.css``)
``/api/status``            GET     state, counters, device, model, last result, uptime
``/api/events``            GET     stored events as JSON: ``?since=ID&limit=N``
``/api/stream``            GET     Server-Sent Events; resumes after ``Last-Event-ID``
                                   (header) or ``?last_event_id=ID``
``/api/classify``          POST    a WAV body -> the prediction JSON
``/healthz``               GET     ``{"status": "ok"}`` while the server runs
``/metrics``               GET     Prometheus text format
=========================  ======  =====================================================

Why it is built the way it is, on a device that listens to a room:

* **Loopback by default.** Anything else needs a token (see :mod:`.http_config`);
  every request must then carry it: ``Authorization: Bearer TOKEN``, ``?token=TOKEN``
  (for EventSource, which cannot set headers), or the ``HttpOnly; SameSite=Strict``
  cookie the server sets when the dashboard is opened with ``?token=``. Comparison is
  constant-time. Without a token, requests must name a loopback ``Host`` (stops DNS
  rebinding from a web page in the user's browser).
* **Nothing from the file system.** The only files served are a fixed whitelist of
  asset names read once at start-up, so there is no path to traverse. A path is a route
  only when it is exactly one (``//`` is not ``/``: 404).
* **The daemon never waits for a client.** :meth:`DashboardServer.emit` appends to a
  bounded history and ``put_nowait``\\ s into bounded per-client queues
  (:mod:`.sse`); a client that falls behind is dropped and counted.
* **Bounded everything.** Request line, header count and size, body size, open
  connections, stream clients, a socket timeout per connection. An upload reserves
  one of a few slots *before* its body is read (503 when none is free) and keeps it
  until answered, so bodies in memory never exceed ``upload_slots x max_body_bytes``;
  its body must keep a minimum rate (408 otherwise); it is classified by a small pool
  of lower-priority worker threads with their own interpreter, through the bounded
  :meth:`Classifier.classify_bytes`, so an upload cannot take the daemon's CPU, its
  model lock or its memory.
* **Strict framing** (:mod:`.http_request`): a request line of three parts split on
  single spaces, one ``Host``, one ``Content-Length`` of ASCII digits, no folded or
  malformed header lines; every error answers JSON. No header value is ever sent
  with a line break in it, and the token cookie is only ever the server's own token.
* **Answers arrive.** When a request's body was not read (refused early, or not asked
  for), the server ends its side and drains a bounded amount before closing, so the
  client reads the answer instead of a reset.

Responses are HTTP/1.0 style (one request per connection), which keeps streams and
timeouts simple and is all a dashboard on a LAN needs.
"""

from __future__ import annotations

import hmac
import http.client
import io
import logging
import os
import queue
import re
import select
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs

from .. import __version__
from ..errors import EdgeSerError
from .http_config import HttpConfig, HttpConfigError, add_http_arguments, is_loopback_host
from .http_metrics import DaemonState, render_prometheus
from .http_request import (
    BodyEnded, Framing, FramingError, RequestLineError, SlowBody, drain, parse_framing, parse_request_line, read_body,
)
from .sse import EventHub, StreamClient, safe_json

__all__ = ["DashboardServer", "HttpConfig", "HttpConfigError", "add_http_arguments", "create_dashboard", "ASSETS"]

log = logging.getLogger("edge_ser.outputs.http")

#: URL path -> (file in ``edge_ser/outputs/web``, content type). Nothing else is served from disk.
ASSETS: Dict[str, Tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
#: Longest request line accepted (the longest legitimate one is a few hundred bytes).
MAX_REQUEST_LINE = 4096
#: After an answer to a request whose input was not all read: at most this much more is read
#: and dropped, for at most this long, whatever the request announced. 8 MiB lets clients
#: that send a whole upload before reading (Python's http.client, requests) see a 413 for
#: a file a few MB too large, instead of a connection reset; the time bound keeps a
#: hostile sender from holding the worker (memory is one fixed buffer either way).
DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_SECONDS = 2.0
#: The routes that serve the dashboard page (the only ones where ``?token=`` becomes a cookie).
_DASHBOARD_PAGES = ("/", "/index.html")
COOKIE_NAME = "edge_ser_token"
#: How often an idle stream checks whether its client hung up (so the client count stays true).
_LEAVE_CHECK_SECONDS = 1.0
_TOKEN_IN_URL = re.compile(r"([?&])token=[^&\s]*")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_JSON = "application/json; charset=utf-8"


class ClassifyPool:
    """Upload slots, and a few low-priority threads that classify the uploads holding one.

    A handler calls :meth:`reserve` before it reads a body and :meth:`release` once it
    has answered (and dropped the body), so the bodies in memory, whether arriving,
    queued for a worker or being classified, are never more than ``workers + queue_size``.

    The classifier is created on first use by ``factory`` (loading a model costs memory
    and time that a dashboard-only user should not pay). Workers lower their own
    scheduling priority (Linux: per thread), so when the CPU is short the daemon's
    live classification wins over an upload.
    """

    def __init__(self, factory: Optional[Callable[[], Any]], workers: int, queue_size: int) -> None:
        self._factory = factory
        self._workers = workers
        self.slots = workers + queue_size
        self._free = threading.BoundedSemaphore(self.slots)
        self._active = 0
        self._active_lock = threading.Lock()  # not _lock: that one is held while a model loads
        self._executor: Optional[ThreadPoolExecutor] = None
        self._classifier: Any = None
        self._lock = threading.Lock()

    def reserve(self) -> bool:
        """Take a slot without waiting; False when every slot is in use."""
        if not self._free.acquire(blocking=False):
            return False
        with self._active_lock:
            self._active += 1
        return True

    def release(self) -> None:
        with self._active_lock:
            self._active -= 1
        self._free.release()

    @property
    def active(self) -> int:
        """Slots in use: uploads arriving, queued or being classified."""
        return self._active

    def classify(self, body: memoryview, name: str, windows: bool) -> Tuple[Any, Any]:
        """``(prediction, classifier)`` for a body whose slot the caller holds; raises the classifier's error."""
        return self._pool().submit(self._run, body, name, windows).result()

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._workers, thread_name_prefix="edge-ser-http-classify",
                                                    initializer=_lower_thread_priority)
            return self._executor

    def _run(self, body: memoryview, name: str, windows: bool) -> Tuple[Any, Any]:
        classifier = self._get_classifier()
        return classifier.classify_bytes(body, name, windows=windows), classifier

    def _get_classifier(self) -> Any:
        with self._lock:
            if self._classifier is None:
                if self._factory is not None:
                    self._classifier = self._factory()
                else:
                    from ..classify import Classifier

                    self._classifier = Classifier(num_threads=1)
            return self._classifier

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def create_dashboard(config: HttpConfig, *, device_name: str = "", model_id: str = "",
                     labels: Optional[Sequence[str]] = None, model_path: Optional[str] = None,
                     backend: Optional[str] = None,
                     status_provider: Optional[Callable[[], Mapping[str, Any]]] = None) -> "DashboardServer":
    """The daemon's entry point: a started :class:`DashboardServer` for ``config``.

    Uploads to ``POST /api/classify`` get their own single-thread :class:`Classifier`
    of the same model (``model_path``/``backend`` as the daemon's), created on the first
    upload: the daemon's classifier and its lock are never shared with a web request.
    """
    def classifier_factory() -> Any:
        from ..classify import Classifier

        return Classifier(model_path, backend=backend, num_threads=1)

    info = {"device": device_name, "model": model_id, "labels": list(labels or []), "backend": backend or ""}
    return DashboardServer(config, status_provider=status_provider, classifier_factory=classifier_factory,
                           info=info).start()


def _lower_thread_priority() -> None:
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (OSError, AttributeError):
            pass


def _load_assets() -> Dict[str, bytes]:
    folder = resources.files("edge_ser.outputs").joinpath("web")
    assets: Dict[str, bytes] = {}
    for file_name, _ in ASSETS.values():
        try:
            assets[file_name] = folder.joinpath(file_name).read_bytes()
        except OSError as exc:
            raise EdgeSerError(f"http: dashboard asset {file_name} is missing from the installed package "
                               f"({exc}); reinstall edge-ser") from exc
    return assets


class DashboardServer:
    """The web interface as a daemon sink: ``start()``, ``emit(event)``, ``close()``.

    ``status_provider`` (optional) returns live numbers for ``/api/status``, e.g.
    ``lambda: {"counters": listener.counters()}``; its keys override what the server
    gathered from events. ``classifier_factory`` builds the classifier for
    ``POST /api/classify`` on first use (default: ``Classifier(num_threads=1)`` with
    the default model). ``info`` is shown on the dashboard and in ``/api/status``
    (e.g. ``{"device": ..., "model": ..., "labels": [...], "backend": ...}``).
    """

    def __init__(self, config: HttpConfig, *, status_provider: Optional[Callable[[], Mapping[str, Any]]] = None,
                 classifier_factory: Optional[Callable[[], Any]] = None,
                 info: Optional[Mapping[str, Any]] = None) -> None:
        self.config = config
        self.info: Dict[str, Any] = dict(info or {})
        self.hub = EventHub(config.history_size, config.max_stream_clients)
        self.state = DaemonState(self.info)
        self.status_provider = status_provider
        self.classify_pool = ClassifyPool(classifier_factory, config.classify_workers, config.classify_queue)
        self.assets = _load_assets()
        self._token = config.token.encode("ascii") if config.token else None
        self._stats_lock = threading.Lock()
        self._responses: Dict[str, int] = {}
        self._classify_outcomes: Dict[str, int] = {}
        self._open_connections = 0
        self._refused = 0
        self._emit_errors = 0
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> "DashboardServer":
        """Bind and serve on a background thread; raises :class:`HttpConfigError` if the port is taken."""
        if self._httpd is not None:
            return self
        host, port = self.config.host, self.config.port
        try:
            self._httpd = _Server((host, port), self)
        except OSError as exc:
            raise HttpConfigError(f"http: cannot listen on {self.config.listen}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.25},
                                        name="edge-ser-http", daemon=True)
        self._thread.start()
        log.info("dashboard on %s%s", self.url, "" if self.config.token else " (no token: loopback only)")
        return self

    @property
    def address(self) -> Tuple[str, int]:
        """The bound ``(host, port)`` (the real port when the config asked for port 0)."""
        if self._httpd is None:
            return self.config.host, self.config.port
        return self.config.host, int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    def emit(self, event: Mapping[str, Any]) -> None:
        """Record and broadcast ``event``; never blocks on a client and never raises."""
        if self._closed:
            return
        try:
            self.state.observe(event)
            self.hub.publish(event)
        except Exception:  # a sink must not take the daemon down; count and log once
            self._emit_errors += 1
            if self._emit_errors == 1:
                log.exception("http: could not publish an event (further errors only counted)")

    def close(self) -> None:
        """End every stream, stop serving, release the port."""
        if self._closed:
            return
        self._closed = True
        self.hub.close()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5.0)
        self.classify_pool.close()

    def __enter__(self) -> "DashboardServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- numbers --------------------------------------------------------------------------------------
    def counters(self) -> Dict[str, Any]:
        """Health of the HTTP side (also in ``/api/status`` under ``server``)."""
        with self._stats_lock:
            return {
                "url": self.url,
                "stream_clients": self.hub.client_count,
                "dropped_clients": self.hub.dropped_clients,
                "stream_connections": self.hub.total_clients,
                "history": len(self.hub),
                "newest_id": self.hub.newest_id,
                "oldest_id": self.hub.oldest_id,
                "open_connections": self._open_connections,
                "refused": self._refused,
                "emit_errors": self._emit_errors,
                "responses": dict(self._responses),
                "classify": dict(self._classify_outcomes),
                "uploads": {"active": self.classify_pool.active, "slots": self.classify_pool.slots},
                "events_by_type": self.state.event_counts(),
            }

    def status(self) -> Dict[str, Any]:
        """The body of ``/api/status``."""
        provided: Optional[Mapping[str, Any]] = None
        provider_error = None
        if self.status_provider is not None:
            try:
                provided = self.status_provider()
            except Exception as exc:  # a broken provider must not break the page
                provider_error = f"{type(exc).__name__}: {exc}"
        body = self.state.snapshot(provided)
        if provider_error:
            body["status_error"] = provider_error
        body["info"] = self.info
        body["labels"] = list(self.info.get("labels") or _default_labels(body.get("last_event")))
        body["version"] = __version__
        body["time"] = _iso_now()
        body["server"] = self.counters()
        return body

    def _count(self, table: str, key: str) -> None:
        with self._stats_lock:
            counts = self._responses if table == "responses" else self._classify_outcomes
            counts[key] = counts.get(key, 0) + 1

    def _admit(self) -> bool:
        with self._stats_lock:
            if self._open_connections >= self.config.max_connections:
                self._refused += 1
                return False
            self._open_connections += 1
            return True

    def _release(self) -> None:
        with self._stats_lock:
            self._open_connections -= 1

    def _authorized(self, header: Optional[str], query_token: Optional[str], cookie: Optional[str]) -> bool:
        if self._token is None:
            return True
        candidates = []
        if header and header[:7].lower() == "bearer ":
            candidates.append(header[7:].strip())
        candidates += [c for c in (query_token, cookie) if c]
        ok = False
        for candidate in candidates:  # every candidate is compared: no early exit to time
            ok |= self._token_matches(candidate)
        return ok

    def _token_matches(self, candidate: Optional[str]) -> bool:
        """Constant-time comparison with the configured token (False when there is none)."""
        if self._token is None or candidate is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self._token)


def _iso_now() -> str:
    """Wall-clock time of this device (the dashboard corrects for a skewed browser clock with it)."""
    moment = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{int(moment % 1 * 1000):03d}Z"


def _default_labels(last_event: Optional[Mapping[str, Any]]) -> List[str]:
    if last_event and isinstance(last_event.get("probabilities"), Mapping):
        return list(last_event["probabilities"])
    from ..metadata import EMOTIONS

    return list(EMOTIONS)


class _Server(ThreadingHTTPServer):
    """One thread per connection, capped at ``max_connections``; IPv6 when the host is."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: Tuple[str, int], dashboard: DashboardServer) -> None:
        self.dashboard = dashboard
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.dashboard._admit():
            _refuse(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.dashboard._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.dashboard._release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("http: error serving %s", client_address, exc_info=True)


def _refuse(request: socket.socket) -> None:
    body = b'{"error":"too many connections"}'
    try:
        request.settimeout(1.0)
        request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    """Routes one request; every response closes the connection (HTTP/1.0 style)."""

    server_version = f"edge-ser/{__version__}"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"  # no HTTP/0.9: even a garbage request gets a status line
    server: _Server

    # -- plumbing -------------------------------------------------------------------------------------
    @property
    def dashboard(self) -> DashboardServer:
        return self.server.dashboard

    def setup(self) -> None:
        self.timeout = self.server.dashboard.config.request_timeout  # read by StreamRequestHandler.setup
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class name)
        log.debug("%s %s", self.address_string(), _TOKEN_IN_URL.sub(r"\1token=***", format % args))

    def send_response(self, code: int, message: Optional[str] = None) -> None:
        self.dashboard._count("responses", str(int(code)))
        # The standard library drops the status line and every header for a request that
        # said "HTTP/0.9" (also one it refuses as malformed): every answer here has them.
        self.request_version = "HTTP/1.0"
        super().send_response(code, message)

    def send_header(self, keyword: str, value: Any) -> None:
        """Every header goes through here: one with a line break (or NUL) in it is never sent.

        The response begun so far is dropped too, so the caller can answer an error instead.
        """
        if _breaks_line(f"{keyword}{value}"):
            self._headers_buffer = []
            raise ValueError(f"http: refusing to send header {keyword!r}: its value holds a line break")
        super().send_header(keyword, value)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """Errors raised through the standard library's API answer JSON too, like the API's own."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._error(code, message or phrase)

    def handle_one_request(self) -> None:
        """Read the request with our own parser and limits, answer it, then close so the answer arrives."""
        self.close_connection = True
        self.command, self.request_version, self.requestline = None, "HTTP/1.0", ""
        self.unread_input = True  # until the framing says the request has no body (or it was read)
        try:
            if self._read_request():
                self._dispatch()
            self.wfile.flush()
        except (OSError, ValueError) as exc:  # timeouts, resets, writes after a client left
            log.debug("http: connection ended: %s", exc)
            return
        if self.unread_input:
            self._end_with_unread_input()

    def _read_request(self) -> bool:
        """Read and check the request line and the header block; False once an error is answered.

        The request line is checked before a header is read, so a malformed one is answered
        at once, not after the header deadline.
        """
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if line in (b"\r\n", b"\n"):  # RFC 9112 section 2.2: one empty line before the request is ignored
            line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            self.unread_input = False  # the client closed without a request: nothing to answer
            return False
        if len(line) > MAX_REQUEST_LINE:
            self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long")
            return False
        self.raw_requestline = line
        self.requestline = line.rstrip(b"\r\n").decode("latin-1")
        try:
            parsed = parse_request_line(line)
        except RequestLineError as exc:
            self._error(exc.status, str(exc))
            return False
        self.command, self.path, self.request_version = parsed.method, parsed.target, parsed.version
        return self._read_headers()

    def _read_headers(self) -> bool:
        """Read the header block into ``headers`` and ``framing``; False once an error is answered."""
        block, problem = self._read_header_block()
        if problem == "slow":
            self.send_error(HTTPStatus.REQUEST_TIMEOUT, "request headers took too long")
            return False
        if problem:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, problem)
            return False
        try:
            self.headers = http.client.parse_headers(io.BytesIO(block), _class=self.MessageClass)
        except http.client.HTTPException as exc:  # a line over 64 KiB, or over 100 headers
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request headers refused: {exc}")
            return False
        try:
            self.framing = parse_framing(block)
        except FramingError as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return False
        self.unread_input = bool(self.framing.content_length) or self.framing.transfer_encoding
        return True

    def _end_with_unread_input(self) -> None:
        """End a connection whose input was not all read, so that the answer reaches the client.

        Closing a socket with unread input makes the kernel send a reset at once and drop
        the part of the answer it has not sent yet: the client sees "connection reset", or
        a cut-off answer, instead of our 400 or 413. So the answer (always ``Connection:
        close``) is followed by our FIN, then at most :data:`DRAIN_BYTES` of pending input
        are read and dropped within :data:`DRAIN_SECONDS`, whatever ``Content-Length``
        announced. A client that sends more than that still gets the reset, but cannot
        hold the worker or its memory.
        """
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            return
        drain(self.connection, DRAIN_BYTES, DRAIN_SECONDS)

    framing = Framing(None, False)
    #: True while the client may have sent input this handler has not read (a body it did not
    #: ask for, or anything after a request it refused): the connection then ends with a drain.
    unread_input: bool = True

    def _read_header_block(self) -> Tuple[bytes, Optional[str]]:
        cfg = self.dashboard.config
        lines: List[bytes] = []
        size = 0
        # The socket timeout bounds each read; this bounds the whole header (a client
        # trickling one line every few seconds would otherwise hold a thread for minutes).
        deadline = time.monotonic() + cfg.request_timeout
        while True:
            if time.monotonic() > deadline:
                return b"", "slow"
            line = self.rfile.readline(cfg.max_header_bytes + 1)
            size += len(line)
            if size > cfg.max_header_bytes:
                return b"", f"request headers larger than {cfg.max_header_bytes} bytes"
            if line in (b"\r\n", b"\n", b""):
                lines.append(b"\r\n")
                return b"".join(lines), None
            lines.append(line)
            if len(lines) > cfg.max_headers:
                return b"", f"more than {cfg.max_headers} request headers"

    def _send(self, code: int, body: bytes, content_type: str,
              headers: Optional[Mapping[str, str]] = None) -> None:
        for name, value in (headers or {}).items():  # checked before anything is buffered
            if _breaks_line(f"{name}{value}"):
                raise ValueError(f"http: refusing to send header {name!r}: its value holds a line break")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _common_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Connection", "close")

    def _json(self, code: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        body = safe_json(payload).encode("utf-8")
        self._send(code, body, _JSON, headers)

    def _error(self, code: int, message: str, headers: Optional[Mapping[str, str]] = None) -> None:
        self._json(code, {"error": message, "status": int(code)}, headers)

    # -- routing --------------------------------------------------------------------------------------
    _ROUTES: Dict[str, Tuple[Tuple[str, ...], str]] = {
        **{path: (("GET", "HEAD"), "_asset") for path in ASSETS},
        "/favicon.ico": (("GET", "HEAD"), "_favicon"),
        "/api/status": (("GET", "HEAD"), "_api_status"),
        "/api/events": (("GET", "HEAD"), "_api_events"),
        "/api/stream": (("GET",), "_api_stream"),
        "/api/classify": (("POST",), "_api_classify"),
        "/healthz": (("GET", "HEAD"), "_healthz"),
        "/metrics": (("GET", "HEAD"), "_metrics"),
    }

    def _dispatch(self) -> None:
        path, _, query_text = self.path.partition("?")
        try:
            self.query = parse_qs(query_text, keep_blank_values=True, max_num_fields=16)
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, "too many query parameters")
            return
        if not self._check_host():
            return
        token_param = self._param("token")
        if not self.dashboard._authorized(self.headers.get("Authorization"), token_param, self._cookie()):
            self._unauthorized(path)
            return
        route = self._ROUTES.get(path)
        if route is None:
            self._error(HTTPStatus.NOT_FOUND, "not found")
            return
        methods, handler_name = route
        if self.command not in methods:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} not allowed here; use {', '.join(methods)}",
                        {"Allow": ", ".join(methods)})
            return
        if token_param is not None and path in _DASHBOARD_PAGES and self.dashboard.config.token:
            # Opened as /?token=...: take it out of the address bar, and keep it in an HttpOnly
            # cookie only when it is itself the token (the request may be authorized by another
            # one). The cookie holds the configured token, never the client's text.
            headers = {"Location": "./"}
            if self.dashboard._token_matches(token_param):
                headers["Set-Cookie"] = (f"{COOKIE_NAME}={self.dashboard.config.token}; Path=/; HttpOnly; "
                                         "SameSite=Strict")
            self._send(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", headers)
            return
        getattr(self, handler_name)(path)

    def _param(self, name: str) -> Optional[str]:
        values = self.query.get(name)
        return values[-1] if values else None

    def _cookie(self) -> Optional[str]:
        for part in (self.headers.get("Cookie") or "").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == COOKIE_NAME:
                return value
        return None

    def _check_host(self) -> bool:
        """Without a token, only loopback ``Host`` names: a DNS-rebinding page cannot read the API."""
        if self.dashboard._token is not None:
            return True
        host = (self.headers.get("Host") or "").strip()
        if not host:
            return True  # HTTP/1.0 clients may omit it; a browser never does
        if host.startswith("["):
            name = host[1:].partition("]")[0]
        else:
            before, sep, port = host.rpartition(":")
            name = before if sep and port.isdigit() else host
        if is_loopback_host(name):
            return True
        self._error(HTTPStatus.FORBIDDEN, f"Host {host!r} is not allowed: this server has no token and "
                                          "answers only to localhost (use an SSH tunnel)")
        return False

    def _unauthorized(self, path: str) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="edge-ser"'}
        if path in _DASHBOARD_PAGES:
            body = (b"<!doctype html><meta charset=utf-8><title>edge-ser: token needed</title>"
                    b"<p>This edge-ser dashboard needs its access token: open it as "
                    b"<code>/?token=YOUR_TOKEN</code> once (the browser then keeps it in a cookie), "
                    b"or reach it through an SSH tunnel.</p>")
            self._send(HTTPStatus.UNAUTHORIZED, body, "text/html; charset=utf-8", headers)
        else:
            self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token (Authorization: Bearer TOKEN or ?token=)",
                        headers)

    # -- endpoints ------------------------------------------------------------------------------------
    def _asset(self, path: str) -> None:
        file_name, content_type = ASSETS[path]
        headers = {"Content-Security-Policy": _CSP} if file_name.endswith(".html") else None
        self._send(HTTPStatus.OK, self.dashboard.assets[file_name], content_type, headers)

    def _favicon(self, path: str) -> None:
        self.send_response(HTTPStatus.NO_CONTENT)
        self._common_headers()
        self.end_headers()

    def _healthz(self, path: str) -> None:
        self._json(HTTPStatus.OK, {"status": "ok", "state": self.dashboard.state.state})

    def _api_status(self, path: str) -> None:
        self._json(HTTPStatus.OK, self.dashboard.status())

    def _metrics(self, path: str) -> None:
        dashboard = self.dashboard
        status = dashboard.status()
        text = render_prometheus(status, dashboard.state.latency_snapshot(), status["server"])
        self._send(HTTPStatus.OK, text.encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")

    def _int_param(self, name: str, default: Optional[int], low: int, high: int) -> Optional[int]:
        text = self._param(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise _BadRequest(f"'{name}' must be an integer, got {text[:40]!r}") from None
        if value < low:
            raise _BadRequest(f"'{name}' must be at least {low}, got {value}")
        return min(value, high)  # asking for more than exists is not an error

    def _api_events(self, path: str) -> None:
        hub = self.dashboard.hub
        try:
            since = self._int_param("since", None, 0, 2 ** 62)
            limit = self._int_param("limit", 100, 1, self.dashboard.config.history_size)
        except _BadRequest as exc:
            self._error(HTTPStatus.BAD_REQUEST, str(exc))
            return
        items = hub.events(since, limit or 100)
        self._json(HTTPStatus.OK, {
            "events": [item.event for item in items],
            "oldest_id": hub.oldest_id,
            "newest_id": hub.newest_id,
            "next_since": items[-1].id if items else (since if since is not None else hub.newest_id),
        })

    def _api_stream(self, path: str) -> None:
        dashboard = self.dashboard
        header_id = self.headers.get("Last-Event-ID")
        raw_id = header_id if header_id not in (None, "") else self._param("last_event_id")
        after: Optional[int] = None
        if raw_id not in (None, ""):
            try:
                after = max(0, int(str(raw_id).strip()))
            except ValueError:
                self._error(HTTPStatus.BAD_REQUEST, f"Last-Event-ID must be an integer, got {str(raw_id)[:40]!r}")
                return
        subscription = dashboard.hub.subscribe(after, dashboard.config.client_queue_size, self.connection)
        if subscription is None:
            self._error(HTTPStatus.SERVICE_UNAVAILABLE, "too many stream clients", {"Retry-After": "10"})
            return
        client, backlog = subscription
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("X-Accel-Buffering", "no")
            self._common_headers()
            self.end_headers()
            self.wfile.write(b"retry: 2000\n: edge-ser event stream\n\n")
            for start in range(0, len(backlog), 64):
                self.wfile.write(b"".join(item.frame for item in backlog[start:start + 64]))
            self._pump(client)
        except socket.timeout:
            dashboard.hub.drop(client)  # the client stopped reading: same as a full queue
        except (OSError, ValueError):
            pass  # the client went away, or we shut its socket
        finally:
            dashboard.hub.unsubscribe(client)

    def _pump(self, client: StreamClient) -> None:
        keepalive = self.dashboard.config.keepalive_seconds
        idle = 0.0
        while not client.closed:
            try:
                frame = client.queue.get(timeout=min(keepalive, _LEAVE_CHECK_SECONDS))
            except queue.Empty:
                if self._client_left():
                    return
                idle += _LEAVE_CHECK_SECONDS
                if idle >= keepalive:
                    idle = 0.0
                    self.wfile.write(b": keep-alive\n\n")
                continue
            idle = 0.0
            frames = [frame]
            while frame is not None and len(frames) < 64:  # send what piled up in one write
                try:
                    frame = client.queue.get_nowait()
                except queue.Empty:
                    break
                frames.append(frame)
            payload = b"".join(f for f in frames if f is not None)
            if payload:
                self.wfile.write(payload)
            if None in frames:
                return

    def _client_left(self) -> bool:
        """True when the client closed its side (a stream client never sends anything after its request)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _api_classify(self, path: str) -> None:
        dashboard = self.dashboard
        config = dashboard.config
        limit = config.max_body_bytes
        if self.framing.transfer_encoding:
            self._classify_reply("bad_request", HTTPStatus.LENGTH_REQUIRED,
                                 {"error": "send the WAV with a Content-Length (chunked bodies are not accepted)"})
            return
        length = self.framing.content_length
        if length is None:
            self._classify_reply("bad_request", HTTPStatus.LENGTH_REQUIRED,
                                 {"error": "Content-Length required (send the WAV file as the request body)"})
            return
        if length > limit:
            self._classify_reply("too_large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 {"error": f"body of {length} bytes exceeds the limit of {limit} bytes"})
            return
        if length == 0:
            self._classify_reply("bad_request", HTTPStatus.BAD_REQUEST, {"error": "empty body: send a WAV file"})
            return
        if not dashboard.classify_pool.reserve():  # before a byte of the body is read
            self._classify_reply("busy", HTTPStatus.SERVICE_UNAVAILABLE,
                                 {"error": f"busy with {dashboard.classify_pool.slots} other upload(s); "
                                           "retry shortly"}, {"Retry-After": "2"})
            return
        try:
            outcome, code, payload = self._receive_and_classify(length)
        finally:
            dashboard.classify_pool.release()  # after _receive_and_classify closed the body
        self._classify_reply(outcome, code, payload)

    def _receive_and_classify(self, length: int) -> Tuple[str, int, Dict[str, Any]]:
        """Read the body and classify it (the caller holds an upload slot): ``(outcome, status, payload)``."""
        config = self.dashboard.config
        try:
            body = read_body(self.rfile, self.connection, length, min_rate=config.min_upload_rate,
                             grace=config.upload_grace_seconds, restore_timeout=config.request_timeout)
            self.unread_input = False
        except SlowBody as exc:
            return "slow", HTTPStatus.REQUEST_TIMEOUT, {
                "error": f"upload too slow: {exc.received} of {exc.length} bytes arrived; after "
                         f"{config.upload_grace_seconds:g} s a body must arrive at {config.min_upload_rate} bytes/s"}
        except BodyEnded as exc:
            return "bad_request", HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        name = (self._param("name") or "upload.wav")[:200]
        windows = self._param("windows") not in ("0", "false", "no")
        try:
            prediction, classifier = self.dashboard.classify_pool.classify(body.view, name, windows)
        except EdgeSerError as exc:
            return "bad_request", HTTPStatus.BAD_REQUEST, {"error": str(exc)}
        except Exception as exc:  # a bug or a model that failed to load: say so, keep serving
            log.exception("http: classify failed")
            return "error", HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": f"classification failed: {type(exc).__name__}: {exc}"}
        finally:
            body.close()
        result = prediction.to_dict(windows=windows)
        result["model"] = str(getattr(classifier, "model_id", ""))
        return "ok", HTTPStatus.OK, result

    def _classify_reply(self, outcome: str, code: int, payload: Dict[str, Any],
                        headers: Optional[Mapping[str, str]] = None) -> None:
        self.dashboard._count("classify", outcome)
        if code != HTTPStatus.OK:
            payload.setdefault("status", int(code))
        self._json(code, payload, headers)


def _breaks_line(text: str) -> bool:
    return "\r" in text or "\n" in text or "\0" in text


class _BadRequest(ValueError):
    pass


def wait_for_clients(server: DashboardServer, count: int, timeout: float = 5.0) -> bool:
    """True once ``count`` stream clients are connected (for tests and scripts, not the daemon)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.hub.client_count >= count:
            return True
        time.sleep(0.01)
    return server.hub.client_count >= count
