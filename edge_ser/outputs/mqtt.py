"""MQTT output: events to a broker, with Home Assistant discovery; survives broker outages.

Topics (``<prefix>`` is ``topic_prefix``, default ``edge-ser/<hostname>``):

==============================  =========  ================================================
``<prefix>/event``              QoS 1      every utterance (or window) event as JSON, in order
``<prefix>/state``              retained   latest emotion, confidence, time, probabilities
``<prefix>/status``             retained   ``online`` / ``offline`` (``offline`` is also the
                                           Last Will, so a crashed device shows as offline)
``<prefix>/daemon``             QoS 1,     daemon status events (start, stop, periodic,
                                retained   device_lost, device_recovered), in order
``homeassistant/sensor/<node>/  retained   discovery config of the "Room emotion" sensor
emotion/config``
==============================  =========  ================================================

How it keeps its promises, because it runs unattended next to a microphone:

* ``emit()`` never blocks and never raises because of the network: it encodes the
  event, appends it to a bounded in-memory :class:`~edge_ser.outputs.outbox.Outbox` and
  wakes one background thread, which owns all network work.
* An event leaves the outbox only when the broker acknowledged it (PUBACK). After a
  broker restart or a dropped link the thread reconnects with exponential backoff and
  sends what was not acknowledged, oldest first. Each connection uses a fresh paho
  client, so paho's own resend queue never duplicates or reorders ours. (QoS 1 is
  "at least once": an event whose PUBACK was lost with the link arrives twice;
  consumers can dedupe on ``seq``.)
* When the outbox is full, the oldest waiting events are dropped and counted.
* A refused connection (bad user name or password) is logged once, kept in
  ``counters()["last_error"]``, and retried with backoff; the daemon goes on.
* ``close()`` delivers what it can within ``close_timeout`` (2 s), publishes
  ``offline``, and disconnects cleanly.

paho-mqtt (2.x) is imported only when a sink is created, so the device path works
without it.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Set, Tuple, Union

from .. import __version__
from ..errors import EdgeSerError
from .hass import OFFLINE, ONLINE, discovery_payload, state_payload, to_json
from .mqtt_config import PASSWORD_ENV, MqttConfig, MqttConfigError, add_mqtt_arguments
from .outbox import OutMessage, Outbox, RetainedTopics

__all__ = [
    "MqttSink",
    "MqttConfig",
    "MqttConfigError",
    "MissingDependencyError",
    "add_mqtt_arguments",
    "create_mqtt_sink",
    "PASSWORD_ENV",
]

log = logging.getLogger("edge_ser.outputs.mqtt")

#: Events sent but not yet acknowledged on one connection (paho's default is 20 too).
MAX_IN_FLIGHT = 20
#: How long to wait for the broker's CONNACK after the TCP connection is up.
CONNACK_TIMEOUT = 10.0
#: Event types that carry a classification and so update the retained state
#: (``window`` is what the daemon emits in continuous mode).
_RESULT_TYPES = ("utterance", "window")
#: Connection refusals that mean "your credentials are wrong" (MQTT 3.1.1 codes 4, 5 as v5 reason codes).
_AUTH_REASONS = {134, 135}


class MissingDependencyError(EdgeSerError):
    """An optional package needed by the chosen feature is not installed."""


def _import_paho() -> Any:
    """paho.mqtt.client, or a one-line explanation of how to get it."""
    try:
        import paho.mqtt.client as paho_client
    except ImportError as exc:
        raise MissingDependencyError(
            "the MQTT output needs paho-mqtt 2.x: pip install 'edge-ser[mqtt]' "
            "(or pip install 'paho-mqtt>=2,<3')") from exc
    if not hasattr(paho_client, "CallbackAPIVersion"):
        version = getattr(getattr(paho_client, "mqtt", None), "__version__", "1.x")
        raise MissingDependencyError(
            f"the MQTT output needs paho-mqtt 2.x, found {version}: pip install 'paho-mqtt>=2,<3'")
    return paho_client


@dataclass
class _Link:
    """State of one connection attempt; callbacks of a dead client only touch their own."""

    connected: bool = False
    refused: Optional[str] = None
    pending: Dict[int, Union[OutMessage, Tuple[str, int]]] = field(default_factory=dict)
    early_acks: Set[int] = field(default_factory=set)


class MqttSink:
    """Publishes daemon events to MQTT; see the module docstring for topics and guarantees.

    ``device_name`` names the Home Assistant device ("Living room Pi") unless the config
    has its own ``device_name``; ``model_id`` is
    shown as its model ("edge-ser 1.0 ab12cd"); ``labels`` (the model's emotions), when
    given, make the sensor an HA ``enum`` so automations can pick a state from a list.
    """

    def __init__(self, config: MqttConfig, *, device_name: str, model_id: str,
                 labels: Optional[Sequence[str]] = None, sw_version: str = __version__) -> None:
        self._paho = _import_paho()
        self.config = config
        self._outbox = Outbox(config.queue_size)
        self._retained = RetainedTopics()
        if config.discovery:
            self._retained.set(config.discovery_topic, to_json(discovery_payload(
                config, device_name=config.device_name or device_name, model_id=model_id,
                sw_version=sw_version, labels=labels)))
        self._retained.set(config.status_topic, ONLINE.encode())

        self._lock = threading.Lock()
        self._published = 0
        self._reconnects = 0
        self._connect_failures = 0
        self._ever_connected = False
        self._connected = False
        self._last_error: Optional[str] = None
        self._last_logged_error: Optional[str] = None
        self._warned_drop = False

        self._closed = False
        self._closing = threading.Event()
        self._flush_deadline = 0.0
        self._final_deadline = 0.0
        self._offline_set = False
        self._said_goodbye = False

        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="edge-ser-mqtt", daemon=True)
        self._thread.start()

    # -- the sink interface (called from the daemon's thread) ------------------------------
    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue ``event`` for the broker; returns at once whatever the network does."""
        if self._closed:
            raise RuntimeError("MqttSink.emit() after close()")
        kind = event.get("type")
        if kind == "status":
            message = OutMessage(self.config.daemon_topic, to_json(event), retain=True)
        else:
            message = OutMessage(self.config.event_topic, to_json(event))
        dropped = self._outbox.put(message)
        if kind in _RESULT_TYPES and event.get("emotion") is not None:
            self._retained.set(self.config.state_topic, to_json(state_payload(event)))
        if dropped and not self._warned_drop:
            self._warned_drop = True  # once per outage: the counter has the numbers
            log.warning("MQTT queue full (%d events): dropping the oldest (broker away or too slow)",
                        self.config.queue_size)
        self._wake()

    def close(self) -> None:
        """Deliver what can be delivered within ``close_timeout``, say ``offline``, disconnect."""
        if self._closed:
            return
        self._closed = True
        now = time.monotonic()
        timeout = self.config.close_timeout
        self._flush_deadline = now + 0.75 * timeout
        self._final_deadline = now + timeout
        self._closing.set()
        self._wake()
        self._thread.join(timeout + 1.0)  # a connect() in progress may outlive this; the thread then ends by itself
        left = len(self._outbox)
        if left:
            log.warning("MQTT output closed with %d event(s) the broker never acknowledged", left)
        if not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    def counters(self) -> Dict[str, Any]:
        """Health numbers for the daemon's status events and logs.

        ``published``: events the broker acknowledged; ``queued``: events waiting (or in
        flight); ``dropped``: events given up because the queue was full; ``reconnects``:
        successful connections after the first; ``connect_failures``: failed attempts;
        ``last_error``: why the last attempt failed (None while things are fine).
        """
        with self._lock:
            return {
                "published": self._published,
                "queued": len(self._outbox),
                "dropped": self._outbox.dropped,
                "reconnects": self._reconnects,
                "connect_failures": self._connect_failures,
                "connected": self._connected,
                "last_error": self._last_error,
            }

    @property
    def dropped(self) -> int:
        """Events given up because the queue was full (the daemon's FanOut sums ``dropped``)."""
        return self._outbox.dropped

    @property
    def last_error(self) -> Optional[str]:
        with self._lock:
            return self._last_error

    def __enter__(self) -> "MqttSink":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- background thread ---------------------------------------------------------------
    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already has a wake-up pending, or closing

    def _run(self) -> None:
        delay = self.config.reconnect_min_delay
        while not self._said_goodbye:
            connected = False
            try:
                connected = self._session()
            except Exception as exc:  # the daemon must never lose its output thread
                self._note_error(f"MQTT output: unexpected error: {exc!r}", logging.ERROR, exc_info=True)
            if self._said_goodbye:
                break
            now = time.monotonic()
            if self._closing.is_set():
                # Nothing left to deliver: no need to wait for a broker that is away (if we
                # were connected before, the Last Will already said "offline").
                if now >= self._final_deadline or len(self._outbox) == 0:
                    break
                time.sleep(min(delay, self._final_deadline - now))
            else:
                self._closing.wait(delay)
            delay = self.config.reconnect_min_delay if connected else min(
                delay * 2, self.config.reconnect_max_delay)

    def _new_client(self, link: _Link) -> Any:
        paho = self._paho
        cfg = self.config
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=cfg.client_id,
                             clean_session=True, protocol=paho.MQTTv311)
        client.enable_logger(logging.getLogger("edge_ser.outputs.mqtt.paho"))
        client.max_inflight_messages_set(0)  # we bound the window ourselves
        client.will_set(cfg.status_topic, OFFLINE, qos=1, retain=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(ca_certs=cfg.ca_file)
        if self._closing.is_set():
            client.connect_timeout = max(0.1, min(5.0, self._final_deadline - time.monotonic()))
        client.on_connect = lambda c, u, flags, reason, props: self._on_connect(c, link, reason)
        client.on_disconnect = lambda c, u, flags, reason, props: self._on_disconnect(link, reason)
        client.on_publish = lambda c, u, mid, reason, props: self._on_publish(link, mid)
        client.on_message = lambda c, u, msg: self._on_message(msg)
        return client

    def _session(self) -> bool:
        """One connection from connect to disconnect; True if the broker accepted us."""
        cfg = self.config
        link = _Link()
        client = self._new_client(link)
        try:
            client.connect(cfg.host, cfg.port, cfg.keepalive)
        except (OSError, ValueError) as exc:
            with self._lock:
                self._connect_failures += 1
            self._note_error(f"MQTT broker {cfg.host}:{cfg.port} unreachable: {exc}", logging.WARNING)
            return False
        connack_deadline = time.monotonic() + min(CONNACK_TIMEOUT, cfg.keepalive)
        ever_connected = False
        try:
            while True:
                sock = client.socket()
                if sock is None or link.refused:
                    break
                now = time.monotonic()
                timeout = 1.0
                if link.connected:
                    ever_connected = True
                    self._pump(client, link)
                    if self._closing.is_set() and self._ready_to_leave(now):
                        client.disconnect()
                        self._said_goodbye = True
                        break
                elif now >= connack_deadline:
                    self._note_error(f"MQTT broker {cfg.host}:{cfg.port} did not answer CONNECT", logging.WARNING)
                    break
                else:
                    timeout = min(timeout, connack_deadline - now)
                if self._closing.is_set():
                    if now >= self._final_deadline:
                        break
                    timeout = min(timeout, self._final_deadline - now)
                sock = client.socket()
                if sock is None:
                    break
                readable, writable, _ = select.select(
                    [sock, self._wake_r], [sock] if client.want_write() else [], [], max(0.0, timeout))
                if self._wake_r in readable:
                    self._drain_wake()
                if sock in readable:
                    client.loop_read()
                    self._read_tls_leftovers(client)
                if sock in writable and client.socket() is not None:
                    client.loop_write()
                if client.socket() is not None:
                    client.loop_misc()
        finally:
            sock = client.socket()
            if sock is not None and not self._said_goodbye:
                # Leave without DISCONNECT: the broker then publishes our Last Will (offline).
                try:
                    sock.close()
                except OSError:
                    pass
            self._outbox.rewind()
            self._retained.rewind()
            with self._lock:
                self._connected = False
        return ever_connected

    def _pump(self, client: Any, link: _Link) -> None:
        """Publish due retained values, then events up to the in-flight window."""
        qos = self.config.qos
        for topic, payload, version in self._retained.take_due():
            # Retained values always go with QoS 1: their "acknowledged" state drives close().
            info = client.publish(topic, payload, qos=1, retain=True)
            self._track(link, info.mid, (topic, version))
            if client.socket() is None:
                return
        while self._outbox.in_flight < MAX_IN_FLIGHT:
            message = self._outbox.take_next()
            if message is None:
                return
            info = client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
            self._track(link, info.mid, message)
            if client.socket() is None:
                return

    def _track(self, link: _Link, mid: int, item: Union[OutMessage, Tuple[str, int]]) -> None:
        link.pending[mid] = item
        if mid in link.early_acks:  # QoS 0 "acks" when written, possibly inside publish()
            link.early_acks.discard(mid)
            self._on_publish(link, mid)

    def _ready_to_leave(self, now: float) -> bool:
        """While closing: flush events, then publish ``offline``, then leave."""
        if not self._offline_set and (len(self._outbox) == 0 or now >= self._flush_deadline):
            self._offline_set = True
            self._retained.set(self.config.status_topic, OFFLINE.encode())
            self._wake()
            return False
        return self._offline_set and self._retained.all_acknowledged()

    @staticmethod
    def _read_tls_leftovers(client: Any) -> None:
        """Consume bytes TLS already decrypted: select() cannot see them, they would wait."""
        for _ in range(1000):
            sock = client.socket()
            pending = getattr(sock, "pending", None)
            if sock is None or pending is None or pending() <= 0:
                return
            client.loop_read()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- paho callbacks (run on the background thread, inside loop_read/loop_write) --------
    def _on_connect(self, client: Any, link: _Link, reason: Any) -> None:
        cfg = self.config
        if reason.is_failure:
            hint = ""
            if getattr(reason, "value", None) in _AUTH_REASONS:
                hint = (f" (check the user name and the password from password_file or ${PASSWORD_ENV};"
                        f" user: {cfg.username or 'none'})")
            link.refused = str(reason)
            with self._lock:
                self._connect_failures += 1
            self._note_error(f"MQTT broker {cfg.host}:{cfg.port} refused the connection: {reason}{hint}",
                             logging.ERROR)
            return
        link.connected = True
        with self._lock:
            if self._ever_connected:
                self._reconnects += 1
            self._ever_connected = True
            self._connected = True
            self._last_error = None
            self._last_logged_error = None
        self._warned_drop = False
        log.info("MQTT connected to %s:%d as %s (topics %s/...)", cfg.host, cfg.port, cfg.client_id,
                 cfg.topic_prefix)
        if cfg.discovery:
            # Home Assistant announces its restarts here; it then wants discovery again.
            client.subscribe(f"{cfg.discovery_prefix}/status", qos=0)

    def _on_disconnect(self, link: _Link, reason: Any) -> None:
        was_connected = link.connected
        link.connected = False
        with self._lock:
            self._connected = False
        if was_connected and not self._said_goodbye and not self._closing.is_set():
            self._note_error(f"MQTT connection to {self.config.host}:{self.config.port} lost ({reason});"
                             " reconnecting", logging.WARNING)

    def _on_publish(self, link: _Link, mid: int) -> None:
        item = link.pending.pop(mid, None)
        if item is None:
            link.early_acks.add(mid)
        elif isinstance(item, OutMessage):
            self._outbox.acknowledge(item)
            with self._lock:
                self._published += 1
        else:
            self._retained.acknowledge(*item)

    def _on_message(self, message: Any) -> None:
        cfg = self.config
        if cfg.discovery and message.topic == f"{cfg.discovery_prefix}/status" and message.payload == b"online":
            self._retained.rewind(cfg.discovery_topic)
            self._retained.rewind(cfg.status_topic)
            self._retained.rewind(cfg.state_topic)

    def _note_error(self, message: str, level: int, exc_info: bool = False) -> None:
        """Remember the error; log it only when it differs from the last one logged."""
        with self._lock:
            self._last_error = message
            repeated = message == self._last_logged_error
            self._last_logged_error = message
        if not repeated:
            log.log(level, "%s", message, exc_info=exc_info)


def create_mqtt_sink(config: MqttConfig, *, device_name: str, model_id: str,
                     labels: Optional[Sequence[str]] = None) -> MqttSink:
    """The daemon's entry point: a running sink for ``config`` (see :class:`MqttSink`)."""
    return MqttSink(config, device_name=device_name, model_id=model_id, labels=labels)
