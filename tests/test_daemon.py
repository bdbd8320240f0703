"""``edge-ser listen`` end to end: real processes, real pyaudio/PortAudio, real models.

The "microphone" is an ALSA capture PCM fed from a FIFO at a chosen pace
(``tests/alsa_capture.py``), so capture goes through PortAudio's ALSA host API exactly
as on a Raspberry Pi, without a sound card. Input audio is built here from corpus clips
separated by seconds of quiet room noise, or synthesized. Nothing asserts speed: times
are only used as generous timeouts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import pytest

from alsa_capture import FifoMic, file_mic_env, to_pcm16
from runtime_fixtures import test_models  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "models" / "edge-ser-int8.tflite"
RATE = 16000
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
# Clips of different actors and emotions; the ones the shipped model gets right on their own
# with some confidence are the "clear cases" (chosen at run time, not hard-coded results).
CANDIDATE_CLIPS = (
    "Actor_02/03-01-08-01-02-01-02.wav", "Actor_02/03-01-06-01-01-01-02.wav",
    "Actor_02/03-01-03-02-02-01-02.wav", "Actor_02/03-01-02-01-02-01-02.wav",
    "Actor_01/03-01-06-02-02-01-01.wav", "Actor_02/03-01-01-01-01-01-02.wav",
)

needs_pyaudio = pytest.mark.skipif(importlib.util.find_spec("pyaudio") is None,
                                   reason="pyaudio is needed for the microphone tests; make test installs it")


# ---------------------------------------------------------------------------------------------------
# helpers

def quiet_room(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    return (3e-4 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


def speechlike(seconds: float, rate: int = RATE, level: float = 0.3, f0: float = 150.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, 10))
    x = voiced * (0.55 - 0.45 * np.cos(2 * np.pi * 4.0 * t))
    return (level * x / np.abs(x).max()).astype(np.float32)


def sequence(clips: Sequence[np.ndarray], gap: float = 3.0, rate: int = RATE):
    """Clips separated by ``gap`` s of quiet room; returns (signal, [(start, end) of each clip])."""
    parts, spans, t = [quiet_room(gap, rate, 99)], [], gap
    for i, clip in enumerate(clips):
        parts.append(clip + quiet_room(len(clip) / rate, rate, i))
        spans.append((t, t + len(clip) / rate))
        t += len(clip) / rate
        parts.append(quiet_room(gap, rate, 100 + i))
        t += gap
    return np.concatenate(parts).astype(np.float32), spans


class Daemon:
    """``python -m edge_ser listen ...`` in a subprocess, its stdout parsed as JSON lines."""

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, stdin: Any = None,
                 cwd: Optional[Path] = None, command: str = "listen") -> None:
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        # a file, not a pipe: the daemon must never block on a full stderr pipe nobody reads
        self.stderr_path = Path(tempfile.gettempdir()) / f"edge-ser-daemon-stderr-{os.getpid()}-{time.monotonic_ns()}.txt"
        self._stderr = open(self.stderr_path, "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_ser", command, *args], env=full_env,
                                     stdin=stdin, stdout=subprocess.PIPE, stderr=self._stderr,
                                     cwd=str(cwd or ROOT), text=True)
        self.events: List[Dict[str, Any]] = []
        self.junk: List[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.junk.append(line)
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Dict[str, Any]], bool], timeout: float) -> Dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"no matching event within {timeout} s; got {self.events}\n"
                                         f"stderr: {self.stderr()}")
                self._cond.wait(min(left, 0.2))

    def status(self, what: str, timeout: float = 60) -> Dict[str, Any]:
        return self.wait_for(lambda e: e["type"] == "status" and e["event"] == what, timeout)

    def finish(self, sig: Optional[int] = signal.SIGTERM, timeout: float = 60) -> int:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)
        return code

    def stderr(self) -> str:
        self._stderr.flush()
        text = self.stderr_path.read_text()
        return "\n".join(line for line in text.splitlines() if line.startswith("edge-ser") or "Error" in line)

    def native_noise(self) -> List[str]:
        """Lines ALSA, JACK or PortAudio printed on the daemon's stderr (the README says: hidden)."""
        markers = ("ALSA lib", "Expression '", "Cannot connect to server", "jack server", "Jack", "JackShm")
        return [line for line in self.stderr_path.read_text().splitlines() if line.startswith(markers)]

    def utterances(self, kind: str = "utterance") -> List[Dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()
        self.stderr_path.unlink(missing_ok=True)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def model(request) -> Path:
    """The shipped model when it exists, else the runtime tests' int8 stand-in (built only then)."""
    return SHIPPED_MODEL if SHIPPED_MODEL.is_file() else request.getfixturevalue("test_models")["int8"]


@pytest.fixture(scope="module")
def clear_clips(ravdess_dir):
    """(name, samples, emotion) of corpus clips the shipped model classifies right on their own."""
    if not SHIPPED_MODEL.is_file():
        pytest.skip("the shipped model is not there yet")
    from edge_ser.classify import Classifier
    from edge_ser.wav import read_wav

    classifier = Classifier(SHIPPED_MODEL)
    out = []
    for name in CANDIDATE_CLIPS:
        samples = read_wav(ravdess_dir / name).samples
        truth = EMOTIONS[int(Path(name).name.split("-")[2]) - 1]
        prediction = classifier.classify_signal(samples, RATE)
        if prediction.label == truth and prediction.confidence >= 0.6:
            out.append((name, samples, truth))
    if len(out) < 3:
        pytest.skip(f"only {len(out)} clear clips for this model")
    return out[:4]


def check_utterances(events, spans, clear=None, tolerance: float = 0.6):
    """One event per clip, inside the clip's span (VAD trims silence), same emotion for clear clips."""
    assert len(events) == len(spans), [(e["stream_start"], e["stream_end"]) for e in events]
    for event, (start, end), in zip(events, spans):
        assert start - tolerance <= event["stream_start"] < event["stream_end"] <= end + tolerance, (event, start, end)
        assert event["duration"] == pytest.approx(event["stream_end"] - event["stream_start"], abs=0.002)
        assert set(event["probabilities"]) == set(EMOTIONS)
        assert sum(event["probabilities"].values()) == pytest.approx(1.0, abs=0.02)
        assert event["emotion"] == max(event["probabilities"], key=event["probabilities"].get)
        assert event["latency_ms"] >= event["classify_ms"] >= 0
        assert -60 < event["level_db"] < 0
        assert event["end"] > event["start"]
    if clear is not None:
        assert [e["emotion"] for e in events] == [c[2] for c in clear]


# ---------------------------------------------------------------------------------------------------
# file and stdin sources

def test_file_source_emits_one_event_per_clip_with_the_clip_alone_emotion(tmp_path, clear_clips):
    from edge_ser.wav import write_wav

    signal_, spans = sequence([c[1] for c in clear_clips])
    write_wav(tmp_path / "in.wav", signal_, RATE)
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--model", str(SHIPPED_MODEL)])
    try:
        assert d.finish(sig=None) == 0
        check_utterances(d.utterances(), spans, clear_clips)
        start, stop = d.events[0], d.events[-1]
        assert start["event"] == "start" and start["sample_rate"] == RATE and start["mode"] == "utterance"
        assert stop["event"] == "stop" and stop["reason"] == "end_of_stream"
        assert stop["counters"]["utterances"] == len(spans)
        assert stop["counters"]["stream_time"] == pytest.approx(len(signal_) / RATE, abs=0.06)
        assert stop["counters"]["dropped_seconds"] == 0  # a file is never dropped, only read slower
        assert [e["seq"] for e in d.events] == list(range(1, len(d.events) + 1))
        assert not d.junk
    finally:
        d.close()


def test_stdin_raw_pcm_at_8_khz_is_resampled(tmp_path, model):
    from edge_ser.resample import resample

    signal_, spans = sequence([speechlike(1.5), speechlike(2.5, f0=210)], gap=2.0)
    raw = to_pcm16(resample(signal_, RATE, 8000))
    d = Daemon(["--stdin", "--stdin-rate", "8000", "--model", str(model)], stdin=subprocess.PIPE)
    try:
        d.proc.stdin.buffer.write(raw)
        d.proc.stdin.close()
        assert d.finish(sig=None) == 0
        check_utterances(d.utterances(), spans)
        assert d.events[0]["sample_rate"] == 8000 and d.events[0]["source"] == "StdinSource"
    finally:
        d.close()


def test_save_utterances_writes_audio_only_when_asked(tmp_path, model):
    from edge_ser.wav import read_wav, write_wav

    signal_, spans = sequence([speechlike(1.0), speechlike(2.0)], gap=2.0)
    write_wav(tmp_path / "in.wav", signal_, RATE)
    work = tmp_path / "work"
    work.mkdir()
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--model", str(model), "--events", "ev.jsonl"], cwd=work)
    try:
        assert d.finish(sig=None) == 0
        assert len(d.utterances()) == 2 and "audio" not in d.utterances()[0]
    finally:
        d.close()
    assert sorted(p.name for p in work.rglob("*")) == ["ev.jsonl"]  # no audio anywhere
    lines = [json.loads(line) for line in (work / "ev.jsonl").read_text().splitlines()]
    assert lines == d.events  # the file sink got exactly what stdout got

    d = Daemon(["--file", str(tmp_path / "in.wav"), "--model", str(model), "--save-utterances", "clips",
                "--no-stdout", "--events", "ev2.jsonl"], cwd=work)
    try:
        assert d.finish(sig=None) == 0
        assert d.events == []
    finally:
        d.close()
    events = [json.loads(line) for line in (work / "ev2.jsonl").read_text().splitlines()]
    saved = [e for e in events if e["type"] == "utterance"]
    assert len(saved) == 2
    for e in saved:
        audio = read_wav(e["audio"] if os.path.isabs(e["audio"]) else work / e["audio"])
        assert audio.sample_rate == RATE and audio.duration == pytest.approx(e["duration"], abs=0.001)


def test_continuous_mode_classifies_a_window_every_hop(tmp_path, model):
    from edge_ser.wav import write_wav

    write_wav(tmp_path / "in.wav", np.concatenate([speechlike(4.0), quiet_room(4.0)]), RATE)
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--model", str(model), "--continuous",
                "--window-seconds", "3", "--hop-seconds", "1"])
    try:
        assert d.finish(sig=None) == 0
        windows = d.utterances("window")
        assert [w["stream_end"] for w in windows] == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
        assert all(w["duration"] == 3.0 for w in windows)
        assert windows[0]["speech_ratio"] > 0.8 and windows[-1]["speech_ratio"] == 0
        assert d.events[-1]["counters"]["windows"] == 6
    finally:
        d.close()


@pytest.mark.parametrize("config, message", [
    ("[vad]\nthreshold_db = 200\n", "vad.threshold_db must be <= 60"),
    ("[segmenter]\nend_silence = 300\n", "unknown key segmenter.end_silence"),
    ("[source]\nfile = 5\n", "source.file must be a string"),
    ("[mqtt]\nport = 1883\n", "no host"),
])
def test_bad_config_file_exits_2_naming_the_key(tmp_path, model, config, message):
    path = tmp_path / "bad.toml"
    path.write_text(config)
    d = Daemon(["--config", str(path), "--model", str(model), "--file", "x.wav"])
    try:
        assert d.finish(sig=None) == 2
        assert message in d.stderr() and d.events == []
    finally:
        d.close()


def test_bad_flags_missing_file_and_missing_model(tmp_path, model):
    d = Daemon(["--model", str(model), "--file", str(tmp_path / "nope.wav")])
    try:
        assert d.finish(sig=None) == 1
        assert "nope.wav" in d.stderr()
        assert [e["event"] for e in d.events] == ["start", "error", "stop"]
    finally:
        d.close()
    d = Daemon(["--model", str(tmp_path / "nope.tflite"), "--file", "x.wav"])
    try:
        assert d.finish(sig=None) == 2 and "nope.tflite" in d.stderr()
    finally:
        d.close()
    d = Daemon(["--model", str(model), "--file", "x.wav", "--vad-threshold-db", "-3"])
    try:
        assert d.finish(sig=None) == 2 and "vad.threshold_db must be >= 0" in d.stderr()
    finally:
        d.close()


def test_config_file_sets_options_and_flags_win(tmp_path, model):
    from edge_ser.wav import write_wav

    write_wav(tmp_path / "in.wav", sequence([speechlike(1.0)], gap=2.0)[0], RATE)
    path = tmp_path / "c.toml"
    path.write_text(f'[source]\nfile = "{tmp_path / "in.wav"}"\n[model]\npath = "{model}"\n'
                    '[continuous]\nenabled = true\nwindow_seconds = 2.0\nhop_seconds = 2.0\n')
    d = Daemon(["--config", str(path), "--hop-seconds", "1"])
    try:
        assert d.finish(sig=None) == 0
        assert [w["stream_end"] for w in d.utterances("window")] == [2.0, 3.0, 4.0, 5.0]
    finally:
        d.close()


# ---------------------------------------------------------------------------------------------------
# the microphone: pyaudio -> PortAudio -> ALSA file PCM fed from a FIFO

# A queue far longer than any test's audio: a worker slowed down by a loaded machine only lags (the
# tests wait on stream time, see FifoMic.clip_start), it never drops; dropping is the overload test's.
# A stall is 3 s without audio: a test process starved for a second on a busy machine is not an unplug.
MIC_FLAGS = ["--device", "edgemic", "--stall-seconds", "3", "--retry-max-seconds", "1", "--queue-seconds", "600"]


def wait_heard(d: "Daemon", until: float, timeout: float = 180) -> Dict[str, Any]:
    """The first status event whose stream time (what the worker has processed) is past ``until``."""
    return d.wait_for(lambda e: e["type"] == "status" and e["stream_time"] > until, timeout)


@needs_pyaudio
def test_microphone_end_to_end_same_emotion_as_the_clip_alone(tmp_path, clear_clips):
    with FifoMic(tmp_path, rate=RATE, speed=2.0) as mic:
        d = Daemon(MIC_FLAGS + ["--model", str(SHIPPED_MODEL), "--status-interval", "0.5"], env=mic.env)
        try:
            start = d.status("start")
            assert start["sample_rate"] == RATE and start["source"] == "MicrophoneSource"
            signal_, spans = sequence([c[1] for c in clear_clips])
            mic.play(signal_)
            offset = mic.clip_start(0)  # the stream began before the audio was queued
            wait_heard(d, offset + len(signal_) / RATE)
            assert d.finish() == 0
            events = d.utterances()
            check_utterances(events, [(a + offset, b + offset) for a, b in spans], clear_clips, tolerance=0.8)
            stop = d.events[-1]
            assert stop["event"] == "stop" and stop["reason"] == "SIGTERM"
            assert stop["counters"]["dropped_seconds"] == 0 and stop["counters"]["overflows"] == 0
        finally:
            d.close()


@needs_pyaudio
@pytest.mark.parametrize("rate, channels, extra", [
    (48000, 1, ["--rate", "768000"]),  # refused by PortAudio (-9997): falls back to the device's 48 kHz
    (44100, 2, ["--rate", "44100", "--channels", "2", "--channel", "1"]),
])
def test_microphone_at_48_and_44_1_khz_and_a_stereo_channel(tmp_path, model, rate, channels, extra):
    from edge_ser.resample import resample

    voice, spans = sequence([speechlike(1.5), speechlike(2.0, f0=220), speechlike(1.0, f0=120)], gap=2.5)
    voice = resample(voice, RATE, rate)
    if channels == 2:
        # channel 0 carries a loud steady tone: averaging or picking it would be one endless "utterance"
        tone = 0.3 * np.sin(2 * np.pi * 700 * np.arange(len(voice)) / rate)
        audio = np.stack([tone, voice], axis=1)
    else:
        audio = voice
    with FifoMic(tmp_path, rate=rate, channels=channels, speed=2.0) as mic:
        d = Daemon(MIC_FLAGS + ["--model", str(model), "--status-interval", "0.5"] + extra, env=mic.env)
        try:
            start = d.status("start")
            assert start["sample_rate"] == rate and start["channels"] == channels
            if "768000" in extra:
                assert start["requested_rate"] == 768000
            mic.play(audio)
            offset = mic.clip_start(0)
            wait_heard(d, offset + len(voice) / rate)
            assert d.finish() == 0
            events = d.utterances()
            check_utterances(events, [(a + offset, b + offset) for a, b in spans], tolerance=0.8)
            assert [e["end_reason"] for e in events] == ["silence"] * 3
        finally:
            d.close()


@needs_pyaudio
def test_microphone_lost_and_recovered(tmp_path, model):
    with FifoMic(tmp_path, rate=RATE, speed=2.0) as mic:
        d = Daemon(MIC_FLAGS + ["--model", str(model)], env=mic.env)
        try:
            d.status("start")
            mic.play(sequence([speechlike(1.5)], gap=1.0)[0])
            d.wait_for(lambda e: e["type"] == "utterance", 60)
            mic.unplug()  # the stream stalls; reopening fails while the device is gone
            lost = d.status("device_lost", 30)
            assert "edgemic" in lost["reason"]
            time.sleep(3.0)  # several failed reopen attempts (backoff capped at 1 s)
            assert d.proc.poll() is None  # it never gives up on its own
            assert len([e for e in d.events if e.get("event") == "device_lost"]) == 1
            mic.replug()
            recovered = d.status("device_recovered", 30)
            assert recovered["outage_seconds"] > 2.0
            assert recovered["stream_time"] >= lost["stream_time"] + recovered["outage_seconds"] - 0.5
            mic.play(sequence([speechlike(1.5)], gap=1.0)[0])
            second = d.wait_for(lambda e: e["type"] == "utterance" and e["seq"] > recovered["seq"], 60)
            assert second["stream_start"] > recovered["stream_time"] - 0.5
            assert d.finish() == 0
            stop = d.events[-1]
            assert stop["counters"]["device_losses"] == 1 and stop["counters"]["utterances"] == 2
            assert stop["counters"]["gaps"] == 1
            # the failed reopens while unplugged printed nothing from ALSA/PortAudio, only our log lines
            assert d.native_noise() == []
            assert "device lost" in d.stderr() and "device recovered" in d.stderr()
        finally:
            d.close()


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


@needs_pyaudio
def test_a_driver_that_hangs_every_stream_leaks_no_threads_and_recovers(tmp_path, model):
    """Reads block forever (device present, no data): each stuck stream is abandoned after
    1 s, at most 3 are kept waiting, and once data flows again everything recovers."""
    with FifoMic(tmp_path, rate=RATE, speed=1.0) as mic:
        d = Daemon(MIC_FLAGS + ["--model", str(model), "--status-interval", "0.5"], env=mic.env)
        try:
            d.status("start")
            d.wait_for(lambda e: e.get("event") == "periodic", 30)
            before = thread_count(d.proc.pid)
            mic.stall()
            d.status("device_lost", 30)
            d.wait_for(lambda e: e.get("counters", {}).get("abandoned_streams", 0) >= 3, 60)
            time.sleep(6.0)  # several more retry periods: refused while 3 are stuck
            last = [e for e in d.events if e.get("event") == "periodic"][-1]
            assert last["counters"]["abandoned_streams"] == 3
            assert thread_count(d.proc.pid) <= before + 3 * 2  # each stuck stream: its thread + our closer
            mic.resume()
            recovered = d.status("device_recovered", 60)
            mic.play(sequence([speechlike(1.5)], gap=1.0)[0])
            d.wait_for(lambda e: e["type"] == "utterance" and e["seq"] > recovered["seq"], 60)
            assert d.finish() == 0
            assert len([e for e in d.events if e.get("event") == "device_lost"]) == 1
        finally:
            d.close()


@needs_pyaudio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_in_the_middle_of_speech_still_classifies_it(tmp_path, model, sig):
    with FifoMic(tmp_path, rate=RATE, speed=1.0) as mic:
        # (utterances longer than all the speech: however much is queued at the stop, it is one)
        d = Daemon(MIC_FLAGS + ["--model", str(model), "--status-interval", "0.25", "--max-utterance-seconds", "60"],
                   env=mic.env)
        try:
            d.status("start")
            mic.play(speechlike(30.0))
            # wait until the daemon has heard a few seconds of it, then stop it mid-sentence
            wait_heard(d, mic.clip_start(0) + 3.5)
            sent = time.monotonic()
            assert d.finish(sig) == 0
            exit_seconds = time.monotonic() - sent
            (partial,) = d.utterances()
            assert partial["end_reason"] == "stop"
            assert partial["duration"] > 2.0
            assert d.events[-1]["event"] == "stop" and d.events[-1]["reason"] == signal.Signals(sig).name
            print(f"exit after {signal.Signals(sig).name}: {exit_seconds:.2f} s")  # for the report; not asserted
        finally:
            d.close()


@needs_pyaudio
@pytest.mark.skipif(not shutil.which("arecord"), reason="arecord (alsa-utils) is not installed; make test installs it")
def test_arecord_piped_into_stdin_mode(tmp_path, model):
    """The documented pipeline: arecord -f S16_LE -r 16000 -c 1 -t raw | edge-ser listen --stdin."""
    with FifoMic(tmp_path, rate=RATE, speed=2.0) as mic:
        env = dict(os.environ, **mic.env)
        arecord = subprocess.Popen(["arecord", "-q", "-D", "edgemic", "-f", "S16_LE", "-r", "16000", "-c", "1",
                                    "-t", "raw"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        d = Daemon(["--stdin", "--model", str(model)], stdin=arecord.stdout)
        arecord.stdout.close()  # the daemon holds the read end now
        try:
            d.status("start")
            signal_, spans = sequence([speechlike(1.5), speechlike(1.0, f0=200)], gap=2.0)
            mic.play(signal_)
            assert mic.wait_played(60)
            d.wait_for(lambda e: e["type"] == "utterance" and e["seq"] >= 3, 60)
            time.sleep(1.0)
            arecord.terminate()  # end of the pipe: the daemon finishes by itself
            arecord.wait(10)
            assert d.finish(sig=None) == 0
            assert len(d.utterances()) == 2
            assert d.events[-1]["reason"] == "end_of_stream"
        finally:
            if arecord.poll() is None:
                arecord.kill()
            d.close()


@needs_pyaudio
def test_overloaded_worker_drops_the_oldest_audio_and_counts_it(tmp_path, model):
    """A plain-file PCM delivers audio thousands of times faster than real time: the worker
    cannot keep up, the tiny queue drops the oldest audio, and memory stays flat."""
    env = file_mic_env(tmp_path, np.concatenate([speechlike(2.0), quiet_room(2.0)] * 30), RATE, "fastmic")
    d = Daemon(["--device", "fastmic", "--model", str(model), "--queue-seconds", "0.3",
                "--status-interval", "0.5"], env=env)
    try:
        d.status("start")
        d.wait_for(lambda e: e.get("event") == "periodic", 30)
        first_rss = rss_kb(d.proc.pid)
        periodic = []
        while len(periodic) < 6:
            d.wait_for(lambda e: e.get("event") == "periodic" and e["seq"] > (periodic[-1]["seq"] if periodic else 0), 30)
            periodic = [e for e in d.events if e.get("event") == "periodic"][1:]
        last_rss = rss_kb(d.proc.pid)
        assert d.finish() == 0
        counters = d.events[-1]["counters"]
        # dropped, not buffered: the capture outruns the worker, so most audio is dropped (how much
        # more depends on the two threads' relative speed on this machine: 7x to 20x was seen)
        assert counters["dropped_seconds"] > counters["audio_seconds"] > 0
        assert counters["queue_peak_seconds"] <= 0.3 + 0.1
        # every lost second is carried by the chunk after it, so this holds exactly (3-decimal rounding)
        assert counters["stream_time"] == pytest.approx(counters["audio_seconds"] + counters["dropped_seconds"],
                                                        abs=0.002)
        dropped = [e["counters"]["dropped_seconds"] for e in periodic]
        assert dropped == sorted(dropped) and dropped[-1] > dropped[0]  # counted as it happens
        assert counters["gaps"] > 0
        assert last_rss - first_rss < 40_000, (first_rss, last_rss)  # kB: bounded, not growing with input
    finally:
        d.close()


@needs_pyaudio
def test_devices_lists_the_alsa_capture_pcm(tmp_path):
    with FifoMic(tmp_path, rate=RATE) as mic:
        d = Daemon(["--json"], env=mic.env, command="devices")
        try:
            assert d.finish(sig=None) == 0
            names = {e["name"]: e for e in d.events}
            assert "edgemic" in names
            assert names["edgemic"]["channels"] >= 1 and names["edgemic"]["default_rate"] > 0
        finally:
            d.close()


# ---------------------------------------------------------------------------------------------------
# systemd

def test_sd_notify_ready_watchdog_and_stopping(tmp_path, model):
    from edge_ser.wav import write_wav

    write_wav(tmp_path / "in.wav", sequence([speechlike(1.0)], gap=1.0)[0], RATE)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(tmp_path / "notify.sock"))
    server.settimeout(20)
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--realtime", "--model", str(model)],
               env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"})
    try:
        messages = []
        while not messages or not messages[-1].startswith("STOPPING=1"):
            messages.append(server.recv(4096).decode())
        assert d.finish(sig=None) == 0
        assert messages[0].startswith("READY=1")
        assert messages.count("WATCHDOG=1") >= 3  # every 0.1 s for about 3 s
        assert "READY=1" not in "".join(messages[1:])
        start = d.events[0]
        assert start["event"] == "start"  # READY came with (after) the model load and the source open
    finally:
        server.close()
        d.close()


# ---------------------------------------------------------------------------------------------------
# soak

@pytest.mark.slow
def test_one_hour_of_audio_accelerated_counts_every_utterance_and_memory_stays_flat(tmp_path, model):
    """60 minutes of synthesized speech (one utterance every 10 s, varied lengths) through the
    file source as fast as possible: one event per utterance, RSS flat."""
    import wave

    path = tmp_path / "hour.wav"
    rng = np.random.default_rng(5)
    expected = 0
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for minute in range(60):
            block = quiet_room(60.0, seed=minute)
            for k in range(6):
                length = float(rng.uniform(0.8, 6.0))
                start = int((k * 10 + 1.5) * RATE)
                block[start: start + int(length * RATE)] += speechlike(length, f0=float(rng.uniform(100, 250)))
                expected += 1
            w.writeframes(to_pcm16(block))
    d = Daemon(["--file", str(path), "--model", str(model), "--status-interval", "0.1"])
    try:
        samples = []
        while d.proc.poll() is None:
            try:
                samples.append((d.events[-1]["counters"]["stream_time"] if d.events and "counters" in d.events[-1]
                                else 0.0, rss_kb(d.proc.pid)))
            except (FileNotFoundError, ProcessLookupError, AssertionError):
                break
            time.sleep(0.05)
        assert d.finish(sig=None, timeout=600) == 0
        events = d.utterances()
        assert len(events) == expected == 360
        stop = d.events[-1]["counters"]
        assert stop["stream_time"] == pytest.approx(3600.0, abs=0.1)
        assert stop["discarded"] == 0 and stop["dropped_seconds"] == 0
        mid = [rss for t, rss in samples if 600 <= t <= 1200]
        late = [rss for t, rss in samples if t >= 3000]
        if mid and late:  # (a very fast machine may not be sampled in both ranges)
            assert max(late) - min(mid) < 20_000, (min(mid), max(late))  # kB
        print(f"soak: {len(samples)} RSS samples; 600-1200 s: {min(mid, default=0)}..{max(mid, default=0)} kB, "
              f">= 3000 s: {min(late, default=0)}..{max(late, default=0)} kB; "
              f"latency median {np.median([e['latency_ms'] for e in events]):.1f} ms")
    finally:
        d.close()


# ---------------------------------------------------------------------------------------------------
# the MQTT output plugged into the daemon's sinks

def test_events_also_reach_an_mqtt_broker(tmp_path, model):
    pytest.importorskip("paho.mqtt", reason="paho-mqtt is needed for the MQTT output; make test installs it")
    from mosquitto import Mosquitto, Subscriber, mosquitto_binary
    from edge_ser.wav import write_wav

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed; make test installs it")
    write_wav(tmp_path / "in.wav", sequence([speechlike(1.0), speechlike(1.5)], gap=2.0)[0], RATE)
    broker = Mosquitto(tmp_path / "broker").start()
    watcher = Subscriber(broker, ["edge-ser/test/#"])
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ntopic_prefix = "edge-ser/test"\n'
                      'discovery = false\n')
    d = Daemon(["--config", str(config), "--file", str(tmp_path / "in.wav"), "--model", str(model)])
    try:
        assert d.finish(sig=None) == 0
        watcher.barrier()
        published = [json.loads(p) for p in watcher.payloads("edge-ser/test/event")]
        assert published == d.utterances() and len(published) == 2
        daemon_topic = [json.loads(p)["event"] for p in watcher.payloads("edge-ser/test/daemon")]
        assert daemon_topic == ["start", "stop"]
    finally:
        d.close()
        watcher.close()
        broker.stop()


def test_web_dashboard_serves_the_daemon_events_and_level(tmp_path, model):
    import urllib.request

    from edge_ser.wav import write_wav

    if importlib.util.find_spec("edge_ser.outputs.http") is None:
        pytest.skip("the HTTP output is not there")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_wav(tmp_path / "in.wav", np.concatenate([sequence([speechlike(1.0)], gap=1.0)[0], quiet_room(30.0)]), RATE)
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--realtime", "--model", str(model),
                "--http", f"127.0.0.1:{port}"])

    def get(path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return json.loads(reply.read())

    try:
        event = d.wait_for(lambda e: e["type"] == "utterance", 60)
        stored = get("/api/events")["events"]
        assert event in [{k: v for k, v in e.items() if k != "id"} for e in stored] or event in stored
        status = get("/api/status")
        assert status["counters"]["utterances"] == 1  # live counters from the listener
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/stream", timeout=5) as stream:
            levels = []
            while len(levels) < 3:
                line = stream.readline().decode()
                if line.startswith("data:") and '"level"' in line:
                    levels.append(json.loads(line[5:]))
        assert all(lv["type"] == "level" and -120 <= lv["level_db"] < -40 and not lv["speech"] for lv in levels)
        assert levels[1]["stream_time"] > levels[0]["stream_time"]
        assert d.finish() == 0
    finally:
        d.close()


def test_max_seconds_stops_at_that_stream_time_and_closes_the_utterance(tmp_path, model):
    from edge_ser.wav import write_wav

    write_wav(tmp_path / "in.wav", np.concatenate([quiet_room(1.0), speechlike(8.0), quiet_room(1.0)]), RATE)
    d = Daemon(["--file", str(tmp_path / "in.wav"), "--model", str(model), "--max-seconds", "4.5"])
    try:
        assert d.finish(sig=None) == 0
        (event,) = d.utterances()
        assert event["end_reason"] == "stop" and event["stream_end"] <= 4.5
        stop = d.events[-1]
        assert stop["reason"] == "max_seconds" and stop["counters"]["stream_time"] == 4.5
    finally:
        d.close()
