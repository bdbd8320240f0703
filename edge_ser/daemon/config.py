"""Configuration of ``edge-ser listen``: one schema for the TOML file and the flags.

Every option is declared once in :data:`OPTIONS` (section, key, type, default, allowed
range, help). The TOML loader, the validator, the documented default file
(``device/edge-ser.toml``) and the command-line flags all read that table, so they
cannot drift apart. Precedence: built-in defaults < ``--config FILE`` < flags.

A device is configured by people editing a file over SSH; a typo must stop the
daemon with a message naming the key, not be silently ignored.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import EdgeSerError


class ConfigError(EdgeSerError):
    """The configuration file or a flag value is invalid."""


@dataclass(frozen=True)
class Option:
    """One setting: where it lives, what it holds, what is allowed."""

    section: str
    key: str
    type: type  # bool, int, float or str
    default: Any
    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[Tuple[Any, ...]] = None
    int_or_str: bool = False  # e.g. a device given by index or by name

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    def check(self, value: Any, origin: str) -> Any:
        """Return ``value`` converted to the option's type, or raise ConfigError."""
        where = f"{origin}: {self.name}"
        if self.int_or_str:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise ConfigError(f"{where} must be a device index (integer) or a name (string), got {value!r}")
            if isinstance(value, int) and value < 0:
                raise ConfigError(f"{where} must be >= 0, got {value}")
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {value!r}")
            return value
        if self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where} must be an integer, got {value!r}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{where} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be finite, got {value!r}")
        elif self.type is str:
            if not isinstance(value, str):
                raise ConfigError(f"{where} must be a string, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(f"{where} must be one of {allowed}, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{where} must be >= {self.minimum:g}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{where} must be <= {self.maximum:g}, got {value!r}")
        return value


def _o(section: str, key: str, typ: type, default: Any, help: str, **kw: Any) -> Option:
    return Option(section, key, typ, default, help, **kw)


#: The whole schema, in the order of the documented config file.
OPTIONS: Tuple[Option, ...] = (
    # -- where audio comes from ---------------------------------------------------------------
    _o("source", "device", str, "", "Input device: index, or a substring of its name "
       "(see `edge-ser devices`); empty = the system default input.", int_or_str=True),
    _o("source", "rate", int, 0, "Capture rate in Hz to ask for first; 0 = the model's rate. "
       "If the device refuses it, its default rate, 48000 and 44100 are tried.", minimum=0, maximum=768000),
    _o("source", "channels", int, 1, "Channels to capture (the device's maximum is tried if refused).",
       minimum=1, maximum=64),
    _o("source", "channel", int, -1, "Channel to keep (0-based); -1 = average all channels.",
       minimum=-1, maximum=63),
    _o("source", "file", str, "", "Read this WAV file instead of a microphone (tests, benchmarks)."),
    _o("source", "realtime", bool, False, "With `file`: deliver audio at real-time pace "
       "(otherwise as fast as the worker takes it)."),
    _o("source", "stdin", bool, False, "Read raw signed 16-bit little-endian PCM from standard input."),
    _o("source", "stdin_rate", int, 16000, "Sample rate of the raw PCM on stdin.", minimum=1000, maximum=768000),
    _o("source", "stdin_channels", int, 1, "Interleaved channels of the raw PCM on stdin.", minimum=1, maximum=64),
    _o("source", "chunk_ms", int, 50, "Audio delivered per read/callback, in milliseconds.",
       minimum=5, maximum=1000),
    _o("source", "queue_seconds", float, 5.0, "Capture queue capacity. When the worker falls this "
       "far behind, the OLDEST audio is dropped (and counted), so memory stays bounded.",
       minimum=0.05, maximum=600.0),
    _o("source", "stall_seconds", float, 2.0, "A live source that delivers nothing for this long "
       "is treated as lost (device unplugged, driver hung).", minimum=0.1, maximum=600.0),
    _o("source", "retry_initial_seconds", float, 0.5, "First wait before reopening a lost device.",
       minimum=0.01, maximum=600.0),
    _o("source", "retry_max_seconds", float, 30.0, "Longest wait between reopen attempts "
       "(the wait doubles after each failure up to this).", minimum=0.01, maximum=3600.0),
    # -- the model --------------------------------------------------------------------------------
    _o("model", "path", str, "", "Model file (.tflite); empty = the shipped model."),
    _o("model", "backend", str, "", "Interpreter backend (ai_edge_litert, tflite_runtime, "
       "tensorflow); empty = the first that loads."),
    _o("model", "threads", int, 0, "Interpreter threads; 0 = the backend's default.", minimum=0, maximum=64),
    # -- voice activity detection ----------------------------------------------------------------
    _o("vad", "engine", str, "energy", "\"energy\" (built in, adaptive noise floor) or \"webrtc\" "
       "(needs the optional webrtcvad package).", choices=("energy", "webrtc")),
    _o("vad", "frame_ms", int, 30, "VAD frame length in milliseconds.", choices=(10, 20, 30)),
    _o("vad", "threshold_db", float, 10.0, "Speech = band energy this many dB above the noise floor.",
       minimum=0.0, maximum=60.0),
    _o("vad", "min_level_db", float, -55.0, "Frames quieter than this (dBFS) are never speech, "
       "whatever the floor (a silent room must not trigger on its own hiss).", minimum=-120.0, maximum=0.0),
    _o("vad", "band_low_hz", float, 200.0, "Lower edge of the speech band whose energy is measured.",
       minimum=0.0, maximum=20000.0),
    _o("vad", "band_high_hz", float, 4000.0, "Upper edge of the speech band (capped at Nyquist).",
       minimum=100.0, maximum=48000.0),
    _o("vad", "noise_window_seconds", float, 10.0, "History over which the noise floor is estimated.",
       minimum=0.5, maximum=600.0),
    _o("vad", "noise_percentile", float, 10.0, "The noise floor is this percentile of the history's "
       "frame levels (low = tracks the minimum).", minimum=0.0, maximum=50.0),
    _o("vad", "onset_ms", int, 60, "Speech must last this long before an utterance starts "
       "(ignores clicks and knocks).", minimum=0, maximum=2000),
    _o("vad", "hangover_ms", int, 200, "Frames this long after speech still count as speech "
       "(bridges short pauses and weak word endings).", minimum=0, maximum=5000),
    _o("vad", "webrtc_aggressiveness", int, 2, "webrtcvad mode 0 (least) .. 3 (most aggressive).",
       minimum=0, maximum=3),
    # -- utterances --------------------------------------------------------------------------------
    _o("segmenter", "pre_roll_ms", int, 300, "Audio kept before the detected start of speech.",
       minimum=0, maximum=5000),
    _o("segmenter", "end_silence_ms", int, 600, "An utterance ends after this much silence.",
       minimum=30, maximum=10000),
    _o("segmenter", "min_utterance_ms", int, 400, "Speech shorter than this is ignored.",
       minimum=0, maximum=60000),
    _o("segmenter", "max_utterance_seconds", float, 10.0, "Longer speech is split into utterances "
       "of at most this length.", minimum=0.5, maximum=600.0),
    _o("segmenter", "smoothing", float, 0.0, "EMA weight of the past over consecutive results "
       "(0 = off; 0.5 = the new result counts half).", minimum=0.0, maximum=0.99),
    # -- continuous mode -------------------------------------------------------------------------
    _o("continuous", "enabled", bool, False, "Classify a sliding window every hop instead of "
       "utterances (events of type \"window\")."),
    _o("continuous", "window_seconds", float, 3.0, "Length of each classified window.",
       minimum=0.2, maximum=60.0),
    _o("continuous", "hop_seconds", float, 1.0, "Time between windows.", minimum=0.05, maximum=60.0),
    _o("continuous", "min_speech_ratio", float, 0.0, "Skip windows with a smaller fraction of "
       "VAD speech frames (0 = classify every window).", minimum=0.0, maximum=1.0),
    # -- where events go -------------------------------------------------------------------------
    _o("output", "stdout", bool, True, "Print events as JSON lines on standard output."),
    _o("output", "events", str, "", "Also append events as JSON lines to this file."),
    _o("output", "fsync", bool, False, "fsync the events file after each event (survives power loss, "
       "costs flash wear)."),
    _o("output", "sink_queue", int, 1000, "Events buffered per sink before a slow sink starts "
       "dropping (counted).", minimum=1, maximum=1000000),
    _o("output", "save_utterances", str, "", "Save each utterance as a WAV in this directory. "
       "Empty = no audio is ever written anywhere."),
    _o("output", "status_interval_seconds", float, 0.0, "Emit a periodic \"status\" event with "
       "counters this often (0 = only on start, stop and device changes).", minimum=0.0, maximum=86400.0),
    _o("output", "quiet", bool, False, "No log messages on stderr (events still go to the sinks)."),
    # -- service ---------------------------------------------------------------------------------
    _o("service", "max_seconds", float, 0.0, "Stop after this much stream time (0 = run until "
       "stopped). For tests and soak runs.", minimum=0.0, maximum=1e9),
    _o("service", "watchdog", bool, True, "Send systemd WATCHDOG=1 pings when $WATCHDOG_USEC is set."),
)

OPTION_BY_NAME: Dict[str, Option] = {o.name: o for o in OPTIONS}
SECTIONS: Tuple[str, ...] = tuple(dict.fromkeys(o.section for o in OPTIONS))
#: Sections owned and checked by other packages (``[mqtt]``: :mod:`edge_ser.outputs.mqtt_config`,
#: ``[http]``: :mod:`edge_ser.outputs.http_config`).
DELEGATED_SECTIONS: Tuple[str, ...] = ("mqtt", "http")

Settings = Dict[str, Dict[str, Any]]


def defaults() -> Settings:
    """A fresh nested dict of every option at its default."""
    out: Settings = {s: {} for s in SECTIONS}
    for o in OPTIONS:
        out[o.section][o.key] = o.default
    return out


def validate(data: Mapping[str, Any], origin: str) -> Settings:
    """Check a parsed TOML document; return only the settings it contains, converted.

    Unknown sections and keys are errors (with the known ones listed), because a
    misspelt key silently falling back to a default is the worst kind of bug on an
    unattended device.
    """
    out: Settings = {}
    for section, body in data.items():
        if section in DELEGATED_SECTIONS:
            continue
        if section not in SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table, got {body!r}")
        for key, value in body.items():
            option = OPTION_BY_NAME.get(f"{section}.{key}")
            if option is None:
                known = ", ".join(o.key for o in OPTIONS if o.section == section)
                raise ConfigError(f"{origin}: unknown key {section}.{key} (known in [{section}]: {known})")
            out.setdefault(section, {})[key] = option.check(value, origin)
    return out


def _toml_module() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError(
            "reading a TOML config on Python < 3.11 needs the 'tomli' package: pip install tomli"
        ) from None
    return tomli


def load_file(path: Union[str, Path]) -> Settings:
    """Parse and validate a TOML config file (only the keys it sets)."""
    toml = _toml_module()
    try:
        with open(path, "rb") as f:
            data = toml.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return validate(data, str(path))


def merge(*layers: Mapping[str, Mapping[str, Any]]) -> Settings:
    """Later layers win, key by key."""
    out = defaults()
    for layer in layers:
        for section, body in layer.items():
            out[section].update(body)
    return out


def check_consistency(settings: Settings) -> None:
    """Cross-option rules that a single option's range cannot express."""
    src = settings["source"]
    if src["file"] and src["stdin"]:
        raise ConfigError("source.file and source.stdin are mutually exclusive (pick one input)")
    if src["stdin"] and src["channel"] >= src["stdin_channels"]:
        raise ConfigError(f"source.channel {src['channel']} does not exist in "
                          f"source.stdin_channels = {src['stdin_channels']} (channels count from 0)")
    if not src["stdin"] and not src["file"] and src["channel"] >= src["channels"]:
        raise ConfigError(f"source.channel {src['channel']} does not exist in source.channels = "
                          f"{src['channels']} (channels count from 0)")
    vad = settings["vad"]
    if vad["band_low_hz"] >= vad["band_high_hz"]:
        raise ConfigError(
            f"vad.band_low_hz ({vad['band_low_hz']:g}) must be below vad.band_high_hz ({vad['band_high_hz']:g})"
        )
    if src["retry_initial_seconds"] > src["retry_max_seconds"]:
        raise ConfigError("source.retry_initial_seconds must not exceed source.retry_max_seconds")
    seg = settings["segmenter"]
    if seg["min_utterance_ms"] / 1000.0 > seg["max_utterance_seconds"]:
        raise ConfigError("segmenter.min_utterance_ms must not exceed segmenter.max_utterance_seconds")
    cont = settings["continuous"]
    if cont["hop_seconds"] > cont["window_seconds"]:
        raise ConfigError("continuous.hop_seconds must not exceed continuous.window_seconds")


def resolve(config_file: Optional[str], flag_values: Mapping[str, Any]) -> Settings:
    """defaults < file < flags; ``flag_values`` maps ``section.key`` to given values only."""
    file_layer = load_file(config_file) if config_file else {}
    flag_layer: Settings = {}
    for name, value in flag_values.items():
        option = OPTION_BY_NAME[name]
        flag_layer.setdefault(option.section, {})[option.key] = option.check(value, "command line")
    settings = merge(file_layer, flag_layer)
    check_consistency(settings)
    return settings


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render_default_file(header: Iterable[str] = ()) -> str:
    """The documented default config (what ``device/edge-ser.toml`` holds)."""
    lines: List[str] = [f"# {h}" if h else "#" for h in header]
    for section in SECTIONS:
        lines.append("")
        lines.append(f"[{section}]")
        for o in OPTIONS:
            if o.section != section:
                continue
            for text in _wrap(o.help, 96):
                lines.append(f"# {text}")
            lines.append(f"{o.key} = {_toml_value(o.default)}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _wrap(text: str, width: int) -> Sequence[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


DEFAULT_FILE_HEADER: Tuple[str, ...] = (
    "edge-ser listen: the default configuration (every option, at its default).",
    "Installed as /etc/edge-ser/edge-ser.toml and used with: edge-ser listen --config FILE.",
    "Command-line flags override these values. Unknown keys, wrong types and out-of-range",
    "values stop the daemon with a message naming the key. This file is generated from the",
    "option table in edge_ser/daemon/config.py (a test checks that they agree):",
    "  python -c 'from edge_ser.daemon.config import default_file_text as t; print(t(), end=\"\")'",
    "",
    "Optional tables read by the output packages, off when absent:",
    "  [mqtt]  MQTT / Home Assistant output (needs paho-mqtt): edge_ser/outputs/mqtt_config.py,",
    "          e.g.  [mqtt]  host = \"broker.local\"",
    "  [http]  web dashboard and JSON API: edge_ser/outputs/http_config.py,",
    "          e.g.  [http]  listen = \"127.0.0.1:8080\"",
)


def default_file_text() -> str:
    """The text of ``device/edge-ser.toml``."""
    return render_default_file(DEFAULT_FILE_HEADER)
