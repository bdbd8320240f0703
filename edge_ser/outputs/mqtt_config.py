"""Settings of the MQTT output: one frozen dataclass, filled from a TOML table or from flags.

Kept apart from the sink so the daemon can parse and check ``[mqtt]`` and ``--mqtt-*``
without paho-mqtt installed, and so a typo in the config fails at start-up with a clear
message instead of as a silent "nothing arrives in Home Assistant" hours later.

The broker password is never a command-line value (it would show in ``ps`` and in shell
history): it comes from ``password_file`` or the ``EDGE_SER_MQTT_PASSWORD`` environment
variable, and it is kept out of ``repr()``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from ..errors import EdgeSerError

__all__ = [
    "MqttConfig",
    "MqttConfigError",
    "PASSWORD_ENV",
    "add_mqtt_arguments",
    "default_hostname",
]

#: Environment variable holding the broker password (alternative to ``password_file``).
PASSWORD_ENV = "EDGE_SER_MQTT_PASSWORD"

_TOPIC_UNSAFE = re.compile(r"[#+\x00]")
_NODE_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class MqttConfigError(EdgeSerError):
    """The ``[mqtt]`` table or the ``--mqtt-*`` flags are invalid."""


def default_hostname() -> str:
    """This machine's short host name, usable in MQTT topics and client ids."""
    name = socket.gethostname().split(".")[0] or "device"
    return _NODE_ID_UNSAFE.sub("-", name).strip("-") or "device"


def _node_id_from(prefix: str) -> str:
    """A Home Assistant node id (``[A-Za-z0-9_-]``) derived from the topic prefix.

    Deriving it from the prefix (not the host name) keeps two daemons on one host with
    different prefixes from overwriting each other's discovery config.
    """
    return _NODE_ID_UNSAFE.sub("_", prefix).strip("_") or "edge-ser"


@dataclass(frozen=True)
class MqttConfig:
    """Everything the MQTT sink needs to know; validated in ``__post_init__``.

    ``client_id``, ``topic_prefix`` and ``node_id`` left empty get host-derived defaults
    (``edge-ser-<hostname>``, ``edge-ser/<hostname>``, prefix with ``/`` -> ``_``).
    ``port`` 0 means "the default": 1883, or 8883 with TLS. ``device_name``, when set,
    names the Home Assistant device ("Living room") instead of what the daemon passes.
    """

    host: str
    port: int = 0
    client_id: str = ""
    topic_prefix: str = ""
    node_id: str = ""
    device_name: str = ""
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    password_file: Optional[str] = None
    tls: bool = False
    ca_file: Optional[str] = None
    qos: int = 1
    keepalive: int = 60
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    queue_size: int = 1000
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    close_timeout: float = 2.0

    def __post_init__(self) -> None:
        host = self.host.strip() if isinstance(self.host, str) else self.host
        if not isinstance(host, str) or not host:
            raise MqttConfigError("mqtt: 'host' must be a non-empty host name or address")
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_("host", host)
        if self.ca_file:
            set_("tls", True)  # a CA file only makes sense with TLS: do not make users say it twice
        if self.port == 0:
            set_("port", 8883 if self.tls else 1883)
        if not 1 <= self.port <= 65535:
            raise MqttConfigError(f"mqtt: 'port' must be 1..65535, got {self.port}")
        hostname = default_hostname()
        if not self.client_id:
            set_("client_id", f"edge-ser-{hostname}")
        if not self.topic_prefix:
            set_("topic_prefix", f"edge-ser/{hostname}")
        set_("topic_prefix", self.topic_prefix.strip("/"))
        if not self.topic_prefix or _TOPIC_UNSAFE.search(self.topic_prefix):
            raise MqttConfigError(
                f"mqtt: 'topic_prefix' must be a plain topic without '#', '+', got {self.topic_prefix!r}")
        set_("discovery_prefix", self.discovery_prefix.strip("/"))
        if not self.discovery_prefix or _TOPIC_UNSAFE.search(self.discovery_prefix):
            raise MqttConfigError(
                f"mqtt: 'discovery_prefix' must be a plain topic without '#', '+', got {self.discovery_prefix!r}")
        if not self.node_id:
            set_("node_id", _node_id_from(self.topic_prefix))
        if _NODE_ID_UNSAFE.search(self.node_id):
            raise MqttConfigError(f"mqtt: 'node_id' may hold only letters, digits, '_' and '-', got {self.node_id!r}")
        if self.qos not in (0, 1, 2):
            raise MqttConfigError(f"mqtt: 'qos' must be 0, 1 or 2, got {self.qos}")
        if not 5 <= self.keepalive <= 65535:
            raise MqttConfigError(f"mqtt: 'keepalive' must be 5..65535 seconds, got {self.keepalive}")
        if not 1 <= self.queue_size <= 10_000_000:
            raise MqttConfigError(f"mqtt: 'queue_size' must be 1..10000000, got {self.queue_size}")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay <= 3600:
            raise MqttConfigError(
                "mqtt: need 0 < reconnect_min_delay <= reconnect_max_delay <= 3600 seconds, got "
                f"{self.reconnect_min_delay} and {self.reconnect_max_delay}")
        if not 0 <= self.close_timeout <= 60:
            raise MqttConfigError(f"mqtt: 'close_timeout' must be 0..60 seconds, got {self.close_timeout}")
        if self.ca_file and not Path(self.ca_file).is_file():
            raise MqttConfigError(f"mqtt: ca_file {self.ca_file!r} does not exist")
        if self.password_file and self.password is None:
            set_("password", _read_password_file(self.password_file))
        if self.password is None and self.username:
            env_password = os.environ.get(PASSWORD_ENV)
            if env_password:
                set_("password", env_password)
        if self.password is not None and not self.username:
            raise MqttConfigError("mqtt: a password needs a 'username' too")

    # -- topics ------------------------------------------------------------------------
    @property
    def event_topic(self) -> str:
        """Every utterance event, as JSON, in order (QoS ``qos``, not retained)."""
        return f"{self.topic_prefix}/event"

    @property
    def state_topic(self) -> str:
        """The latest emotion with confidence/time/probabilities (retained)."""
        return f"{self.topic_prefix}/state"

    @property
    def status_topic(self) -> str:
        """``online``/``offline`` availability (retained; ``offline`` is the Last Will)."""
        return f"{self.topic_prefix}/status"

    @property
    def daemon_topic(self) -> str:
        """The daemon's status events (started/stopped/device_lost/...), in order, last one retained."""
        return f"{self.topic_prefix}/daemon"

    @property
    def discovery_topic(self) -> str:
        """Home Assistant MQTT discovery config of the emotion sensor (retained)."""
        return f"{self.discovery_prefix}/sensor/{self.node_id}/emotion/config"

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> "MqttConfig":
        """Build from a TOML ``[mqtt]`` table (or any dict), checking keys and types.

        Unknown keys are errors (a misspelt ``discovery_prefx`` must not be ignored);
        a literal ``password`` key is refused so secrets do not sit in config files
        that are often world-readable: use ``password_file`` or the environment.
        """
        if not isinstance(mapping, Mapping):
            raise MqttConfigError(f"mqtt: expected a table, got {type(mapping).__name__}")
        if "password" in mapping:
            raise MqttConfigError(
                f"mqtt: do not put 'password' in the config; use 'password_file' or ${PASSWORD_ENV}")
        known = _ALLOWED_KEYS
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise MqttConfigError(
                f"mqtt: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        values: Dict[str, Any] = {}
        for key, value in mapping.items():
            values[key] = _check_type(key, value, known[key])
        if "host" not in values:
            raise MqttConfigError("mqtt: 'host' is required")
        return cls(**values)

    @classmethod
    def from_args(cls, args: argparse.Namespace,
                  table: Optional[Mapping[str, Any]] = None) -> Optional["MqttConfig"]:
        """Merge a TOML ``[mqtt]`` table with ``--mqtt-*`` flags (flags win).

        Returns ``None`` when MQTT is not asked for (no host in either place), so the
        daemon can write ``cfg = MqttConfig.from_args(args, toml.get("mqtt"))`` and add
        a sink only ``if cfg``.
        """
        if table is not None and not isinstance(table, Mapping):
            raise MqttConfigError(f"mqtt: expected a [mqtt] table, got {type(table).__name__}")
        merged: Dict[str, Any] = dict(table or {})
        for flag_dest, key in _FLAG_TO_KEY.items():
            value = getattr(args, flag_dest, None)
            if value is not None:
                merged[key] = value
        if getattr(args, "mqtt_no_discovery", False):
            merged["discovery"] = False
        if not merged.get("host"):
            if merged:
                given = sorted(k for k in merged if k != "host")
                if given:
                    raise MqttConfigError(f"mqtt: settings given ({', '.join(given)}) but no host (--mqtt-host)")
            return None
        return cls.from_mapping(merged)

    def with_overrides(self, **changes: Any) -> "MqttConfig":
        """A copy with some fields changed (re-validated)."""
        return replace(self, **changes)


def _read_password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MqttConfigError(f"mqtt: cannot read password_file {path!r}: {exc.strerror or exc}") from exc
    password = text.rstrip("\r\n")
    if not password:
        raise MqttConfigError(f"mqtt: password_file {path!r} is empty")
    return password


# key -> accepted Python type(s) after TOML parsing; ``float`` also accepts int.
_ALLOWED_KEYS: Dict[str, Any] = {
    f.name: f.type for f in fields(MqttConfig) if f.name != "password"
}
_TYPE_OF: Dict[str, type] = {
    "str": str, "int": int, "bool": bool, "float": float,
    "Optional[str]": str,
}


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    expected = _TYPE_OF[str(annotation)]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise MqttConfigError(f"mqtt: '{key}' must be an integer, got {value!r}")
    if not isinstance(value, expected):
        raise MqttConfigError(f"mqtt: '{key}' must be {_TYPE_NAMES[expected]}, got {value!r}")
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", float: "a number"}

# argparse dest -> MqttConfig field
_FLAG_TO_KEY = {
    "mqtt_host": "host",
    "mqtt_port": "port",
    "mqtt_client_id": "client_id",
    "mqtt_topic_prefix": "topic_prefix",
    "mqtt_device_name": "device_name",
    "mqtt_username": "username",
    "mqtt_password_file": "password_file",
    "mqtt_tls": "tls",
    "mqtt_ca_file": "ca_file",
    "mqtt_qos": "qos",
    "mqtt_discovery_prefix": "discovery_prefix",
    "mqtt_queue_size": "queue_size",
}


class _RefusePassword(argparse.Action):
    """Turns ``--mqtt-password`` into a usage error that does not echo the value."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        parser.error(f"--mqtt-password is not accepted (it would be visible in 'ps'); "
                     f"use --mqtt-password-file FILE or ${PASSWORD_ENV}")


def add_mqtt_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``--mqtt-*`` flags to ``parser`` (in their own help group).

    Every default is ``None`` so :meth:`MqttConfig.from_args` can tell "not given"
    from "given", and the TOML table fills what the flags leave out.
    There is deliberately no ``--mqtt-password``.
    """
    group = parser.add_argument_group(
        "MQTT / Home Assistant output",
        f"publish events to an MQTT broker; the password comes from --mqtt-password-file or ${PASSWORD_ENV}")
    group.add_argument("--mqtt-host", metavar="HOST", help="broker host; enables the MQTT output")
    group.add_argument("--mqtt-port", metavar="PORT", type=int, help="broker port (default 1883, 8883 with TLS)")
    group.add_argument("--mqtt-client-id", metavar="ID", help="MQTT client id (default edge-ser-<hostname>)")
    group.add_argument("--mqtt-topic-prefix", metavar="PREFIX",
                       help="topic prefix (default edge-ser/<hostname>)")
    group.add_argument("--mqtt-device-name", metavar="NAME",
                       help="device name shown in Home Assistant (e.g. 'Living room')")
    group.add_argument("--mqtt-username", metavar="USER", help="broker user name")
    group.add_argument("--mqtt-password-file", metavar="FILE", help="file holding the broker password")
    # Exact-match decoy: without it argparse would take "--mqtt-password SECRET" as an
    # abbreviation of --mqtt-password-file and later print SECRET in "cannot read file".
    group.add_argument("--mqtt-password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)
    group.add_argument("--mqtt-tls", action="store_const", const=True, default=None,
                       help="connect with TLS (implied by --mqtt-ca-file)")
    group.add_argument("--mqtt-ca-file", metavar="FILE", help="CA certificate(s) to verify the broker with")
    group.add_argument("--mqtt-qos", metavar="N", type=int, choices=(0, 1, 2),
                       help="QoS of event messages (default 1: acknowledged, nothing lost)")
    group.add_argument("--mqtt-no-discovery", action="store_true", default=False,
                       help="do not publish Home Assistant discovery config")
    group.add_argument("--mqtt-discovery-prefix", metavar="PREFIX",
                       help="Home Assistant discovery prefix (default homeassistant)")
    group.add_argument("--mqtt-queue-size", metavar="N", type=int,
                       help="events kept while the broker is away; the oldest are dropped beyond (default 1000)")
