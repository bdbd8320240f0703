"""What the MQTT output publishes, as plain dicts: state, discovery config, JSON encoding.

Pure functions, no network and no paho, so the payload format (a contract with Home
Assistant and with anyone's automations) is tested on its own and documented in one
place. See https://www.home-assistant.io/integrations/sensor.mqtt/ for the discovery
keys used here.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional, Sequence

from .mqtt_config import MqttConfig

__all__ = ["ONLINE", "OFFLINE", "state_payload", "discovery_payload", "to_json"]

ONLINE = "online"
OFFLINE = "offline"

#: Utterance fields copied into the retained state message (besides ``emotion``).
_STATE_FIELDS = ("confidence", "probabilities", "level_db", "seq", "duration")


def state_payload(event: Mapping[str, Any]) -> Dict[str, Any]:
    """The retained "latest emotion" message built from one utterance event.

    ``time`` is when the utterance ended (or started, when no end is given) so a
    dashboard can tell a fresh emotion from one heard an hour ago.
    """
    state: Dict[str, Any] = {"emotion": event.get("emotion")}
    for key in _STATE_FIELDS:
        if key in event:
            state[key] = event[key]
    state["time"] = event.get("end") or event.get("start")
    return state


def discovery_payload(config: MqttConfig, *, device_name: str, model_id: str,
                      sw_version: str, labels: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Home Assistant discovery config for the "Room emotion" sensor.

    The sensor's state is ``emotion`` from the state topic; every other key of that
    JSON (confidence, probabilities, time, ...) becomes an attribute. It is
    unavailable whenever the status topic says ``offline`` -- which the broker also
    publishes by itself (Last Will) when the device dies. With ``labels`` the sensor
    is an ``enum`` so HA's automation editor offers the emotions in a drop-down.
    """
    payload: Dict[str, Any] = {
        "name": "Room emotion",
        "unique_id": f"{config.node_id}_emotion",
        "state_topic": config.state_topic,
        "value_template": "{{ value_json.emotion }}",
        "json_attributes_topic": config.state_topic,
        "availability_topic": config.status_topic,
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "icon": "mdi:emoticon-outline",
        "qos": min(config.qos, 1),
        "device": {
            "identifiers": [config.node_id],
            "name": device_name,
            "model": model_id,
            "manufacturer": "edge-ser",
            "sw_version": sw_version,
        },
        "origin": {"name": "edge-ser", "sw_version": sw_version},
    }
    if labels:
        payload["device_class"] = "enum"
        payload["options"] = list(labels)
    return payload


def to_json(value: Any) -> bytes:
    """Strict JSON (UTF-8) of an event: NaN/inf become ``null``, NumPy scalars plain numbers.

    Events carry numbers such as ``level_db`` that are ``-inf`` for digital silence,
    and Python's ``json`` would write ``-Infinity``, which Home Assistant's and most
    other JSON parsers reject; one bad number must not make a whole event unreadable.
    """
    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    for converter in ("tolist", "item"):  # NumPy arrays and scalars, without importing NumPy
        method = getattr(value, converter, None)
        if callable(method):
            return _plain(method())
    return str(value)
