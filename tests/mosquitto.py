"""A real Mosquitto broker and a real paho subscriber for the MQTT tests.

Each :class:`Mosquitto` runs its own ``mosquitto -c <conf>`` on a free port of
127.0.0.1 in a temporary directory (never the system service), can be stopped and
started again on the same port (to play a broker restart), and optionally keeps
sessions on disk (``persistence``) and requires a password.
:class:`Subscriber` records what arrives, and :meth:`Subscriber.barrier` proves that
everything the broker had for it before a given moment has arrived -- so tests can
assert that something did *not* arrive without sleeping.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

LOCALHOST = "127.0.0.1"


def mosquitto_binary() -> Optional[str]:
    """Path of the broker binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None)


def self_signed_certificate(directory: Path) -> Tuple[Path, Path]:
    """(certificate, key) for 127.0.0.1, made with the openssl command; the cert is its own CA."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError("openssl command not found")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "broker-cert.pem", directory / "broker-key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return probe.getsockname()[1]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` (a bound for hangs, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Mosquitto:
    """One private broker process; ``start()``/``stop()`` may be called repeatedly."""

    def __init__(self, workdir: Path, *, port: Optional[int] = None, persistence: bool = False,
                 users: Optional[Dict[str, str]] = None,
                 tls_cert: Optional[Tuple[Path, Path]] = None) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise FileNotFoundError("mosquitto binary not found (apt-get install mosquitto)")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host = LOCALHOST
        self.persistence = persistence
        self.users = dict(users or {})
        self.tls_cert = tls_cert
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self._process: Optional[subprocess.Popen] = None
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {LOCALHOST}",
            *([f"certfile {self.tls_cert[0]}", f"keyfile {self.tls_cert[1]}"] if self.tls_cert else []),
            # Running as root, mosquitto would switch to the 'mosquitto' user and could not
            # read our temporary files; "user <me>" keeps whoever we are.
            f"user {getpass.getuser()}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages true",
        ]
        if self.persistence:
            data_dir = self.workdir / "data"
            data_dir.mkdir(exist_ok=True)
            lines += ["persistence true", f"persistence_location {data_dir}/", "autosave_interval 3600"]
        else:
            lines.append("persistence false")
        if self.users:
            password_file = self.workdir / "passwords"
            password_file.unlink(missing_ok=True)
            passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for index, (user, password) in enumerate(self.users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run([passwd, "-b", *create, str(password_file), user, password],
                               check=True, capture_output=True)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        self.conf_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        assert self._process is None, "already running"
        log = open(self.log_path, "ab")
        self._process = subprocess.Popen([self.binary, "-c", str(self.conf_path)],
                                         stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"mosquitto exited at start:\n{self.log_text()}")
            try:
                with socket.create_connection((LOCALHOST, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}")
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: a persistent broker saves its sessions)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """A real paho client that records every message on ``topics`` (QoS 1).

    ``client_id`` + ``persistent=True`` give a durable session, so a persistent broker
    keeps this subscriber's messages while it is reconnecting after a broker restart.
    """

    def __init__(self, broker: Mosquitto, topics: Sequence[str], *, client_id: Optional[str] = None,
                 persistent: bool = False, username: Optional[str] = None,
                 password: Optional[str] = None, ca_file: Optional[str] = None) -> None:
        import paho.mqtt.client as mqtt

        self.topics = list(topics)
        self.messages: List[Received] = []
        self._cond = threading.Condition()
        self._barrier_topic = f"test-barrier/{uuid.uuid4().hex}"
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"sub-{uuid.uuid4().hex[:10]}",
                                  clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        self.client.reconnect_delay_set(min_delay=0.05, max_delay=0.3)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        wait_until(self.connected.is_set, what="subscriber connection")
        self.barrier()  # subscriptions are active (and retained messages in) from here on

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            return
        client.subscribe([(topic, 1) for topic in [*self.topics, self._barrier_topic]])
        self.connected.set()

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def on(self, topic: str) -> List[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> List[bytes]:
        return [m.payload for m in self.on(topic)]

    def wait_for(self, predicate: Callable[[List[Received]], bool], timeout: float = 15.0,
                 what: str = "messages") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m.topic, m.payload[:80]) for m in self.messages[-10:]]
                    raise AssertionError(f"timed out waiting for {what}; last messages: {seen}")
                self._cond.wait(remaining)

    def barrier(self) -> None:
        """Return once everything the broker routed to us before now has arrived."""
        token = uuid.uuid4().hex.encode()
        self.client.publish(self._barrier_topic, token, qos=1)
        self.wait_for(lambda msgs: any(m.topic == self._barrier_topic and m.payload == token for m in msgs),
                      what="barrier message")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FlakyLink:
    """A TCP relay on 127.0.0.1 between a client and the broker that can fail on demand.

    ``hold()`` swallows every byte in both directions (the client's messages are
    "sent" but never reach the broker, and nothing is acknowledged) and refuses new
    connections; ``cut()`` then closes the held connections; ``release()`` restores
    service. That is a network drop with messages in flight, which a broker restart
    alone does not produce.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOCALHOST, 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self.host = LOCALHOST
        self._held = False
        self._closed = False
        self._lock = threading.Lock()
        self._pairs: List[tuple] = []
        self.swallowed_bytes = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._held:
                client.close()
                continue
            try:
                upstream = socket.create_connection((LOCALHOST, self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if self._held:
                    with self._lock:
                        self.swallowed_bytes += len(data)
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.close()
                except OSError:
                    pass

    def hold(self) -> None:
        self._held = True

    def cut(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for end in pair:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def release(self) -> None:
        self._held = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()
