"""Pipe JSON-lines events into MQTT: ``python -m edge_ser.outputs.mqtt_bridge --mqtt-host H``.

Reads one event (a JSON object) per line from standard input and hands it to an
:class:`~edge_ser.outputs.mqtt.MqttSink`, so anything that prints edge-ser events
(``edge-ser listen ... | python -m edge_ser.outputs.mqtt_bridge ...``, a log replay)
can feed Home Assistant. It is also how the tests run a sink in a process they can kill.

A malformed line is reported on stderr and skipped. At end of input the sink is
closed and its counters are printed to stderr as one JSON line. With ``--config``
the ``[mqtt]`` table of a TOML file is read first; flags override it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Dict, List, Optional, Sequence

from ..errors import EdgeSerError
from .mqtt_config import MqttConfig, add_mqtt_arguments


def _load_toml_table(path: str) -> Dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise EdgeSerError(f"{path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EdgeSerError(f"{path}: invalid TOML: {exc}") from exc
    table = document.get("mqtt", {})
    if not isinstance(table, dict):
        raise EdgeSerError(f"{path}: [mqtt] must be a table")
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_ser.outputs.mqtt_bridge",
        description="Publish JSON-lines edge-ser events from stdin to MQTT / Home Assistant.")
    parser.add_argument("--config", metavar="TOML", help="read the [mqtt] table of this file")
    parser.add_argument("--device-name", default=None, help="Home Assistant device name")
    parser.add_argument("--model-id", default="edge-ser", help="model shown in Home Assistant")
    parser.add_argument("--labels", default=None,
                        help="comma-separated emotions: makes the HA sensor an enum")
    parser.add_argument("-v", "--verbose", action="store_true", help="log connection details")
    add_mqtt_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        table = _load_toml_table(args.config) if args.config else None
        config = MqttConfig.from_args(args, table)
        if config is None:
            parser.error("no broker: give --mqtt-host or a [mqtt] table with host")
        from .mqtt import MqttSink

        labels: Optional[List[str]] = args.labels.split(",") if args.labels else None
        sink = MqttSink(config, device_name=args.device_name or f"edge-ser {config.node_id}",
                        model_id=args.model_id, labels=labels)
    except EdgeSerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bad = 0
    try:
        for number, line in enumerate(sys.stdin, 1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                bad += 1
                print(f"stdin line {number}: skipped, {exc}", file=sys.stderr)
                continue
            sink.emit(event)
    except KeyboardInterrupt:
        pass
    finally:
        sink.close()
        print(json.dumps({"mqtt": sink.counters(), "bad_lines": bad}), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
