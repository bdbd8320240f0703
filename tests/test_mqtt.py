"""MQTT output: config, payloads, outbox, and the sink against a real Mosquitto broker.

Broker tests start their own ``mosquitto`` on a free 127.0.0.1 port (see
tests/mosquitto.py) and skip when the binary or paho-mqtt is missing. Timeouts in
here are upper bounds against hangs, never speed requirements.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

from edge_ser.errors import EdgeSerError
from edge_ser.outputs.hass import discovery_payload, state_payload, to_json
from edge_ser.outputs.mqtt_config import (
    PASSWORD_ENV,
    MqttConfig,
    MqttConfigError,
    add_mqtt_arguments,
    default_hostname,
)
from edge_ser.outputs.outbox import OutMessage, Outbox, RetainedTopics

from mosquitto import (FlakyLink, Mosquitto, Subscriber, free_port, mosquitto_binary, self_signed_certificate,
                       wait_until)

ROOT = Path(__file__).resolve().parent.parent
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")


def utterance(seq: int, emotion: str = "angry", confidence: float = 0.71) -> Dict[str, Any]:
    """An event shaped like the daemon's utterance events."""
    probabilities = {label: round((1 - confidence) / 7, 4) for label in EMOTIONS}
    probabilities[emotion] = confidence
    return {
        "type": "utterance", "seq": seq,
        "start": f"2026-11-24T05:00:{seq % 60:02d}.120Z", "end": f"2026-11-24T05:00:{seq % 60:02d}.920Z",
        "stream_start": 12.3 + seq, "stream_end": 13.1 + seq, "duration": 0.8,
        "emotion": emotion, "confidence": confidence, "probabilities": probabilities,
        "level_db": -23.5, "device": "USB mic", "model": "edge-ser 1.0 ab12cd", "latency_ms": 40.1,
    }


# ---------------------------------------------------------------------------------------
# Configuration (no broker needed)
# ---------------------------------------------------------------------------------------

def test_config_defaults_follow_the_host_name():
    cfg = MqttConfig(host="broker.lan")
    host = default_hostname()
    assert (cfg.port, cfg.qos, cfg.keepalive, cfg.discovery) == (1883, 1, 60, True)
    assert cfg.client_id == f"edge-ser-{host}"
    assert cfg.topic_prefix == f"edge-ser/{host}"
    assert cfg.event_topic == f"edge-ser/{host}/event"
    assert cfg.status_topic == f"edge-ser/{host}/status"
    assert cfg.discovery_topic == f"homeassistant/sensor/edge-ser_{host}/emotion/config"


def test_tls_changes_default_port_and_ca_file_implies_tls(tmp_path):
    assert MqttConfig(host="b", tls=True).port == 8883
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked until connecting\n")
    cfg = MqttConfig(host="b", ca_file=str(ca))
    assert cfg.tls and cfg.port == 8883
    with pytest.raises(MqttConfigError, match="ca_file .* does not exist"):
        MqttConfig(host="b", ca_file=str(tmp_path / "missing.pem"))


def test_from_mapping_reads_a_toml_table():
    import tomllib

    table = tomllib.loads(textwrap.dedent("""
        [mqtt]
        host = "homeassistant.local"
        port = 1884
        topic_prefix = "home/kitchen/"
        discovery = false
        reconnect_max_delay = 10
        queue_size = 50
    """))["mqtt"]
    cfg = MqttConfig.from_mapping(table)
    assert (cfg.host, cfg.port, cfg.topic_prefix, cfg.discovery) == ("homeassistant.local", 1884, "home/kitchen", False)
    assert cfg.node_id == "home_kitchen" and cfg.queue_size == 50
    assert cfg.reconnect_max_delay == 10.0 and isinstance(cfg.reconnect_max_delay, float)


@pytest.mark.parametrize("table, message", [
    ({"host": "b", "prot": 1883}, r"unknown key\(s\) prot; allowed: .*port"),
    ({"host": "b", "port": "1883"}, r"'port' must be an integer"),
    ({"host": "b", "port": 70000}, r"'port' must be 1..65535"),
    ({"host": "b", "qos": 3}, r"'qos' must be 0, 1 or 2"),
    ({"host": "b", "tls": "yes"}, r"'tls' must be true or false"),
    ({"host": "b", "discovery": 1}, r"'discovery' must be true or false"),
    ({"host": "b", "queue_size": 0}, r"'queue_size' must be"),
    ({"host": "b", "reconnect_min_delay": 5, "reconnect_max_delay": 1}, r"reconnect_min_delay <= reconnect_max_delay"),
    ({"host": "b", "topic_prefix": "a/#"}, r"'topic_prefix' must be a plain topic"),
    ({"host": "b", "password": "hunter2"}, r"do not put 'password' in the config"),
    ({"port": 1883}, r"'host' is required"),
    ({"host": ""}, r"'host' must be a non-empty"),
    ({"host": "b", "password_file": "/nonexistent/pw"}, r"cannot read password_file '/nonexistent/pw'"),
    ({"host": "b", "username": 5}, r"'username' must be a string"),
])
def test_from_mapping_rejects_bad_tables_with_clear_errors(table, message):
    with pytest.raises(MqttConfigError, match=message) as caught:
        MqttConfig.from_mapping(table)
    assert isinstance(caught.value, EdgeSerError)  # the daemon reports it in one line
    assert "hunter2" not in str(caught.value)


def test_password_comes_from_file_or_environment_and_stays_out_of_repr(tmp_path, monkeypatch):
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert MqttConfig(host="b", username="u", password_file=str(secret)).password == "from-file"
    cfg = MqttConfig(host="b", username="u")
    assert cfg.password == "from-env"
    assert "from-env" not in repr(cfg)
    assert MqttConfig(host="b").password is None  # no user name: the env password is not used
    with pytest.raises(MqttConfigError, match="needs a 'username'"):
        MqttConfig(host="b", password_file=str(secret))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-ser listen")
    add_mqtt_arguments(parser)
    return parser


def test_flags_override_the_toml_table_and_no_host_means_no_mqtt():
    parser = _parser()
    assert MqttConfig.from_args(parser.parse_args([])) is None
    assert MqttConfig.from_args(parser.parse_args([]), {}) is None
    args = parser.parse_args(["--mqtt-host", "flag-host", "--mqtt-qos", "0", "--mqtt-no-discovery",
                              "--mqtt-topic-prefix", "house/hall", "--mqtt-device-name", "Hall"])
    cfg = MqttConfig.from_args(args, {"host": "toml-host", "port": 1999, "keepalive": 30})
    assert (cfg.host, cfg.port, cfg.keepalive, cfg.qos, cfg.discovery) == ("flag-host", 1999, 30, 0, False)
    assert cfg.topic_prefix == "house/hall" and cfg.device_name == "Hall"
    with pytest.raises(MqttConfigError, match="no host"):
        MqttConfig.from_args(parser.parse_args(["--mqtt-port", "1884"]))
    with pytest.raises(MqttConfigError, match="expected a \\[mqtt\\] table"):
        MqttConfig.from_args(parser.parse_args([]), "broker.lan")  # mqtt = "broker.lan" in TOML


def test_there_is_no_password_flag_and_it_does_not_echo_the_secret(capsys):
    with pytest.raises(SystemExit) as caught:
        _parser().parse_args(["--mqtt-host", "b", "--mqtt-password", "hunter2"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--mqtt-password-file" in err and PASSWORD_ENV in err
    assert "hunter2" not in err


# ---------------------------------------------------------------------------------------
# Payloads and the outbox (no broker needed)
# ---------------------------------------------------------------------------------------

def test_json_is_strict_and_accepts_numpy_numbers():
    np = pytest.importorskip("numpy")
    event = {"level_db": float("-inf"), "x": float("nan"), "c": np.float32(0.5), "n": np.int64(3),
             "p": np.array([0.25, 0.75], dtype=np.float32)}
    assert json.loads(to_json(event)) == {"level_db": None, "x": None, "c": 0.5, "n": 3, "p": [0.25, 0.75]}


def test_state_and_discovery_payloads():
    cfg = MqttConfig(host="b", topic_prefix="house/kitchen")
    state = state_payload(utterance(4, "happy", 0.6))
    assert state["emotion"] == "happy" and state["confidence"] == 0.6 and state["seq"] == 4
    assert state["time"] == "2026-11-24T05:00:04.920Z" and set(state["probabilities"]) == set(EMOTIONS)
    config = discovery_payload(cfg, device_name="Kitchen Pi", model_id="edge-ser 1.0 ab12cd",
                               sw_version="0.1.0", labels=EMOTIONS)
    assert config["name"] == "Room emotion"
    assert config["state_topic"] == config["json_attributes_topic"] == "house/kitchen/state"
    assert config["availability_topic"] == "house/kitchen/status"
    assert config["value_template"] == "{{ value_json.emotion }}"
    assert config["unique_id"] == "house_kitchen_emotion"
    assert config["device"] == {"identifiers": ["house_kitchen"], "name": "Kitchen Pi",
                                "model": "edge-ser 1.0 ab12cd", "manufacturer": "edge-ser", "sw_version": "0.1.0"}
    assert config["device_class"] == "enum" and config["options"] == list(EMOTIONS)
    assert "device_class" not in discovery_payload(cfg, device_name="x", model_id="y", sw_version="0")


def test_outbox_keeps_order_across_rewind_and_drops_oldest_unsent():
    box = Outbox(capacity=4)
    messages = [OutMessage("t", str(i).encode()) for i in range(4)]
    for message in messages:
        box.put(message)
    first, second = box.take_next(), box.take_next()
    assert (first, second) == (messages[0], messages[1]) and box.in_flight == 2
    box.acknowledge(first)
    assert len(box) == 3 and box.in_flight == 1
    box.rewind()  # link lost before message 1 was acknowledged: it is due again, first
    assert box.take_next() is messages[1]
    # full: the oldest *unsent* message (2) goes, not the one in flight (1)
    assert box.put(OutMessage("t", b"4")) == 0 and box.put(OutMessage("t", b"5")) == 1
    assert box.dropped == 1
    box.rewind()
    assert [box.take_next().payload for _ in range(len(box))] == [b"1", b"3", b"4", b"5"]


def test_retained_topics_keep_only_the_latest_value_and_republish_after_rewind():
    retained = RetainedTopics()
    retained.set("s", b"old")
    retained.set("s", b"new")
    due = retained.take_due()
    assert [(topic, payload) for topic, payload, _ in due] == [("s", b"new")]
    assert retained.take_due() == [] and not retained.all_acknowledged()
    retained.acknowledge("s", due[0][2])
    assert retained.all_acknowledged()
    retained.rewind()
    assert [payload for _, payload, _ in retained.take_due()] == [b"new"]


def test_device_path_imports_without_paho_and_sink_explains_how_to_install():
    code = textwrap.dedent("""
        import sys
        class BlockPaho:
            def find_spec(self, name, path=None, target=None):
                if name == "paho" or name.startswith("paho."):
                    raise ImportError("blocked for this test")
        sys.meta_path.insert(0, BlockPaho())
        import edge_ser.outputs
        from edge_ser.outputs.mqtt import MqttSink, MqttConfig, MissingDependencyError
        assert "paho" not in sys.modules
        try:
            MqttSink(MqttConfig(host="127.0.0.1"), device_name="d", model_id="m")
        except MissingDependencyError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'edge-ser[mqtt]'" in result.stdout and "paho-mqtt" in result.stdout


# ---------------------------------------------------------------------------------------
# Against a real broker
# ---------------------------------------------------------------------------------------

needs_broker = pytest.mark.skipif(mosquitto_binary() is None,
                                  reason="mosquitto not installed (apt-get install mosquitto)")


@pytest.fixture
def paho():
    return pytest.importorskip("paho.mqtt.client", reason="paho-mqtt is not installed; make test installs it")


@pytest.fixture
def broker(tmp_path, paho):
    if mosquitto_binary() is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    server = Mosquitto(tmp_path / "broker").start()
    yield server
    server.stop()


@pytest.fixture
def sinks():
    """Sinks made by a test, closed even when it fails."""
    made: List[Any] = []
    yield made
    close_sinks(made)


def close_sinks(sinks: List[Any]) -> None:
    """Close a test's sinks now: a test that starts its own broker or link closes its sinks before
    it stops them, where the fixture would close them only after the test."""
    for sink in sinks:
        sink.close()
    sinks.clear()


def make_config(broker: Mosquitto, **overrides: Any) -> MqttConfig:
    values = dict(host=broker.host, port=broker.port, client_id=f"sink-{uuid.uuid4().hex[:8]}",
                  topic_prefix=f"test/{uuid.uuid4().hex[:8]}", reconnect_min_delay=0.05,
                  reconnect_max_delay=0.3)
    values.update(overrides)
    return MqttConfig(**values)


def make_sink(sinks: List[Any], config: MqttConfig, **kwargs: Any):
    from edge_ser.outputs.mqtt import MqttSink

    sink = MqttSink(config, device_name=kwargs.pop("device_name", "Test Pi"),
                    model_id=kwargs.pop("model_id", "edge-ser 1.0 ab12cd"), **kwargs)
    sinks.append(sink)
    return sink


def seqs(subscriber: Subscriber, topic: str) -> List[int]:
    return [json.loads(payload)["seq"] for payload in subscriber.payloads(topic)]


def first_occurrences(values: List[int]) -> List[int]:
    """QoS 1 is at-least-once: a resend after a lost PUBACK may duplicate, never reorder."""
    seen, ordered = set(), []
    for value in values:
        if value not in seen:
            seen.add(value)
            ordered.append(value)
    return ordered


@needs_broker
def test_events_state_status_and_daemon_topics(broker, sinks):
    cfg = make_config(broker)
    watcher = Subscriber(broker, [f"{cfg.topic_prefix}/#"])
    sink = make_sink(sinks, cfg)
    started = {"type": "status", "seq": 0, "event": "start", "counters": {"utterances": 0}}
    events = [utterance(0, "calm", 0.5), utterance(1, "happy", 0.6), utterance(2, "angry", 0.9)]
    sink.emit(started)
    for event in events:
        sink.emit(event)
    assert sink.dropped == 0
    watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) >= 3, what="3 events")
    assert [json.loads(p) for p in watcher.payloads(cfg.event_topic)] == events
    assert [json.loads(p) for p in watcher.payloads(cfg.daemon_topic)] == [started]
    watcher.wait_for(lambda _: any(json.loads(p)["seq"] == 2 for p in watcher.payloads(cfg.state_topic)),
                     what="latest state")
    state = json.loads(watcher.payloads(cfg.state_topic)[-1])
    assert state == state_payload(events[-1])
    assert watcher.payloads(cfg.status_topic)[0] == b"online"
    wait_until(lambda: sink.counters()["published"] == 4, what="4 acknowledged events")
    counters = sink.counters()
    assert counters["connected"] and counters["queued"] == 0 and counters["dropped"] == 0
    assert counters["last_error"] is None
    sink.close()
    watcher.wait_for(lambda _: watcher.payloads(cfg.status_topic)[-1:] == [b"offline"], what="offline on close")
    with pytest.raises(RuntimeError, match="after close"):
        sink.emit(utterance(3))
    watcher.close()


@needs_broker
def test_late_subscriber_sees_retained_state_status_and_discovery(broker, sinks):
    cfg = make_config(broker, device_name="Kitchen Pi")
    sink = make_sink(sinks, cfg, device_name="USB mic", labels=EMOTIONS)  # the config's name wins
    for seq in range(3):
        sink.emit(utterance(seq, ("sad", "happy", "fearful")[seq]))
    sink.emit({"type": "status", "seq": 3, "event": "device_lost", "counters": {}})
    sink.emit({**utterance(4, "disgust"), "type": "window"})  # continuous mode's result events
    wait_until(lambda: sink.counters()["published"] == 5, what="events acknowledged")

    late = Subscriber(broker, [f"{cfg.topic_prefix}/#", f"{cfg.discovery_prefix}/sensor/{cfg.node_id}/#"])
    assert all(m.retain for m in late.messages if not m.topic.startswith("test-barrier"))
    assert json.loads(late.payloads(cfg.state_topic)[-1])["emotion"] == "disgust"
    assert late.payloads(cfg.status_topic) == [b"online"]
    assert json.loads(late.payloads(cfg.daemon_topic)[-1])["event"] == "device_lost"
    assert late.payloads(cfg.event_topic) == []  # events are a stream, not retained
    config = json.loads(late.payloads(cfg.discovery_topic)[-1])
    assert config["state_topic"] == cfg.state_topic and config["availability_topic"] == cfg.status_topic
    assert config["json_attributes_topic"] == cfg.state_topic
    assert config["unique_id"] == f"{cfg.node_id}_emotion" and config["device"]["name"] == "Kitchen Pi"
    assert config["device"]["model"] == "edge-ser 1.0 ab12cd" and config["options"] == list(EMOTIONS)

    # Home Assistant restarted and lost its config: its birth message brings the config back.
    late.client.publish(cfg.discovery_topic, b"", qos=1, retain=True).wait_for_publish(5)
    late.client.publish(f"{cfg.discovery_prefix}/status", b"online", qos=1).wait_for_publish(5)
    late.wait_for(lambda _: late.payloads(cfg.discovery_topic)[-1:] not in ([], [b""]),
                  what="discovery config republished after HA birth")
    late.close()


@needs_broker
def test_discovery_can_be_switched_off(broker, sinks):
    cfg = make_config(broker, discovery=False)
    sink = make_sink(sinks, cfg)
    sink.emit(utterance(0))
    wait_until(lambda: sink.counters()["published"] == 1, what="event acknowledged")
    late = Subscriber(broker, [f"{cfg.discovery_prefix}/#", f"{cfg.topic_prefix}/status"])
    assert late.payloads(cfg.status_topic) == [b"online"]
    assert not [m for m in late.messages if m.topic.startswith(cfg.discovery_prefix)]
    late.close()


@needs_broker
def test_last_will_says_offline_when_the_process_is_killed(broker, tmp_path):
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    watcher = Subscriber(broker, [f"{prefix}/#"])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-m", "edge_ser.outputs.mqtt_bridge", "--mqtt-host", broker.host,
         "--mqtt-port", str(broker.port), "--mqtt-topic-prefix", prefix,
         "--mqtt-client-id", f"bridge-{uuid.uuid4().hex[:8]}"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    try:
        child.stdin.write((json.dumps(utterance(7)) + "\n").encode())
        child.stdin.flush()
        watcher.wait_for(lambda _: len(watcher.on(f"{prefix}/event")) == 1, what="the child's event")
        assert watcher.payloads(f"{prefix}/status") == [b"online"]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    watcher.wait_for(lambda _: watcher.payloads(f"{prefix}/status") == [b"online", b"offline"],
                     what="Last Will 'offline'")
    watcher.close()
    late = Subscriber(broker, [f"{prefix}/status"])
    assert late.payloads(f"{prefix}/status") == [b"offline"]  # the will is retained
    late.close()


def run_bridge(args: List[str], stdin: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "edge_ser.outputs.mqtt_bridge", *args], input=stdin,
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)


@needs_broker
def test_bridge_reads_the_toml_table_and_skips_bad_lines(broker, tmp_path):
    prefix = f"test/{uuid.uuid4().hex[:8]}"
    config = tmp_path / "edge-ser.toml"
    config.write_text(f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\ntopic_prefix = "{prefix}"\n'
                      f'client_id = "bridge-{uuid.uuid4().hex[:6]}"\n')
    watcher = Subscriber(broker, [f"{prefix}/event"])
    lines = [json.dumps(utterance(1)), "{not json", json.dumps(utterance(2))]
    result = run_bridge(["--config", str(config)], "\n".join(lines) + "\n")
    assert result.returncode == 1  # one bad line
    assert "stdin line 2: skipped" in result.stderr
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["bad_lines"] == 1 and summary["mqtt"]["published"] == 2 and summary["mqtt"]["queued"] == 0
    watcher.wait_for(lambda _: len(watcher.on(f"{prefix}/event")) == 2, what="the bridged events")
    assert seqs(watcher, f"{prefix}/event") == [1, 2]
    watcher.close()

    config.write_text('[mqtt]\nhost = "127.0.0.1"\nprot = 1883\n')
    result = run_bridge(["--config", str(config)])
    assert result.returncode == 2 and "unknown key(s) prot" in result.stderr
    assert "Traceback" not in result.stderr


@needs_broker
def test_broker_restart_loses_no_event_and_keeps_order(tmp_path, paho, sinks):
    # A persistent broker keeps the *subscriber's* session over the restart; the sink's
    # own outbox is what keeps the events emitted while the broker is down.
    server = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        cfg = make_config(server)
        watcher = Subscriber(server, [cfg.event_topic], client_id=f"watch-{uuid.uuid4().hex[:6]}", persistent=True)
        sink = make_sink(sinks, cfg)
        for seq in range(5):
            sink.emit(utterance(seq))
        watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) >= 5, what="events before the outage")

        server.stop()
        wait_until(lambda: not sink.counters()["connected"], what="the sink to notice the outage")
        for seq in range(5, 25):
            sink.emit(utterance(seq))  # returns at once: the broker is away
        counters = sink.counters()
        assert counters["queued"] == 20 and counters["dropped"] == 0
        assert "unreachable" in (sink.last_error or "") or "lost" in (sink.last_error or "")

        server.start()
        wait_until(lambda: sink.counters()["queued"] == 0, timeout=20, what="the outbox to drain")
        watcher.wait_for(lambda _: set(seqs(watcher, cfg.event_topic)) >= set(range(25)),
                         what="all 25 events")
        assert first_occurrences(seqs(watcher, cfg.event_topic)) == list(range(25))
        counters = sink.counters()
        assert counters["reconnects"] >= 1 and counters["dropped"] == 0 and counters["connected"]
        assert counters["last_error"] is None
        watcher.close()
    finally:
        close_sinks(sinks)
        server.stop()


@needs_broker
def test_network_drop_with_events_in_flight_resends_them_in_order(broker, sinks):
    # Events written to the socket but never acknowledged must be sent again: an event
    # leaves the sink's queue on PUBACK, not when paho has written it.
    link = FlakyLink(broker.port)
    try:
        cfg = make_config(broker, port=link.port)
        watcher = Subscriber(broker, [cfg.event_topic])  # direct to the broker, never cut
        sink = make_sink(sinks, cfg)
        for seq in range(5):
            sink.emit(utterance(seq))
        watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) >= 5, what="events before the drop")
        wait_until(lambda: sink.counters()["published"] == 5, what="their acknowledgements")

        link.hold()
        for seq in range(5, 15):
            sink.emit(utterance(seq))
        smallest = min(len(to_json(utterance(seq))) for seq in range(5, 15))
        wait_until(lambda: link.swallowed_bytes >= 10 * smallest, what="10 events lost in the network")
        assert sink.counters()["queued"] == 10  # written, but not acknowledged: still kept
        link.cut()
        wait_until(lambda: not sink.counters()["connected"], what="the sink to notice the drop")
        link.release()

        wait_until(lambda: sink.counters()["queued"] == 0, timeout=20, what="the resend")
        watcher.wait_for(lambda _: set(seqs(watcher, cfg.event_topic)) >= set(range(15)), what="all 15 events")
        assert first_occurrences(seqs(watcher, cfg.event_topic)) == list(range(15))
        counters = sink.counters()
        assert counters["published"] == 15 and counters["reconnects"] >= 1 and counters["dropped"] == 0
        watcher.close()
    finally:
        close_sinks(sinks)
        link.close()


@needs_broker
def test_steady_stream_through_two_broker_restarts_arrives_complete_and_in_order(tmp_path, paho, sinks):
    import time

    server = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        cfg = make_config(server)
        watcher = Subscriber(server, [cfg.event_topic], client_id=f"watch-{uuid.uuid4().hex[:6]}", persistent=True)
        sink = make_sink(sinks, cfg)
        outages = {60: server.stop, 100: server.start, 140: server.stop, 180: server.start}
        for seq in range(240):  # like a daemon: events keep coming whatever the broker does
            outages.get(seq, lambda: None)()
            sink.emit(utterance(seq))
            time.sleep(0.003)  # pacing only, so some events are in flight when the broker goes
        wait_until(lambda: sink.counters()["queued"] == 0, timeout=30, what="the outbox to drain")
        watcher.wait_for(lambda _: set(seqs(watcher, cfg.event_topic)) >= set(range(240)), timeout=30,
                         what="all 240 events")
        assert first_occurrences(seqs(watcher, cfg.event_topic)) == list(range(240))
        counters = sink.counters()
        assert counters["reconnects"] >= 2 and counters["dropped"] == 0
        watcher.close()
    finally:
        close_sinks(sinks)
        server.stop()


@needs_broker
def test_full_queue_drops_the_oldest_and_counts_them(tmp_path, paho, sinks):
    server = Mosquitto(tmp_path / "broker", persistence=True).start()
    try:
        cfg = make_config(server, queue_size=5)
        watcher = Subscriber(server, [cfg.event_topic], client_id=f"watch-{uuid.uuid4().hex[:6]}", persistent=True)
        server.stop()  # the watcher's session survives on disk
        sink = make_sink(sinks, cfg)
        for seq in range(12):
            sink.emit(utterance(seq))
        counters = sink.counters()
        assert (counters["queued"], counters["dropped"], counters["connected"]) == (5, 7, False)
        server.start()
        wait_until(lambda: sink.counters()["published"] == 5, timeout=20, what="the 5 kept events")
        watcher.wait_for(lambda _: watcher.connected.is_set(), what="watcher reconnect")
        watcher.barrier()
        assert seqs(watcher, cfg.event_topic) == [7, 8, 9, 10, 11]
        assert sink.counters()["dropped"] == 7
        watcher.close()
    finally:
        close_sinks(sinks)
        server.stop()


@needs_broker
def test_bad_password_is_reported_once_and_emit_keeps_working(tmp_path, paho, sinks, caplog):
    server = Mosquitto(tmp_path / "broker", users={"edge": "right-pass", "watch": "watch-pass"}).start()
    try:
        wrong, right = tmp_path / "wrong", tmp_path / "right"
        wrong.write_text("wrong-pass\n")
        right.write_text("right-pass\n")
        caplog.set_level(logging.INFO, logger="edge_ser.outputs.mqtt")
        cfg = make_config(server, username="edge", password_file=str(wrong))
        sink = make_sink(sinks, cfg)
        wait_until(lambda: sink.counters()["connect_failures"] >= 3, what="several refused attempts")
        for seq in range(50):
            sink.emit(utterance(seq))  # never blocks, never raises
        counters = sink.counters()
        assert counters["queued"] == 50 and not counters["connected"] and counters["published"] == 0
        error = counters["last_error"]
        assert "refused the connection" in error and "password" in error and "edge" in error
        refusals = [r for r in caplog.records if "refused the connection" in r.getMessage()]
        assert len(refusals) == 1 and refusals[0].levelno == logging.ERROR
        assert "wrong-pass" not in caplog.text
        sink.close()

        watcher = Subscriber(server, [f"{cfg.topic_prefix}/event"], username="watch", password="watch-pass")
        good = make_sink(sinks, cfg.with_overrides(password=None, password_file=str(right)))
        good.emit(utterance(1))
        watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) == 1, what="event with the right password")
        assert good.counters()["last_error"] is None
        watcher.close()
    finally:
        close_sinks(sinks)
        server.stop()


@needs_broker
def test_tls_with_a_ca_file_and_a_clear_error_for_an_untrusted_broker(tmp_path, paho, sinks):
    try:
        cert, key = self_signed_certificate(tmp_path / "pki")
        other_ca, _ = self_signed_certificate(tmp_path / "other")
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a test certificate: {exc}")
    server = Mosquitto(tmp_path / "broker", tls_cert=(cert, key)).start()
    try:
        cfg = make_config(server, ca_file=str(cert))
        assert cfg.tls
        watcher = Subscriber(server, [f"{cfg.topic_prefix}/#"], ca_file=str(cert))
        sink = make_sink(sinks, cfg)
        sink.emit(utterance(0, "surprised"))
        watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) == 1, what="event over TLS")
        assert json.loads(watcher.payloads(cfg.event_topic)[0]) == utterance(0, "surprised")
        for seq in range(1, 60):  # many acknowledgements per TLS record: none may stall
            sink.emit(utterance(seq))
        wait_until(lambda: sink.counters()["published"] == 60, what="their acknowledgements")
        watcher.wait_for(lambda _: len(watcher.on(cfg.event_topic)) == 60, what="60 events over TLS")
        assert seqs(watcher, cfg.event_topic) == list(range(60))
        assert sink.counters()["last_error"] is None
        watcher.close()

        untrusting = make_sink(sinks, make_config(server, ca_file=str(other_ca)))
        untrusting.emit(utterance(2))
        wait_until(lambda: untrusting.counters()["connect_failures"] >= 1, what="a TLS failure")
        assert "certificate verify failed" in untrusting.last_error
        assert untrusting.counters()["queued"] == 1
    finally:
        close_sinks(sinks)
        server.stop()


@needs_broker
def test_close_is_bounded_when_the_broker_is_gone(tmp_path, paho, sinks):

    cfg = MqttConfig(host="127.0.0.1", port=free_port(), client_id="nobody", topic_prefix="test/nobody",
                     reconnect_min_delay=0.05, reconnect_max_delay=0.2, close_timeout=0.5)
    sink = make_sink(sinks, cfg)
    for seq in range(10):
        sink.emit(utterance(seq))
    wait_until(lambda: sink.counters()["connect_failures"] >= 1, what="a failed attempt")
    assert "unreachable" in sink.last_error
    sink.close()
    assert not sink._thread.is_alive()
    assert sink.counters()["queued"] == 10  # reported, not silently discarded
