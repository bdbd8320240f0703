"""Where the daemon's events go besides stdout: optional network outputs ("sinks").

A sink has ``emit(event: dict) -> None`` (never blocks, never raises because of the
network) and ``close() -> None``. This package holds the ones that need optional
dependencies, imported only when used, so ``import edge_ser.outputs`` is free:

* :mod:`edge_ser.outputs.mqtt` -- MQTT with Home Assistant discovery (needs paho-mqtt 2.x).
"""

from .._lazy import lazy_getattr

_LAZY = {
    "MqttConfig": "edge_ser.outputs.mqtt_config",
    "MqttConfigError": "edge_ser.outputs.mqtt_config",
    "add_mqtt_arguments": "edge_ser.outputs.mqtt_config",
    "MqttSink": "edge_ser.outputs.mqtt",
    "create_mqtt_sink": "edge_ser.outputs.mqtt",
    "MissingDependencyError": "edge_ser.outputs.mqtt",
}

__all__ = list(_LAZY)


__getattr__ = lazy_getattr(__name__, _LAZY)
