"""The daemon's parts in-process: config, VAD, segmenter, capture queue, sinks, sd_notify.

No model and no audio device here; the end-to-end behaviour (real pyaudio, real
PortAudio, real model, subprocesses) is in ``test_daemon.py``.
"""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_ser.daemon import config as cfg
from edge_ser.daemon.capture import CaptureQueue, CaptureThread, Chunk, Control
from edge_ser.daemon.events import EventFactory, iso_utc
from edge_ser.daemon.notify import Notifier
from edge_ser.daemon.segmenter import ProbabilitySmoother, Segmenter, SlidingWindows, Utterance
from edge_ser.daemon.sinks import FanOut, FileSink, QueuedSink, StreamSink
from edge_ser.daemon.sources import (AudioSource, Block, SourceError, StdinSource, WavFileSource, candidate_rates,
                                     find_input_device, to_mono)
from edge_ser.daemon.vad import EnergyVad, VadError, make_vad
from edge_ser.wav import write_wav

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent


def speechlike(seconds: float, level: float = 0.3, f0: float = 160.0, seed: int = 0) -> np.ndarray:
    """Harmonics with a 4 Hz syllable envelope: what an energy VAD must call speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, 10))
    envelope = 0.55 - 0.45 * np.cos(2 * np.pi * 4.0 * t)
    x = voiced * envelope
    return (level * x / np.abs(x).max()).astype(np.float32)


def room(seconds: float, level: float = 1e-3, seed: int = 1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def default_segmenter(**kw) -> Segmenter:
    settings = cfg.defaults()
    vad = make_vad(settings["vad"], RATE)
    seg = settings["segmenter"]
    args = dict(pre_roll_ms=seg["pre_roll_ms"], end_silence_ms=seg["end_silence_ms"],
                min_utterance_ms=seg["min_utterance_ms"], max_utterance_s=seg["max_utterance_seconds"],
                onset_ms=settings["vad"]["onset_ms"])
    args.update(kw)
    return Segmenter(vad, RATE, **args)


def feed(seg, signal: np.ndarray, chunk: int = 800):
    out = []
    for i in range(0, len(signal), chunk):
        out += seg.push(signal[i:i + chunk])
    return out


# -- config -----------------------------------------------------------------------------------------

def test_shipped_config_file_validates_and_equals_the_defaults():
    path = ROOT / "device" / "edge-ser.toml"
    loaded = cfg.load_file(path)
    assert cfg.merge(loaded) == cfg.defaults()
    # every option is in the file, each with a comment right above it
    lines = path.read_text().splitlines()
    for option in cfg.OPTIONS:
        assert option.key in loaded[option.section], option.name
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[i - 1].startswith("#"), f"option without a comment: {line}"
    assert path.read_text() == cfg.default_file_text(), "device/edge-ser.toml is stale: regenerate it"


@pytest.mark.parametrize("text, message", [
    ("[vad]\nthreshold = 3\n", "unknown key vad.threshold"),
    ("[vadd]\nthreshold_db = 3\n", "unknown section [vadd]"),
    ("[vad]\nthreshold_db = \"loud\"\n", "vad.threshold_db must be a number"),
    ("[vad]\nthreshold_db = 99.0\n", "vad.threshold_db must be <= 60"),
    ("[source]\nrate = 16000.5\n", "source.rate must be an integer"),
    ("[source]\nchannels = 0\n", "source.channels must be >= 1"),
    ("[output]\nstdout = 1\n", "output.stdout must be true or false"),
    ("[vad]\nengine = \"neural\"\n", "vad.engine must be one of"),
    ("[vad]\nframe_ms = 25\n", "vad.frame_ms must be one of"),
    ("[source]\ndevice = 1.5\n", "source.device must be a device index"),
    ("[vad\n", "not valid TOML"),
    ("source = 3\n", "[source] must be a table"),
])
def test_config_errors_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load_file(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_config_cross_checks_and_missing_file(tmp_path):
    with pytest.raises(cfg.ConfigError, match="not found"):
        cfg.resolve(str(tmp_path / "nope.toml"), {})
    with pytest.raises(cfg.ConfigError, match="band_low_hz"):
        cfg.resolve(None, {"vad.band_low_hz": 5000.0})
    with pytest.raises(cfg.ConfigError, match="mutually exclusive"):
        cfg.resolve(None, {"source.file": "x.wav", "source.stdin": True})
    with pytest.raises(cfg.ConfigError, match="hop_seconds"):
        cfg.resolve(None, {"continuous.hop_seconds": 5.0})
    with pytest.raises(cfg.ConfigError, match="command line: service.max_seconds must be >= 0"):
        cfg.resolve(None, {"service.max_seconds": -1.0})


def test_flags_win_over_the_file_and_the_file_over_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[vad]\nthreshold_db = 14\nhangover_ms = 100\n[source]\ndevice = 3\n[mqtt]\nhost = \"x\"\n")
    settings = cfg.resolve(str(path), {"vad.threshold_db": 8.5})
    assert settings["vad"]["threshold_db"] == 8.5  # flag
    assert settings["vad"]["hangover_ms"] == 100  # file
    assert settings["source"]["device"] == 3  # file, an index
    assert settings["segmenter"]["end_silence_ms"] == 600  # default
    assert "mqtt" not in settings  # owned by edge_ser.outputs


# -- VAD ---------------------------------------------------------------------------------------------

def test_vad_silence_and_quiet_room_are_not_speech():
    vad = EnergyVad(RATE)
    frames = np.zeros((100, vad.frame_length), np.float32)
    speech, levels = vad.process(frames)
    assert not speech.any() and levels.max() <= -119
    frames = room(3.0, 3e-4)[: 100 * vad.frame_length].reshape(100, -1)
    speech, _ = vad.process(frames)
    assert not speech.any()


def test_vad_level_of_a_full_scale_sine_is_about_minus_3_db():
    vad = EnergyVad(RATE)
    t = np.arange(vad.frame_length * 4) / RATE
    _, levels = vad.process(np.sin(2 * np.pi * 1000 * t).astype(np.float32).reshape(4, -1))
    assert np.allclose(levels, -3.0, atol=0.5)


def test_vad_floor_adapts_to_steady_noise_and_still_finds_speech():
    vad = EnergyVad(RATE, hangover_ms=0)
    n = vad.frame_length
    loud_room = room(12.0, 0.02, seed=3)  # a noisy room (fan): about -34 dBFS, above min_level_db
    speech, _ = vad.process(loud_room[: (len(loud_room) // n) * n].reshape(-1, n))
    assert speech[: int(0.5 / vad.frame_seconds)].mean() > 0.9  # before any history: the absolute gate
    assert speech[-100:].mean() < 0.05  # the floor has learnt the fan
    voice = speechlike(2.0, 0.3) + room(2.0, 0.02, seed=4)
    speech, _ = vad.process(voice[: (len(voice) // n) * n].reshape(-1, n))
    assert speech.mean() > 0.5  # syllable troughs are not speech without hangover


def test_vad_ignores_hum_below_the_speech_band():
    vad = EnergyVad(RATE, hangover_ms=0)
    t = np.arange(RATE * 2) / RATE
    hum = (0.5 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)
    speech, _ = vad.process(hum[: (len(hum) // vad.frame_length) * vad.frame_length].reshape(-1, vad.frame_length))
    assert not speech.any()


def test_webrtc_vad_is_optional_with_a_clear_error():
    settings = cfg.defaults()["vad"]
    settings["engine"] = "webrtc"
    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        with pytest.raises(VadError, match="pip install webrtcvad"):
            make_vad(settings, RATE)
    else:
        vad = make_vad(settings, RATE)
        assert vad.process(np.zeros((3, vad.frame_length), np.float32))[0].tolist() == [False] * 3
        seg = Segmenter(make_vad(settings, RATE), RATE)
        signal = room(10.0)
        signal[2 * RATE: 4 * RATE] += speechlike(2.0)
        signal[6 * RATE: 7 * RATE] += speechlike(1.0)
        spans = [(u.start, u.end) for u in feed(seg, signal) + seg.flush("stop")]
        assert len(spans) == 2 and 1.6 <= spans[0][0] <= 2.0 and 6.9 <= spans[1][1] <= 7.4


# -- segmenter ---------------------------------------------------------------------------------------

def test_segmenter_finds_each_utterance_with_sensible_times():
    truth = [(2.0, 3.5), (7.0, 9.0), (12.0, 12.8)]
    signal = room(16.0)
    for i, (a, b) in enumerate(truth):
        signal[int(a * RATE): int(b * RATE)] += speechlike(b - a, seed=i)
    seg = default_segmenter()
    utterances = feed(seg, signal) + seg.flush("stop")
    assert len(utterances) == 3
    for u, (a, b) in zip(utterances, truth):
        assert a - 0.35 <= u.start <= a  # pre-roll (300 ms) before the onset
        assert b - 0.05 <= u.end <= b + 0.3  # the last speech frame plus hangover
        assert u.reason == "silence"
        assert abs(len(u.samples) / RATE - u.duration) < 1e-6
        assert -35 < u.level_db < -10


def test_segmenter_drops_clicks_and_splits_monologues():
    signal = room(20.0)
    signal[RATE: RATE + 1600] += speechlike(0.1)  # 100 ms: a knock
    signal[3 * RATE: 16 * RATE] += speechlike(13.0)  # 13 s without a pause
    seg = default_segmenter()
    utterances = feed(seg, signal) + seg.flush("stop")
    assert seg.discarded == 1
    assert [u.reason for u in utterances] == ["max_length", "silence"]
    assert utterances[0].duration == pytest.approx(10.0, abs=0.05)
    assert utterances[1].start == pytest.approx(utterances[0].end, abs=1e-6)
    assert utterances[1].end == pytest.approx(16.0, abs=0.3)


def test_segmenter_flush_closes_speech_in_progress():
    seg = default_segmenter()
    signal = np.concatenate([room(1.0), speechlike(2.0) + room(2.0)])
    assert feed(seg, signal) == []
    assert seg.in_speech
    (u,) = seg.flush("stop")
    assert u.reason == "stop" and u.end == pytest.approx(3.0, abs=0.05)
    assert seg.flush("stop") == []


def test_segmenter_reset_sets_the_stream_origin():
    seg = default_segmenter()
    seg.reset(100.0)
    (u,) = feed(seg, np.concatenate([room(1.0), speechlike(1.0), room(1.0)]))
    assert 100.6 < u.start < 101.0


def test_sliding_windows_every_hop_after_the_first_full_window():
    settings = cfg.defaults()
    windows = SlidingWindows(make_vad(settings["vad"], RATE), RATE, 3.0, 1.0)
    out = feed(windows, np.concatenate([speechlike(5.0), room(5.0)]), chunk=1234)
    assert [round(w.end, 3) for w in out] == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    assert all(len(w.samples) == 3 * RATE for w in out)
    assert out[0].speech_ratio > 0.8 and out[-1].speech_ratio == 0.0
    skipping = SlidingWindows(make_vad(settings["vad"], RATE), RATE, 3.0, 1.0, min_speech_ratio=0.5)
    assert len(feed(skipping, np.concatenate([speechlike(5.0), room(5.0)]))) < len(out)
    assert skipping.skipped > 0


def test_probability_smoother():
    off = ProbabilitySmoother(0.0)
    assert off.update({"a": 1.0, "b": 0.0}) == {"a": 1.0, "b": 0.0}
    assert off.update({"a": 0.0, "b": 1.0}) == {"a": 0.0, "b": 1.0}
    ema = ProbabilitySmoother(0.75)
    ema.update({"a": 1.0, "b": 0.0})
    assert ema.update({"a": 0.0, "b": 1.0}) == pytest.approx({"a": 0.75, "b": 0.25})


# -- sources, capture queue --------------------------------------------------------------------------

def test_to_mono_and_rate_candidates_and_device_choice():
    stereo = np.array([1, 3, 2, 4, 5, 7], np.float32)
    assert to_mono(stereo, 2, -1).tolist() == [2, 3, 6]
    assert to_mono(stereo, 2, 1).tolist() == [3, 4, 7]
    assert candidate_rates(16000, 44100) == [16000, 44100, 48000]
    assert candidate_rates(48000, 48000) == [48000, 44100]
    devices = [{"index": 0, "name": "filemic", "default": False}, {"index": 3, "name": "mic", "default": True},
               {"index": 4, "name": "USB Audio Device: hw:1,0", "default": False}]
    assert find_input_device(devices, "mic")["index"] == 3  # exact name beats substring
    assert find_input_device(devices, "usb")["index"] == 4
    assert find_input_device(devices, "")["index"] == 3
    assert find_input_device(devices, 0)["index"] == 0
    assert find_input_device(devices, "4")["index"] == 4
    with pytest.raises(SourceError, match="no input device matching 'webcam'"):
        find_input_device(devices, "webcam")


def _chunk(start: float, seconds: float = 0.1) -> Chunk:
    return Chunk(np.zeros(int(seconds * RATE), np.float32), RATE, start, time.monotonic(), time.time())


def test_capture_queue_drops_the_oldest_audio_and_keeps_controls():
    q = CaptureQueue(capacity_seconds=0.5)
    q.put(Control("opened"))
    for i in range(20):
        q.put(_chunk(i * 0.1))
    assert q.seconds == pytest.approx(0.5)
    assert q.dropped_seconds == pytest.approx(1.5) and q.dropped_chunks == 15
    first = q.get(0)
    assert isinstance(first, Control) and first.kind == "opened"
    kept = [q.get(0) for _ in range(5)]
    assert [round(c.start, 1) for c in kept] == [1.5, 1.6, 1.7, 1.8, 1.9]  # the newest audio survived
    assert [c.lost_before for c in kept] == pytest.approx([1.5, 0, 0, 0, 0])  # the loss rides on the survivor
    assert q.get(0) is None


def test_capture_queue_hands_each_drop_on_to_the_next_chunk_and_refuses_audio_once_closed():
    """Whatever the interleaving of puts and gets, the chunks taken account for the whole stream:
    the sum of their durations and of the losses they carry is the end of the last one."""
    rng = np.random.default_rng(3)
    q = CaptureQueue(capacity_seconds=0.35)
    taken, t = [], 0.0
    for _ in range(400):
        if rng.random() < 0.7:
            seconds = float(rng.choice([0.05, 0.1]))
            lost = float(rng.choice([0.0, 0.0, 0.2]))  # some chunks come after a loss inside the source
            t += lost
            chunk = _chunk(t, seconds)
            chunk.lost_before = lost
            q.put(chunk)
            t = chunk.end
        elif (item := q.get(0)) is not None:
            taken.append(item)
            assert sum(c.duration + c.lost_before for c in taken) == pytest.approx(taken[-1].end)
    assert q.dropped_chunks > 0
    q.close()
    q.put(_chunk(t))  # past the end of the stream: refused, counted nowhere
    while (item := q.get(0)) is not None:
        taken.append(item)
    assert taken[-1].end == pytest.approx(t)
    assert sum(c.duration + c.lost_before for c in taken) == pytest.approx(t)


def test_capture_queue_blocks_a_non_live_producer():
    q = CaptureQueue(capacity_seconds=0.3, block_when_full=True)
    done = threading.Event()

    def producer():
        for i in range(10):
            q.put(_chunk(i * 0.1))
        done.set()

    threading.Thread(target=producer, daemon=True).start()
    got = []
    while len(got) < 10:
        item = q.get(1.0)
        assert item is not None
        got.append(item.start)
        assert q.seconds <= 0.3 + 1e-9
    assert done.wait(2) and q.dropped_seconds == 0
    assert got == pytest.approx([i * 0.1 for i in range(10)])


class FlakySource(AudioSource):
    """Fails to read after a few blocks, then fails to open twice, then works (in-process check)."""

    live = True

    def __init__(self):
        self.name, self.sample_rate, self.opens, self.reads = "flaky", RATE, 0, 0

    def open(self):
        self.opens += 1
        if self.opens in (2, 3):
            raise SourceError("unplugged")

    def read(self, timeout):
        self.reads += 1
        if self.reads == 4:
            raise SourceError("read error")
        if self.reads > 8:
            time.sleep(timeout)
            return Block.empty()
        return Block(np.zeros(800, np.float32), time.monotonic(), time.time())

    def close(self):
        pass


def test_capture_thread_reports_loss_once_and_recovery_with_a_stream_gap():
    q = CaptureQueue(10.0)
    thread = CaptureThread(FlakySource(), q, retry_initial=0.01, retry_max=0.02)
    thread.start()
    items = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(isinstance(i, Control) and i.kind == "device_recovered"
                                                  for i in items):
        item = q.get(0.1)
        if item is not None:
            items.append(item)
    while (item := q.get(0.2)) is not None:
        items.append(item)
    thread.stop()
    thread.join(2)
    kinds = [i.kind if isinstance(i, Control) else "audio" for i in items]
    assert kinds == ["opened", "audio", "audio", "audio", "device_lost", "device_recovered",
                     "audio", "audio", "audio", "audio"]
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert chunks[2].end == pytest.approx(0.15)
    assert chunks[3].start > chunks[2].end  # the outage is a gap in stream time
    assert thread.device_losses == 1 and thread.open_failures == 2


class FakePortAudio:
    """Just enough of pyaudio for :class:`MicrophoneSource`: one input device whose callback thread
    runs faster than real time and, like PortAudio, keeps calling back until the stream is closed."""

    paInt16, paContinue, paAbort, paInputOverflow = 8, 0, 2, 2
    BURST = 100  # callbacks delivered at once: more than the source's callback buffer holds

    class PyAudio:
        def get_default_input_device_info(self):
            return {"index": 0}

        def get_device_count(self):
            return 1

        def get_device_info_by_index(self, i):
            return {"name": "fastfake", "maxInputChannels": 1, "defaultSampleRate": RATE, "hostApi": 0}

        def open(self, *, frames_per_buffer, stream_callback, **kw):
            return FakePortAudio.Stream(frames_per_buffer, stream_callback)

        def terminate(self):
            pass

    class Stream:
        def __init__(self, frames, callback):
            self.frames, self.callback, self.closed = frames, callback, threading.Event()
            self.burst()  # audio piles up before anyone reads: lost inside the source
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()

        def call(self):
            data = (np.full(self.frames, 30, "<i2")).tobytes()
            return self.callback(data, self.frames, None, 0)[1] == FakePortAudio.paContinue

        def burst(self):
            for _ in range(FakePortAudio.BURST):
                self.call()

        def run(self):
            while not self.closed.is_set() and self.call():
                time.sleep(0.002)  # ~25x real time

        def is_active(self):
            return not self.closed.is_set()

        def close(self):
            self.burst()  # callbacks still arrive while the stream is being closed
            self.closed.set()
            self.thread.join(5)


def test_listener_counts_only_the_losses_inside_the_stream_it_processed(monkeypatch):
    """stream_time == audio_seconds + dropped_seconds in the final counters, even though the
    microphone's callback keeps losing audio after the capture thread's last read."""
    import sys
    import types

    from edge_ser.daemon.service import Listener
    from edge_ser.daemon.sources import MicrophoneSource

    fake = types.ModuleType("pyaudio")
    for name in ("paInt16", "paContinue", "paAbort", "paInputOverflow", "PyAudio"):
        setattr(fake, name, getattr(FakePortAudio, name))
    monkeypatch.setitem(sys.modules, "pyaudio", fake)

    class Stub:
        sample_rate, model_id, labels = RATE, "stub@1", ["a", "b"]

        def classify_signal(self, samples, rate):
            return types.SimpleNamespace(label="a", probabilities={"a": 1.0, "b": 0.0}, confidence=1.0)

    class Collect:
        def __init__(self):
            self.events = []

        def emit(self, event):
            self.events.append(event)

        def close(self):
            pass

    settings = cfg.defaults()
    settings["service"]["max_seconds"] = 5.0
    settings["service"]["watchdog"] = False
    sink = Collect()
    listener = Listener(settings, Stub(), MicrophoneSource("", RATE), FanOut([sink]), Notifier({}))
    guard = threading.Timer(60, listener.request_stop, ("test timeout",))
    guard.start()
    try:
        assert listener.run() == 0
    finally:
        guard.cancel()
    stop = sink.events[-1]
    assert stop["event"] == "stop" and stop["reason"] == "max_seconds"
    counters = stop["counters"]
    # the burst at open: 60 blocks of 50 ms lost before the first block was read
    assert counters["dropped_seconds"] >= 3.0 and counters["gaps"] == 0
    assert counters["stream_time"] == 5.0
    assert counters["audio_seconds"] + counters["dropped_seconds"] == pytest.approx(5.0, abs=0.002)


def test_native_noise_is_hidden_but_the_daemon_log_from_another_thread_is_not():
    """While the capture thread hides fd 2 around a PortAudio (re)open, a log line from the
    worker still reaches stderr: the log writes to its own copy of fd 2."""
    import subprocess
    import sys

    code = (
        "import logging, os, threading\n"
        "from edge_ser.daemon.cli import _setup_logging\n"
        "from edge_ser.daemon.sources import _native_noise_hidden\n"
        "_setup_logging(False)\n"
        "with _native_noise_hidden():\n"
        "    os.write(2, b'ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM foo\\n')\n"
        "    t = threading.Thread(target=logging.getLogger('edge_ser.daemon').warning, args=('device lost',))\n"
        "    t.start(); t.join()\n"
        "os.write(2, b'after\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT),
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["edge-ser listen: WARNING: device lost", "after"]


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_devices_with_no_input_device_says_so_on_stderr_and_exits_1(tmp_path, flags):
    """The real CLI in a subprocess, over a PortAudio that sees only an output device."""
    import subprocess
    import sys

    (tmp_path / "pyaudio.py").write_text(
        "class PyAudio:\n"
        "    def get_default_input_device_info(self):\n"
        "        raise IOError(-9996, 'No Default Input Device Available')\n"
        "    def get_device_count(self):\n"
        "        return 1\n"
        "    def get_device_info_by_index(self, i):\n"
        "        return {'name': 'hdmi', 'maxInputChannels': 0, 'defaultSampleRate': 48000, 'hostApi': 0}\n"
        "    def terminate(self):\n"
        "        pass\n")
    out = subprocess.run([sys.executable, "-m", "edge_ser", "devices", *flags], capture_output=True, text=True,
                         cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}"), timeout=60)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.strip() == "edge-ser devices: no input devices found"


def test_wav_file_and_stdin_sources(tmp_path):
    stereo = np.stack([speechlike(1.0), np.zeros(RATE, np.float32)], axis=1)
    write_wav(tmp_path / "s.wav", stereo, RATE)
    src = WavFileSource(str(tmp_path / "s.wav"), channel=1)
    src.open()
    blocks = []
    while (b := src.read(0.1)) is not None:
        blocks.append(b.samples)
    assert sum(map(len, blocks)) == RATE and np.abs(np.concatenate(blocks)).max() == 0
    with pytest.raises(SourceError, match="cannot open"):
        WavFileSource(str(tmp_path / "missing.wav")).open()
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(SourceError) as info:
        WavFileSource(str(tmp_path / "bad.wav")).open()
    assert not info.value.retryable

    r, w = os.pipe()
    os.write(w, (np.arange(-5, 5, dtype="<i2") * 1000).tobytes() + b"\x01")  # a trailing half sample
    os.close(w)
    with os.fdopen(r, "rb") as pipe:
        src = StdinSource(RATE, 2, -1, stream=pipe)
        src.open()
        first = src.read(1.0)
        assert first.samples.tolist() == pytest.approx(((np.arange(-5, 5, 2) + 0.5) * 1000 / 32768).tolist())
        assert src.read(1.0) is None


# -- events, sinks, notify ----------------------------------------------------------------------------

def test_event_fields():
    factory = EventFactory("model@1", "mic")
    u = Utterance(np.zeros(16000, np.float32), 2.0, 3.0, -20.04, "silence", 0.9)
    e = factory.result("utterance", u, 1_700_000_000.5, "happy", 0.61234, {"happy": 0.61234, "sad": 0.38766},
                       12.34, 5.0)
    assert e["type"] == "utterance" and e["seq"] == 1
    assert e["start"] == "2023-11-14T22:13:19.500Z" and e["end"] == "2023-11-14T22:13:20.500Z"
    assert (e["stream_start"], e["stream_end"], e["duration"]) == (2.0, 3.0, 1.0)
    assert e["emotion"] == "happy" and e["confidence"] == 0.6123 and set(e["probabilities"]) == {"happy", "sad"}
    assert e["level_db"] == -20.0 and e["latency_ms"] == 12.3 and e["device"] == "mic" and e["model"] == "model@1"
    s = factory.status("start", 0.0, {"utterances": 0})
    assert s["seq"] == 2 and s["event"] == "start" and s["time"].endswith("Z")
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_file_sink_appends_and_queued_sink_drops_when_the_consumer_is_slow(tmp_path):
    path = tmp_path / "sub" / "events.jsonl"
    path.parent.mkdir()
    path.write_text('{"old": true}\n')
    sink = FileSink(str(path), fsync=True)
    sink.emit({"a": 1})
    assert path.read_text().splitlines()[-1] == '{"a":1}'  # flushed per event
    sink.close()

    class Slow:
        def __init__(self):
            self.got, self.release = [], threading.Event()

        def emit(self, event):
            self.release.wait(5)
            self.got.append(event)

        def close(self):
            pass

    slow = Slow()
    queued = QueuedSink(slow, capacity=3)
    t0 = time.monotonic()
    for i in range(10):
        queued.emit({"i": i})
    assert queued.dropped >= 6  # 1 in the sink, 3 queued, the rest dropped; emit never waited
    slow.release.set()
    queued.close()
    assert [e["i"] for e in slow.got] == list(range(len(slow.got)))
    fan = FanOut([queued])
    assert fan.dropped == queued.dropped
    assert time.monotonic() - t0 < 30  # (sanity bound only)


def test_stream_sink_survives_a_broken_pipe():
    class Broken(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    sink = StreamSink(Broken())
    sink.emit({"a": 1})
    sink.emit({"a": 2})
    assert sink.broken and sink.errors == 2


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_over_a_unix_datagram_socket(tmp_path, abstract):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    address = f"@edge-ser-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else str(tmp_path / "notify")
    server.bind("\0" + address[1:] if abstract else address)
    server.settimeout(2)
    try:
        n = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
        assert n.watchdog_interval == 0.5
        n.ready("listening")
        n.watchdog(now=100.0)
        n.watchdog(now=100.1)  # too soon: not sent
        n.watchdog(now=100.6)
        n.stopping()
        got = [server.recv(4096).decode() for _ in range(4)]
        assert got == ["READY=1\nSTATUS=listening", "WATCHDOG=1", "WATCHDOG=1", "STOPPING=1"]
        n.close()
    finally:
        server.close()
    silent = Notifier({})
    assert not silent.enabled and silent.send("READY=1") is False
    other_pid = Notifier({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval is None


def test_blas_is_limited_to_one_thread_in_a_fresh_process():
    import subprocess
    import sys

    code = (
        "import ctypes, numpy\n"
        "from edge_ser.daemon.blas import limit_blas_threads, _loaded_openblas\n"
        "path = limit_blas_threads(1)\n"
        "if path is None:\n"
        "    print('no-openblas', _loaded_openblas())\n"
        "else:\n"
        "    lib = ctypes.CDLL(path)\n"
        "    get = next(getattr(lib, n) for n in ('openblas_get_num_threads', 'openblas_get_num_threads64_',\n"
        "               'scipy_openblas_get_num_threads', 'scipy_openblas_get_num_threads64_') if hasattr(lib, n))\n"
        "    print('threads', get())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(ROOT),
                         env=dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="2"), timeout=60)
    assert out.returncode == 0, out.stderr
    if out.stdout.startswith("no-openblas"):
        pytest.skip("NumPy is not linked against OpenBLAS here")
    assert out.stdout.strip() == "threads 1"


def test_toml_on_old_pythons_needs_tomli_with_a_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setattr(cfg.sys, "version_info", (3, 10, 0))
    monkeypatch.setitem(sys.modules, "tomli", None)  # "not installed"
    (tmp_path / "c.toml").write_text("[vad]\nthreshold_db = 3.0\n")
    with pytest.raises(cfg.ConfigError, match="needs the 'tomli' package: pip install tomli"):
        cfg.load_file(tmp_path / "c.toml")
