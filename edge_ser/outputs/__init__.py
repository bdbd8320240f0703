"""Where the daemon's events go besides stdout: optional network outputs ("sinks").

A sink has ``emit(event: dict) -> None`` (never blocks, never raises because of the
network) and ``close() -> None``. This package holds the ones that need optional
dependencies, imported only when used, so ``import edge_ser.outputs`` is free:

* :mod:`edge_ser.outputs.mqtt` -- MQTT with Home Assistant discovery (needs paho-mqtt 2.x).
"""

from typing import Any

_LAZY = {
    "MqttConfig": "edge_ser.outputs.mqtt_config",
    "MqttConfigError": "edge_ser.outputs.mqtt_config",
    "add_mqtt_arguments": "edge_ser.outputs.mqtt_config",
    "MqttSink": "edge_ser.outputs.mqtt",
    "create_mqtt_sink": "edge_ser.outputs.mqtt",
    "MissingDependencyError": "edge_ser.outputs.mqtt",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'edge_ser.outputs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
