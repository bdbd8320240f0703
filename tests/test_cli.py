"""The real ``edge-ser`` command in subprocesses: output, exit codes, bad input, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_ser import __version__
from edge_ser.wav import wav_bytes, write_wav
from runtime_fixtures import ROOT, espeak_wav, noise, run_edge_ser, test_models, tone  # noqa: F401

CORPUS_CLIPS = ("Actor_01/03-01-01-01-01-01-01.wav", "Actor_02/03-01-05-02-01-01-02.wav",
                "Actor_24/03-01-03-02-02-02-24.wav")


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr


def _json_lines(text: str):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def model(test_models) -> str:
    return str(test_models["int8"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    """Good and bad clips side by side, as a user's folder would have them."""
    d = tmp_path_factory.mktemp("batch")
    good = wav_bytes(tone(2.0), 16000)
    files = {
        "good_tone.wav": good,
        "good_noise_44k.wav": wav_bytes(noise(1.5, rate=44100), 44100, sample_format="pcm24"),
        "not_a_wav.wav": b"just some text\n" * 10,
        "corrupt_header.wav": b"RIFF" + b"\xff\x00" * 40,
        # WAVE_FORMAT_ALAW (6) in an otherwise valid header
        "alaw.wav": good[:20] + struct.pack("<H", 6) + good[22:],
        "truncated_header.wav": good[:30],
        # data cut mid-way: decodable up to where the file ends
        "truncated_data.wav": good[: len(good) // 2 + 1],
        "empty_data.wav": wav_bytes(np.zeros(0, np.float32), 16000),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {"dir": d, "good": ["good_tone.wav", "good_noise_44k.wav", "truncated_data.wav", "empty_data.wav"],
            "bad": ["not_a_wav.wav", "corrupt_header.wav", "alaw.wav", "truncated_header.wav"]}


def test_version_and_help():
    proc = run_edge_ser(["--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"edge-ser {__version__}"
    proc = run_edge_ser(["classify", "--help"])
    assert proc.returncode == 0 and "examples:" in proc.stdout and "edge-ser classify -" in proc.stdout


@pytest.mark.parametrize("args", [[], ["classify"], ["classify", "x.wav", "--top-k", "0"],
                                  ["classify", "x.wav", "--threads", "many"], ["frobnicate"],
                                  ["classify", "-", "-"]])
def test_usage_errors_exit_2(args, model):
    proc = run_edge_ser(args + (["--model", model] if args[:1] == ["classify"] else []))
    assert proc.returncode == 2, proc
    assert "usage:" in proc.stderr
    _no_traceback(proc)


def test_corpus_clips_table(model, ravdess_dir):
    paths = [str(ravdess_dir / c) for c in CORPUS_CLIPS]
    proc = run_edge_ser(["classify", "--model", model, "--top-k", "3", *paths])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["FILE", "EMOTION", "CONF", "DURATION", "#2", "#3"]
    assert len(lines) == 1 + len(paths)
    for path, line in zip(paths, lines[1:]):
        cells = line.split()
        assert cells[0] == path
        assert cells[1] in ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
        assert cells[2].endswith("%") and cells[3].endswith("s")
        assert len(cells) == 8  # two more "label pct" pairs
    _no_traceback(proc)


def test_bad_files_are_reported_and_the_good_ones_still_classified(model, batch):
    d = batch["dir"]
    names = sorted(batch["good"] + batch["bad"])
    proc = run_edge_ser(["classify", "--model", model, *[str(d / n) for n in names]])
    assert proc.returncode == 1
    _no_traceback(proc)
    rows = proc.stdout.splitlines()[1:]
    assert sorted(Path(r.split()[0]).name for r in rows) == sorted(batch["good"])
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == len(batch["bad"]), proc.stderr
    for line in errors:
        assert line.startswith("edge-ser: error: ")
    by_name = {Path(line.split(": ")[2]).name: line for line in errors}
    assert "not a RIFF/WAVE file" in by_name["not_a_wav.wav"]
    assert "A-law" in by_name["alaw.wav"]
    assert set(by_name) == set(batch["bad"])


def test_json_lines_with_errors_windows_and_top_k(model, batch):
    d = batch["dir"]
    names = ["good_tone.wav", "alaw.wav", "missing.wav", "good_noise_44k.wav"]
    proc = run_edge_ser(["classify", "--json", "--windows", "--top-k", "2", "--model", model,
                         *[str(d / n) for n in names]])
    assert proc.returncode == 1
    _no_traceback(proc)
    objs = _json_lines(proc.stdout)
    assert [Path(o["source"]).name for o in objs] == names  # input order kept, errors in place
    ok = [o for o in objs if "error" not in o]
    failed = [o for o in objs if "error" in o]
    assert [Path(o["source"]).name for o in failed] == ["alaw.wav", "missing.wav"]
    assert "No such file" in failed[1]["error"] or "not found" in failed[1]["error"]
    for o in ok:
        assert o["label"] in o["probabilities"] and len(o["probabilities"]) == 8
        assert o["confidence"] == o["probabilities"][o["label"]]
        assert [t["label"] for t in o["top"]][0] == o["label"] and len(o["top"]) == 2
        assert o["windows"] and o["model"].startswith("edge-ser-test@test-1#")
    assert ok[1]["duration"] == pytest.approx(1.5, abs=1e-3)


def test_folder_walk_is_sorted_recursive_and_case_insensitive(model, tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    write_wav(tmp_path / "b" / "z.WAV", tone(1.0), 16000)
    write_wav(tmp_path / "a.wav", tone(1.2), 16000)
    write_wav(tmp_path / "c.Wav", tone(0.8), 8000)
    write_wav(tmp_path / ".hidden" / "x.wav", tone(1.0), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    proc = run_edge_ser(["classify", "--json", "--model", model, str(tmp_path)])
    assert proc.returncode == 0, proc.stderr
    sources = [Path(o["source"]).relative_to(tmp_path).as_posix() for o in _json_lines(proc.stdout)]
    assert sources == ["a.wav", "b/z.WAV", "c.Wav"]
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_edge_ser(["classify", "--model", model, str(empty), str(tmp_path / "a.wav")])
    assert proc.returncode == 1 and "folder contains no .wav files" in proc.stderr
    assert len(proc.stdout.splitlines()) == 2  # header + a.wav
    _no_traceback(proc)


def test_stdin_and_espeak_speech(model, tmp_path):
    speech = espeak_wav("The dogs are sitting by the door.", tmp_path / "speech.wav")
    data = speech.read_bytes()
    proc = run_edge_ser(["classify", "--json", "--model", model, "-"], stdin=data)
    assert proc.returncode == 0, proc.stderr
    from_stdin = _json_lines(proc.stdout)[0]
    assert from_stdin["source"] == "<stdin>"
    proc = run_edge_ser(["classify", "--json", "--model", model, str(speech)])
    assert _json_lines(proc.stdout)[0]["probabilities"] == from_stdin["probabilities"]
    proc = run_edge_ser(["classify", "--model", model, "-"], stdin=b"garbage")
    assert proc.returncode == 1 and proc.stderr.startswith("edge-ser: error: <stdin>: ")
    _no_traceback(proc)


@pytest.mark.parametrize(
    "which, message",
    [
        ("missing", "model file not found"),
        ("no_metadata", "has no edge-ser metadata"),
        ("wrong_labels", "does not match the metadata's 6 labels"),
        ("wrong_window", "input tensor shape [1, 300, 64, 1] does not match the metadata"),
    ],
)
def test_bad_models_give_one_line_and_exit_1(which, message, test_models, batch, tmp_path):
    path = str(tmp_path / "missing.tflite") if which == "missing" else str(test_models[which])
    for command in (["classify", str(batch["dir"] / "good_tone.wav"), "--model", path], ["info", path]):
        proc = run_edge_ser(command)
        assert proc.returncode == 1
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert proc.stdout == ""
        _no_traceback(proc)


def test_no_default_model_lists_where_it_looked(batch, tmp_path):
    if (ROOT / "models" / "edge-ser-int8.tflite").is_file():
        env = {"EDGE_SER_MODEL": str(tmp_path / "none.tflite")}
        expect = "EDGE_SER_MODEL="
    else:
        env = {"EDGE_SER_MODEL": ""}
        expect = str(ROOT / "models" / "edge-ser-int8.tflite")
    proc = run_edge_ser(["classify", str(batch["dir"] / "good_tone.wav")], env=env)
    assert proc.returncode == 1 and expect in proc.stderr
    _no_traceback(proc)


def test_unavailable_backend_is_one_line(model, batch):
    proc = run_edge_ser(["classify", str(batch["dir"] / "good_tone.wav"), "--model", model, "--backend", "onnx"])
    assert proc.returncode == 1 and "unknown interpreter backend 'onnx'" in proc.stderr
    _no_traceback(proc)


def test_info_table_and_json(model):
    proc = run_edge_ser(["info", model])
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for expected in ("labels         neutral, calm, happy, sad, angry, fearful, disgust, surprised (8)",
                     "input tensor   int8 [1, 300, 64, 1]  scale", "output tensor  int8 [1, 8]  scale 0.00390625  zero-point -128",
                     "window         300 frames (3.00 s), hop 100 frames (1.00 s)", "metrics.uar    0.125",
                     "size           4."):
        assert expected in text, text
    info = json.loads(run_edge_ser(["info", "--json", model]).stdout)
    assert info["labels"][0] == "neutral" and info["input"]["shape"] == [1, 300, 64, 1]
    assert len(info["feature_config_hash"]) == 16 and info["backend"]["name"]


def test_bench_prints_a_table_and_writes_results(model, tmp_path):
    out = tmp_path / "bench.json"
    proc = run_edge_ser(["bench", "--model", model, "--seconds", "1", "--repeat", "2", "--output", str(out)])
    assert proc.returncode == 0, proc.stderr
    assert "median ms" in proc.stdout and "inference" in proc.stdout
    report = json.loads(out.read_text())
    assert [s["stage"].split()[0] for s in report["stages"]] == ["decode", "decode", "features", "inference", "end"]
    assert all(s["median_ms"] > 0 for s in report["stages"])


def _blocked_reading_stdin(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        pytest.skip("/proc/PID/syscall is not readable here")
    # x86_64 read() is syscall 0, aarch64 is 63; the first argument is the fd (0 = stdin)
    return len(fields) > 1 and fields[0] in ("0", "63") and int(fields[1], 16) == 0


def test_ctrl_c_exits_130_quietly(model):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # A shell without job control starts background commands with SIGINT ignored, and a child
    # inherits that (`nohup make test &` did): give the CLI the default disposition a terminal gives.
    proc = subprocess.Popen([sys.executable, "-m", "edge_ser", "classify", "--model", model, "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not _blocked_reading_stdin(proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        # wait with stdin still open: communicate() would close it at once, and a loaded machine can
        # then hand the reader an end of file before the signal, which is a different (valid) run
        proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    assert proc.returncode == 130, err[-2000:]
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err


def test_shipped_model_on_corpus_clips(repo_root, ravdess_dir):
    shipped = repo_root / "models" / "edge-ser-int8.tflite"
    if not shipped.is_file():
        pytest.skip("models/edge-ser-int8.tflite is not there yet")
    paths = [str(ravdess_dir / c) for c in CORPUS_CLIPS]
    proc = run_edge_ser(["classify", "--json", *paths], env={"EDGE_SER_MODEL": ""})
    assert proc.returncode == 0, proc.stderr
    objs = _json_lines(proc.stdout)
    assert len(objs) == len(paths) and all(len(o["probabilities"]) == 8 for o in objs)


def test_daemon_subcommands_are_registered_when_the_daemon_exists():
    if not (ROOT / "edge_ser" / "daemon" / "cli.py").is_file():
        pytest.skip("edge_ser/daemon/cli.py does not exist (yet)")
    proc = run_edge_ser(["--help"])
    assert proc.returncode == 0, proc.stderr
    assert "listen" in proc.stdout and "devices" in proc.stdout
    proc = run_edge_ser(["devices", "--help"])
    assert proc.returncode == 0 and "usage: edge-ser devices" in proc.stdout


# ---------------------------------------------------------------------------------------
# Special files, unreadable folders, --top-k, a closed stdout (issue 11)


def test_fifo_in_a_folder_is_skipped_and_reported(model, tmp_path):
    """A FIFO named *.wav used to block the folder walk forever (nobody writes to it)."""
    write_wav(tmp_path / "a.wav", tone(1.0), 16000)
    os.mkfifo(tmp_path / "pipe.wav")
    proc = run_edge_ser(["classify", "--model", model, str(tmp_path)], timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[1].split()[0] == str(tmp_path / "a.wav")
    assert proc.stderr.strip() == f"edge-ser: {tmp_path / 'pipe.wav'}: skipped: a FIFO, not a regular file " \
                                  "(name it on the command line to read it)"
    proc = run_edge_ser(["classify", "--json", "--model", model, str(tmp_path)], timeout=60)
    assert [Path(o["source"]).name for o in _json_lines(proc.stdout)] == ["a.wav"]
    assert "pipe.wav: skipped: a FIFO" in proc.stderr


def test_a_fifo_named_on_the_command_line_is_read(model, tmp_path):
    import threading

    fifo = tmp_path / "live.wav"
    os.mkfifo(fifo)
    data = wav_bytes(tone(1.5), 16000)

    def feed() -> None:
        try:
            with open(fifo, "wb") as f:  # blocks until the CLI opens it
                f.write(data)
        except OSError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        proc = run_edge_ser(["classify", "--json", "--model", model, str(fifo)], timeout=60)
    finally:
        if writer.is_alive():  # the CLI never opened it: release the writer
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(5)
    assert proc.returncode == 0, proc.stderr
    (obj,) = _json_lines(proc.stdout)
    assert obj["source"] == str(fifo) and obj["duration"] == pytest.approx(1.5, abs=1e-3)


def _without_root_powers() -> list:
    """A command prefix under which permission bits apply (root bypasses them)."""
    if os.geteuid() != 0:
        return []
    import shutil

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and util-linux's setpriv is not installed: cannot drop CAP_DAC_*")
    # uid 0 stays the owner of everything (the interpreter under /root stays usable), but without
    # these two capabilities a mode-000 folder really is unreadable
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


def test_unreadable_folder_says_permission_denied(model, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    write_wav(locked / "a.wav", tone(1.0), 16000)
    outer = tmp_path / "outer"
    (outer / "sub").mkdir(parents=True)
    write_wav(outer / "ok.wav", tone(1.0), 16000)
    write_wav(outer / "sub" / "b.wav", tone(1.0), 16000)
    locked.chmod(0)
    (outer / "sub").chmod(0)
    try:
        cmd = [*_without_root_powers(), sys.executable, "-m", "edge_ser", "classify", "--model", model,
               str(locked), str(outer)]
        raw = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
    finally:
        locked.chmod(0o755)
        (outer / "sub").chmod(0o755)
    _no_traceback(raw)
    assert raw.returncode == 1
    assert raw.stderr.splitlines() == [f"edge-ser: error: {locked}: cannot read folder: Permission denied",
                                       f"edge-ser: error: {outer / 'sub'}: cannot read folder: Permission denied"]
    assert [line.split()[0] for line in raw.stdout.splitlines()[1:]] == [str(outer / "ok.wav")]


def test_top_k_beyond_the_label_count_is_clamped(model, batch):
    clip = str(batch["dir"] / "good_tone.wav")
    proc = run_edge_ser(["classify", "--model", model, "--top-k", "50", clip])
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()
    assert header.split() == ["FILE", "EMOTION", "CONF", "DURATION", *[f"#{i}" for i in range(2, 9)]]
    assert len(row.split()) == 4 + 2 * 7  # every column filled: "label pct" pairs for #2..#8
    proc = run_edge_ser(["classify", "--json", "--model", model, "--top-k", "50", clip])
    assert len(_json_lines(proc.stdout)[0]["top"]) == 8


def test_no_table_header_when_every_input_failed(model, batch):
    d = batch["dir"]
    proc = run_edge_ser(["classify", "--model", model, str(d / "not_a_wav.wav"), str(d / "alaw.wav")])
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 2
    _no_traceback(proc)


@pytest.mark.parametrize("command", [["info"], ["classify"]])
def test_closed_stdout_exits_141_quietly(command, model, batch):
    """``edge-ser info | head -3``: the reader is gone; exit like cat/git do (128 + SIGPIPE), no noise."""
    args = [*command, model] if command == ["info"] else \
        [*command, "--model", model, *[str(batch["dir"] / n) for n in batch["good"]]]
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the CLI starts: its first write meets EPIPE, whatever the timing
    try:
        proc = subprocess.run([sys.executable, "-m", "edge_ser", *args], stdout=write_end, stderr=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=str(ROOT), timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == b""
