"""``edge-ser listen`` and ``edge-ser devices``.

:func:`add_subcommands` is called by :mod:`edge_ser.cli` (and by
``python -m edge_ser.daemon``). Each parser's ``func`` takes the parsed arguments and
returns the exit code: 0 after a clean stop (signal, end of file, ``--max-seconds``),
1 when the source failed for good (e.g. unreadable file), 2 for bad configuration or
a model that cannot be loaded. ``devices``: 0 with at least one input device listed,
1 when PortAudio sees no input device ("no input devices found" on stderr, nothing on
stdout, with or without ``--json``), 2 when PortAudio cannot be used at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, Dict, List, Optional, TextIO, Tuple

from ..errors import EdgeSerError
from .config import OPTION_BY_NAME, ConfigError, Settings, load_file, resolve

log = logging.getLogger("edge_ser.daemon")

# flag, option name, argparse keyword arguments (defaults are always None: "not given")
_FLAGS: Tuple[Tuple[str, str, Dict[str, Any]], ...] = (
    ("--device", "source.device", dict(metavar="INDEX|NAME", help="input device index or name substring")),
    ("--rate", "source.rate", dict(type=int, metavar="HZ", help="capture rate to try first (default: the model's)")),
    ("--channels", "source.channels", dict(type=int, metavar="N", help="channels to capture (default 1)")),
    ("--channel", "source.channel", dict(type=int, metavar="I", help="channel to keep; -1 = average (default)")),
    ("--file", "source.file", dict(metavar="WAV", help="read a WAV file instead of a microphone")),
    ("--realtime", "source.realtime", dict(action="store_const", const=True,
                                           help="with --file: real-time pace instead of as fast as possible")),
    ("--stdin", "source.stdin", dict(action="store_const", const=True,
                                     help="read raw s16le PCM from stdin (e.g. from arecord -t raw)")),
    ("--stdin-rate", "source.stdin_rate", dict(type=int, metavar="HZ", help="sample rate of stdin PCM (16000)")),
    ("--stdin-channels", "source.stdin_channels", dict(type=int, metavar="N", help="channels of stdin PCM (1)")),
    ("--chunk-ms", "source.chunk_ms", dict(type=int, metavar="MS", help="audio per read (50)")),
    ("--queue-seconds", "source.queue_seconds", dict(type=float, metavar="S",
                                                      help="capture queue size; oldest audio dropped beyond (5)")),
    ("--stall-seconds", "source.stall_seconds", dict(type=float, metavar="S",
                                                      help="no audio this long = device lost (2)")),
    ("--retry-max-seconds", "source.retry_max_seconds", dict(type=float, metavar="S",
                                                              help="longest wait between reopen attempts (30)")),
    ("--model", "model.path", dict(metavar="PATH", help="model file (default: the shipped model)")),
    ("--backend", "model.backend", dict(metavar="NAME", help="interpreter backend")),
    ("--threads", "model.threads", dict(type=int, metavar="N", help="interpreter threads")),
    ("--vad", "vad.engine", dict(choices=("energy", "webrtc"), help="VAD engine (energy)")),
    ("--vad-threshold-db", "vad.threshold_db", dict(type=float, metavar="DB",
                                                     help="speech = this far above the noise floor (10)")),
    ("--vad-min-level-db", "vad.min_level_db", dict(type=float, metavar="DBFS",
                                                     help="never speech below this level (-55)")),
    ("--vad-hangover-ms", "vad.hangover_ms", dict(type=int, metavar="MS", help="speech hangover (200)")),
    ("--vad-onset-ms", "vad.onset_ms", dict(type=int, metavar="MS", help="speech needed to start (60)")),
    ("--pre-roll-ms", "segmenter.pre_roll_ms", dict(type=int, metavar="MS", help="audio kept before speech (300)")),
    ("--end-silence-ms", "segmenter.end_silence_ms", dict(type=int, metavar="MS",
                                                           help="silence that ends an utterance (600)")),
    ("--min-utterance-ms", "segmenter.min_utterance_ms", dict(type=int, metavar="MS",
                                                               help="shorter speech is ignored (400)")),
    ("--max-utterance-seconds", "segmenter.max_utterance_seconds", dict(type=float, metavar="S",
                                                                         help="longer speech is split (10)")),
    ("--smoothing", "segmenter.smoothing", dict(type=float, metavar="W",
                                                 help="EMA weight of past results, 0 = off (default)")),
    ("--continuous", "continuous.enabled", dict(action="store_const", const=True,
                                                help="classify a sliding window every hop instead of utterances")),
    ("--window-seconds", "continuous.window_seconds", dict(type=float, metavar="S", help="continuous window (3)")),
    ("--hop-seconds", "continuous.hop_seconds", dict(type=float, metavar="S", help="continuous hop (1)")),
    ("--events", "output.events", dict(metavar="FILE", help="also append events (JSON lines) to FILE")),
    ("--no-stdout", "output.stdout", dict(action="store_const", const=False, help="do not print events on stdout")),
    ("--fsync", "output.fsync", dict(action="store_const", const=True, help="fsync the events file per event")),
    ("--save-utterances", "output.save_utterances", dict(metavar="DIR",
                                                          help="save each utterance as WAV in DIR (else no audio "
                                                               "is ever written)")),
    ("--status-interval", "output.status_interval_seconds", dict(type=float, metavar="S",
                                                                  help="periodic status events (0 = off)")),
    ("--quiet", "output.quiet", dict(action="store_const", const=True, help="no log messages on stderr")),
    ("--max-seconds", "service.max_seconds", dict(type=float, metavar="S",
                                                   help="stop after S seconds of stream time")),
)


def _dest(name: str) -> str:
    return "opt_" + name.replace(".", "__")


def add_subcommands(subparsers: Any) -> None:
    """Register ``listen`` and ``devices`` on an argparse subparsers object."""
    listen = subparsers.add_parser(
        "listen", help="classify speech from a microphone, a WAV file or stdin, continuously",
        description="Detect utterances in live audio and print one JSON event per utterance. "
                    "Flags override the --config file; see device/edge-ser.toml for every option.")
    listen.add_argument("--config", metavar="FILE", help="TOML config file (flags win over it)")
    for flag, name, kwargs in _FLAGS:
        listen.add_argument(flag, dest=_dest(name), default=None, **kwargs)
    try:
        from ..outputs.mqtt_config import add_mqtt_arguments

        add_mqtt_arguments(listen)
    except ImportError:  # the optional outputs package is not installed
        pass
    try:
        from ..outputs.http_config import add_http_arguments

        add_http_arguments(listen)
    except ImportError:
        pass
    listen.set_defaults(func=run_listen)

    devices = subparsers.add_parser("devices", help="list audio input devices (for --device)")
    devices.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    devices.set_defaults(func=run_devices)


def _flag_values(args: argparse.Namespace) -> Dict[str, Any]:
    values = {}
    for _, name, _ in _FLAGS:
        value = getattr(args, _dest(name), None)
        if value is not None:
            option = OPTION_BY_NAME[name]
            if option.int_or_str and isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            values[name] = value
    return values


def private_stderr() -> TextIO:
    """A text stream on a copy of fd 2, for the daemon's own messages.

    The capture thread points fd 2 at /dev/null while PortAudio (re)opens a device, to
    hide ALSA's chatter (see :mod:`edge_ser.daemon.sources`); a log line written by
    another thread meanwhile would vanish with it if the log wrote to fd 2 itself.
    Falls back to ``sys.stderr`` when that is not fd 2 (e.g. replaced by a test harness).
    """
    try:
        if sys.stderr.fileno() == 2:
            return os.fdopen(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding or "utf-8",
                             errors="backslashreplace")
    except (AttributeError, OSError, ValueError):
        pass
    return sys.stderr


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(private_stderr())
    handler.setFormatter(logging.Formatter("edge-ser listen: %(levelname)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.ERROR if quiet else logging.INFO)
    log.propagate = False


def _make_source(settings: Settings, model_rate: int) -> Any:
    from .sources import MicrophoneSource, StdinSource, WavFileSource

    src = settings["source"]
    if src["file"]:
        return WavFileSource(src["file"], src["realtime"], src["channel"], src["chunk_ms"])
    if src["stdin"]:
        return StdinSource(src["stdin_rate"], src["stdin_channels"], src["channel"], src["chunk_ms"])
    return MicrophoneSource(src["device"], src["rate"] or model_rate, src["channels"], src["channel"],
                            src["chunk_ms"], src["stall_seconds"])


def _make_sinks(settings: Settings, mqtt_config: Any, classifier: Any, device: str) -> Any:
    from .sinks import FanOut, FileSink, QueuedSink, StreamSink

    out = settings["output"]
    sinks: List[Any] = []
    if out["stdout"]:
        sinks.append(QueuedSink(StreamSink(sys.stdout), out["sink_queue"], "stdout"))
    if out["events"]:
        try:
            file_sink = FileSink(out["events"], out["fsync"])
        except OSError as exc:
            raise ConfigError(f"output.events: cannot open {out['events']!r} ({exc.strerror or exc})") from None
        sinks.append(QueuedSink(file_sink, out["sink_queue"], "events-file"))
    if mqtt_config is not None:
        from ..outputs.mqtt import create_mqtt_sink

        sinks.append(create_mqtt_sink(mqtt_config, device_name=device, model_id=str(classifier.model_id),
                                      labels=list(classifier.labels)))
    return FanOut(sinks)


def _mqtt_config(args: argparse.Namespace) -> Any:
    """The [mqtt] table and --mqtt-* flags, checked by the outputs package (None when unused)."""
    table = None
    if args.config:
        table = _raw_table(args.config, "mqtt")
    if not any(k.startswith("mqtt_") and v not in (None, False) for k, v in vars(args).items()) and table is None:
        return None
    from ..outputs.mqtt_config import MqttConfig

    return MqttConfig.from_args(args, table)


def _http_config(args: argparse.Namespace) -> Any:
    """The [http] table and --http* flags, checked by the outputs package (None when unused)."""
    try:
        from ..outputs.http_config import HttpConfig
    except ImportError:
        return None
    table = _raw_table(args.config, "http") if args.config else None
    return HttpConfig.from_args(args, table)


def _raw_table(path: str, section: str) -> Optional[Dict[str, Any]]:
    from .config import _toml_module

    toml = _toml_module()
    with open(path, "rb") as f:
        return toml.load(f).get(section)


def run_listen(args: argparse.Namespace) -> int:
    """Entry point of ``edge-ser listen``."""
    try:
        settings = resolve(args.config, _flag_values(args))
        mqtt_config = _mqtt_config(args)
        http_config = _http_config(args)
    except EdgeSerError as exc:
        print(f"edge-ser listen: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings["output"]["quiet"])

    stop_requests: List[str] = []
    listener_box: List[Any] = []

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        stop_requests.append(name)
        if listener_box:
            listener_box[0].request_stop(name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _listen(settings, mqtt_config, http_config, stop_requests, listener_box)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _listen(settings: Settings, mqtt_config: Any, http_config: Any, stop_requests: List[str],
            listener_box: List[Any]) -> int:
    from ..classify import Classifier
    from .notify import Notifier
    from .service import Listener
    from .vad import VadError

    model = settings["model"]
    try:
        classifier = Classifier(model["path"] or None, backend=model["backend"] or None,
                                num_threads=model["threads"] or None)
    except EdgeSerError as exc:
        print(f"edge-ser listen: {exc}", file=sys.stderr)
        return 2
    from .blas import limit_blas_threads

    limit_blas_threads(1)  # tiny products every 50 ms: BLAS threads would only spin (see blas.py)
    source = _make_source(settings, int(classifier.sample_rate))
    try:
        sinks = _make_sinks(settings, mqtt_config, classifier, source.name)
    except EdgeSerError as exc:
        print(f"edge-ser listen: {exc}", file=sys.stderr)
        return 2
    try:
        listener = Listener(settings, classifier, source, sinks, Notifier())
    except (VadError, EdgeSerError, OSError) as exc:
        sinks.close()
        print(f"edge-ser listen: {exc}", file=sys.stderr)
        return 2
    if http_config is not None:
        try:
            dashboard = _start_dashboard(http_config, settings, classifier, source, listener)
        except EdgeSerError as exc:
            sinks.close()
            print(f"edge-ser listen: {exc}", file=sys.stderr)
            return 2
        sinks.sinks.append(dashboard)
        listener.level_sinks.append(dashboard)
    listener_box.append(listener)
    if stop_requests:
        listener.request_stop(stop_requests[0])
    try:
        return listener.run()
    finally:
        sinks.close()


def _start_dashboard(http_config: Any, settings: Settings, classifier: Any, source: Any, listener: Any) -> Any:
    """The web dashboard as one more sink; it also gets the live level events."""
    from ..outputs.http import create_dashboard

    return create_dashboard(
        http_config, device_name=source.name, model_id=str(classifier.model_id), labels=list(classifier.labels),
        model_path=str(classifier.model_path), backend=settings["model"]["backend"] or None,
        status_provider=lambda: {"counters": listener.counters()})


def run_devices(args: argparse.Namespace) -> int:
    """Entry point of ``edge-ser devices``."""
    from .sources import SourceError, list_input_devices

    try:
        devices = list_input_devices()
    except SourceError as exc:
        print(f"edge-ser devices: {exc}", file=sys.stderr)
        return 2
    if not devices:  # an answer a script must not mistake for a listing: stderr, exit 1
        print("edge-ser devices: no input devices found", file=sys.stderr)
        return 1
    if args.json:
        for d in devices:
            print(json.dumps(d))
        return 0
    width = max(len(d["name"]) for d in devices)
    print(f"{'index':>5}  {'name':<{width}}  {'channels':>8}  {'default rate':>12}  host API")
    for d in devices:
        mark = " (default)" if d["default"] else ""
        print(f"{d['index']:>5}  {d['name']:<{width}}  {d['channels']:>8}  {d['default_rate']:>12}  "
              f"{d['host_api']}{mark}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m edge_ser.daemon listen|devices ...``"""
    parser = argparse.ArgumentParser(prog="edge-ser")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))
