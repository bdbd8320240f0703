#!/usr/bin/env python3
"""edge-ser benchmark: what the device path costs, next to the ways it replaces.

Runs unchanged on a Raspberry Pi: it needs only the stdlib, numpy and edge_ser. Each
comparison (librosa, python_speech_features, the ancestor's TensorFlow/Keras pipeline,
valgrind) runs only when its tool is importable/installed and says "n/a" otherwise.

Three parts, one per issue they answer:

* **frontend**: feature extraction per clip (edge_ser vs librosa vs
  python_speech_features at matched settings), streaming cost per second of audio, and a
  cold process (import + decode + features) with its peak memory;
* **runtime**: a cold ``edge-ser classify one.wav`` process against the ancestor's way
  (librosa features + a Keras CNN of the ancestor's size loaded with TensorFlow),
  measured side by side in this run; steady-state latency of a 3 s clip; instructions
  per second of audio under callgrind, to estimate what a Pi pays;
* **daemon**: ``edge-ser listen --file`` on a few minutes of speech: CPU time per second
  of audio (real-time factor), event latency and peak memory.

Cold processes are measured from outside: wall time around the child, and the child's
own ``ru_maxrss``/CPU times from ``os.wait4``. In-process timings are medians after a
warm-up. The table goes to stdout and, as markdown and JSON, to
``device/results/bench-<hostname>.md/.json`` (``--out`` to change the folder).

    python device/bench.py                 # full run (minutes)
    python device/bench.py --quick --out /tmp/bench   # smoke run (seconds)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edge_ser.atomic_write import write_bytes_atomically  # noqa: E402
from edge_ser.features import StreamingFeatures, log_mel, preset  # noqa: E402
from edge_ser.wav import write_wav  # noqa: E402
from edge_ser.speechlike import speechlike  # noqa: E402

RATE = 16000
NA = "n/a"
OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
REEXEC_MARK = "EDGE_SER_BENCH_REEXEC"
RAVDESS = Path(os.environ.get("EDGE_SER_SHARED", REPO.parent / "shared")) / "datasets" / "ravdess"

# The device budget of the room-ready model (issue 12).
BUDGET_BYTES = 1_000_000
BUDGET_WINDOW_MS = 5.0
BUDGET_COLD_S = 0.25
BUDGET_COLD_MB = 70.0

# The ancestor's recipe (see edge_ser.features PRESETS["seed"]) and model input.
ANCESTOR_FRAMES = 126
ANCESTOR_MELS = 128


# ---------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does; ``--quick`` shrinks everything."""

    repeat_features: int
    repeat_steady: int
    cold_runs: int
    daemon_seconds: float
    callgrind: bool
    daemon_realtime_seconds: float

    @classmethod
    def for_mode(cls, quick: bool) -> "Sizes":
        if quick:
            return cls(repeat_features=3, repeat_steady=3, cold_runs=1, daemon_seconds=8.0, callgrind=False,
                       daemon_realtime_seconds=0.0)
        return cls(repeat_features=30, repeat_steady=200, cold_runs=5, daemon_seconds=180.0, callgrind=True,
                   daemon_realtime_seconds=60.0)


# ---------------------------------------------------------------------------------------
# Measuring


def median_ms(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, int(np.ceil(q / 100.0 * len(ordered))))
    return float(ordered[rank - 1])


@dataclass
class ProcessRun:
    """One child process, measured from outside."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# Peak RSS must be measured in a child forked from a *small* process: Linux keeps the
# larger of the pre-exec and post-exec high-water marks in ru_maxrss, and a child
# forked from this benchmark (hundreds of MB once librosa is imported) would report the
# benchmark's size. So every measured command is started by this launcher, a fresh
# Python of ~10 MB, which forks the command, waits for it with wait4 and writes the
# child's own wall time, CPU time and ru_maxrss to a file. (python -c pass is the floor.)
LAUNCHER = textwrap.dedent("""
    import json, os, sys, time
    result, out, err, stdin = sys.argv[1:5]
    cmd = sys.argv[5:]
    fds = (os.open(stdin, os.O_RDONLY), os.open(out, os.O_WRONLY), os.open(err, os.O_WRONLY))
    start = time.perf_counter()
    pid = os.posix_spawn(cmd[0], cmd, os.environ, file_actions=[
        (os.POSIX_SPAWN_DUP2, fds[0], 0), (os.POSIX_SPAWN_DUP2, fds[1], 1), (os.POSIX_SPAWN_DUP2, fds[2], 2)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    with open(result, "w") as fh:
        json.dump({"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "max_rss_kb": usage.ru_maxrss, "returncode": os.waitstatus_to_exitcode(status)}, fh)
""")


def run_process(cmd: Sequence[str], env: Dict[str, str], timeout: float = 900.0,
                stdin_path: Optional[Path] = None) -> ProcessRun:
    """Run ``cmd`` through :data:`LAUNCHER`; its wall time, CPU time, peak RSS and output.

    Output goes to temporary files, not pipes, so a chatty child never blocks.
    """
    executable = shutil.which(cmd[0], path=env.get("PATH")) or cmd[0]
    with tempfile.TemporaryDirectory(prefix="edge-ser-run-") as tmp:
        result, out, err = Path(tmp, "result.json"), Path(tmp, "stdout"), Path(tmp, "stderr")
        out.touch()
        err.touch()
        stdin = str(stdin_path) if stdin_path else os.devnull
        launcher = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(result), str(out), str(err), stdin, executable, *cmd[1:]],
            env=env, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if launcher.returncode != 0 or not result.is_file():
            raise RuntimeError(f"launcher failed for {cmd[0]}: {launcher.stderr.decode(errors='replace')[-500:]}")
        data = json.loads(result.read_text())
        return ProcessRun(
            wall_s=data["wall_s"],
            cpu_s=data["cpu_s"],
            max_rss_mb=data["max_rss_kb"] / 1024.0,  # kilobytes on Linux
            returncode=data["returncode"],
            stdout=out.read_text(errors="replace"),
            stderr=err.read_text(errors="replace"),
        )


def cold_runs(cmd: Sequence[str], env: Dict[str, str], runs: int, what: str) -> Dict[str, Any]:
    """``runs`` cold processes: median wall and CPU, largest peak RSS; failures reported."""
    results = [run_process(cmd, env) for _ in range(max(1, runs))]
    failed = [r for r in results if r.returncode != 0]
    if failed:
        tail = failed[0].stderr.strip().splitlines()[-3:]
        return {"error": f"{what}: exit {failed[0].returncode}: " + " | ".join(tail)}
    return {
        "wall_s": statistics.median(r.wall_s for r in results),
        "cpu_s": statistics.median(r.cpu_s for r in results),
        "max_rss_mb": max(r.max_rss_mb for r in results),
        "runs": len(results),
    }


def child_env(extra_path: Sequence[str] = ()) -> Dict[str, str]:
    """The environment for measured children: this checkout first on PYTHONPATH.

    A ``PYTHONDONTWRITEBYTECODE`` in the caller's environment is not passed on. An installed
    package has its bytecode (pip compiles it at install), so a device's cold start never compiles
    edge_ser's source; a checkout run without bytecode would, on every cold process (about 60 ms
    of a 250 ms cold classify on a 2-core EPYC VM). The first cold run writes the bytecode and the
    median of the runs does not count it.
    """
    env = dict(os.environ)
    env.pop(REEXEC_MARK, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    parts = [str(REPO), *extra_path]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------------------
# Inputs


def make_inputs(work: Path, daemon_seconds: float) -> Dict[str, Path]:
    """WAV files for the runs: 3 s and 30 s speech-like clips, and the daemon's long file.

    The daemon file is RAVDESS utterances back to back when the corpus is there (real
    speech with the corpus's own pauses), otherwise speech-like synthesis.
    """
    work.mkdir(parents=True, exist_ok=True)
    files = {"clip3": work / "clip-3s.wav", "clip30": work / "clip-30s.wav"}
    write_wav(files["clip3"], speechlike(3.0, seed=3), RATE)
    write_wav(files["clip30"], speechlike(30.0, seed=30), RATE)
    files["daemon"] = work / "daemon-input.wav"
    audio, source = daemon_audio(daemon_seconds)
    write_wav(files["daemon"], audio, RATE)
    files["daemon_source"] = Path(source)
    return files


def daemon_audio(seconds: float) -> Tuple[np.ndarray, str]:
    target = int(seconds * RATE)
    clips = sorted(RAVDESS.glob("Actor_*/*.wav")) if RAVDESS.is_dir() else []
    if clips:
        from edge_ser.audio import load_audio

        pieces: List[np.ndarray] = []
        total = 0
        # One clip per (actor, emotion) in turn, 0.5 s of quiet between them.
        step = max(1, len(clips) // 97)
        gap = np.zeros(RATE // 2, dtype=np.float32)
        for path in clips[::step]:
            samples, _ = load_audio(path, RATE)
            pieces += [samples, gap]
            total += samples.size + gap.size
            if total >= target:
                break
        audio = np.concatenate(pieces)[:target]
        if audio.size >= target:
            return audio, f"RAVDESS utterances ({len(pieces) // 2} clips) with 0.5 s gaps"
    return speechlike(seconds, seed=7), "speech-like synthesis (no corpus found)"


# ---------------------------------------------------------------------------------------
# Frontend


def frontend_in_process(files: Dict[str, Path], sizes: Sizes) -> Dict[str, Any]:
    from edge_ser.audio import load_audio

    cfg = preset("edge")
    out: Dict[str, Any] = {"config": "edge preset: 25 ms Hann / 10 ms hop, n_fft 512, 64 Slaney mels 50-8000 Hz, dB, mean/var"}
    have_librosa = importable("librosa")
    have_psf = importable("python_speech_features") and importable("scipy")
    for key, seconds in (("clip3", 3), ("clip30", 30)):
        x, _ = load_audio(files[key], RATE)
        row: Dict[str, Any] = {"seconds": seconds}
        row["edge_ser_ms"] = median_ms(lambda: log_mel(x, cfg), sizes.repeat_features)
        if have_librosa:
            import librosa

            def librosa_features() -> np.ndarray:
                mel = librosa.feature.melspectrogram(
                    y=x, sr=RATE, n_fft=512, win_length=400, hop_length=160, window="hann",
                    center=False, power=2.0, n_mels=64, fmin=50.0, fmax=8000.0, htk=False, norm="slaney")
                return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)

            row["librosa_ms"] = median_ms(librosa_features, sizes.repeat_features)
        else:
            row["librosa_ms"] = None
        if have_psf:
            from python_speech_features import logfbank

            row["psf_ms"] = median_ms(
                lambda: logfbank(x, samplerate=RATE, winlen=0.025, winstep=0.01, nfilt=64, nfft=512,
                                 lowfreq=50, highfreq=8000),
                sizes.repeat_features)
        else:
            row["psf_ms"] = None
        out[key] = row

    # Streaming: 20 ms chunks (what a microphone callback delivers) through the frame stage.
    x30, _ = load_audio(files["clip30"], RATE)
    chunk = RATE // 50

    def stream_all() -> None:
        stream = StreamingFeatures(cfg)
        for start in range(0, x30.size, chunk):
            stream.push(x30[start:start + chunk])
        stream.flush()

    total_ms = median_ms(stream_all, max(3, sizes.repeat_features // 5), warmup=1)
    out["streaming"] = {"chunk_ms": 20, "ms_per_audio_second": total_ms / (x30.size / RATE)}
    return out


EDGE_FRONTEND_COLD = textwrap.dedent("""
    import sys
    from edge_ser.audio import load_audio
    from edge_ser.features import log_mel, preset
    x, _ = load_audio(sys.argv[1], 16000)
    log_mel(x, preset("edge"))
""")

LIBROSA_FRONTEND_COLD = textwrap.dedent("""
    import sys
    import librosa
    y, _ = librosa.load(sys.argv[1], sr=16000)
    mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, win_length=400, hop_length=160,
                                         center=False, n_mels=64, fmin=50.0, fmax=8000.0)
    librosa.power_to_db(mel, ref=1.0, top_db=None)
""")


def frontend_cold(files: Dict[str, Path], sizes: Sizes) -> Dict[str, Any]:
    env = child_env()
    py = sys.executable
    out: Dict[str, Any] = {
        "python_only": cold_runs([py, "-c", "pass"], env, sizes.cold_runs, "python -c pass"),
        "edge_ser": cold_runs([py, "-c", EDGE_FRONTEND_COLD, str(files["clip3"])], env, sizes.cold_runs,
                              "edge_ser cold frontend"),
    }
    if importable("librosa"):
        out["librosa"] = cold_runs([py, "-c", LIBROSA_FRONTEND_COLD, str(files["clip3"])], env,
                                   sizes.cold_runs, "librosa cold frontend")
    else:
        out["librosa"] = None
    return out


# ---------------------------------------------------------------------------------------
# Runtime


def steady_state(model: Path, files: Dict[str, Path], sizes: Sizes) -> Dict[str, Any]:
    """Per-clip latency of a warm Classifier on a 3 s clip: features + inference."""
    from edge_ser.audio import load_audio
    from edge_ser.classify import Classifier
    from edge_ser.windows import split_windows

    classifier = Classifier(model)
    meta = classifier.metadata
    x, _ = load_audio(files["clip3"], classifier.sample_rate)
    feats = log_mel(x, meta.feature_config)
    windows, _ = split_windows(feats, meta.window_frames, meta.hop_frames, meta.feature_config.n_blocks)
    n = sizes.repeat_steady
    return {
        "backend": classifier.backend_name,
        "backend_label": getattr(getattr(classifier.model, "backend", None), "label", classifier.backend_name),
        "model_id": classifier.model_id,
        "window_s": meta.window_seconds,
        "total_ms": median_ms(lambda: classifier.classify_signal(x, classifier.sample_rate), n, warmup=5),
        "features_ms": median_ms(lambda: log_mel(x, meta.feature_config), n, warmup=5),
        "inference_ms": median_ms(lambda: classifier.model.predict(windows), n, warmup=5),
        "decode_ms": median_ms(lambda: load_audio(files["clip3"], classifier.sample_rate), n, warmup=2),
        "repeat": n,
    }


BUILD_ANCESTOR = textwrap.dedent("""
    # Builds a Keras CNN the size of the ancestor's (~845k parameters on 128x126x1 log-mel
    # images, 8 classes) with fixed random weights: its cost, not its accuracy, is measured.
    import json, sys
    import tensorflow as tf
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(128, 126, 1)),
        L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(64, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Conv2D(128, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
        L.Flatten(), L.Dropout(0.3),
        L.Dense(84, activation="relu"), L.Dropout(0.3),
        L.Dense(8, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(sys.argv[1])
    json.dump({"params": int(model.count_params()), "tensorflow": tf.__version__}, open(sys.argv[2], "w"))
""")

# The ancestor's inference, as its notebook did it: librosa.load at 16 kHz, mel of the
# magnitude STFT (n_fft 2048, hop 512, 128 mels), amplitude_to_db(ref=np.min), min-max
# to [0, 1], pad/crop to 126 frames, keras load_model + predict.
ANCESTOR_CLASSIFY = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import librosa
    import tensorflow as tf
    EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]

    def features(path):
        y, sr = librosa.load(path, sr=16000)
        S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
        mel = librosa.feature.melspectrogram(S=S, sr=sr, n_mels=128)
        db = librosa.amplitude_to_db(mel, ref=np.min)
        db = (db - db.min()) / (db.max() - db.min() + 1e-9)
        out = np.zeros((128, 126), dtype=np.float32)
        n = min(126, db.shape[1])
        out[:, :n] = db[:, :n]
        return out[None, :, :, None]

    model = tf.keras.models.load_model(sys.argv[1])
    probs = model.predict(features(sys.argv[2]), verbose=0)[0]
    print(EMOTIONS[int(np.argmax(probs))], float(probs.max()))
    if len(sys.argv) > 3:  # steady state: N more clips in this warm process
        n = int(sys.argv[3])
        times = {"features_ms": [], "predict_ms": []}
        for _ in range(n):
            t0 = time.perf_counter(); x = features(sys.argv[2]); t1 = time.perf_counter()
            model.predict(x, verbose=0); t2 = time.perf_counter()
            times["features_ms"].append((t1 - t0) * 1e3); times["predict_ms"].append((t2 - t1) * 1e3)
        print(json.dumps({k: float(np.median(v)) for k, v in times.items()}))
""")


def ancestor_model(cache: Path) -> Tuple[Optional[Path], Dict[str, Any]]:
    """The .keras file (built once into ``cache``), or None and why not."""
    if not importable("tensorflow") or not importable("librosa"):
        return None, {"error": "TensorFlow or librosa not installed"}
    cache.mkdir(parents=True, exist_ok=True)
    path, info_path = cache / "ancestor-cnn.keras", cache / "ancestor-cnn.json"
    if not (path.is_file() and info_path.is_file()):
        run = run_process([sys.executable, "-c", BUILD_ANCESTOR, str(path), str(info_path)], child_env())
        if run.returncode != 0:
            return None, {"error": "building the ancestor model failed: " + run.stderr.strip()[-300:]}
    return path, json.loads(info_path.read_text())


def runtime_cold(model: Path, files: Dict[str, Path], sizes: Sizes, cache: Path,
                 skip_ancestor: bool) -> Dict[str, Any]:
    env = child_env()
    py = sys.executable
    clip = str(files["clip3"])
    out: Dict[str, Any] = {
        "edge_ser": cold_runs([py, "-m", "edge_ser", "classify", clip, "--model", str(model)], env,
                              sizes.cold_runs, "edge-ser classify"),
    }
    if skip_ancestor:
        out["ancestor"] = {"error": "skipped (--skip-ancestor)"}
        return out
    keras_path, info = ancestor_model(cache)
    if keras_path is None:
        out["ancestor"] = info
        return out
    ancestor = cold_runs([py, "-c", ANCESTOR_CLASSIFY, str(keras_path), clip], env, sizes.cold_runs,
                         "ancestor classify")
    ancestor.update(info)
    steady = run_process([py, "-c", ANCESTOR_CLASSIFY, str(keras_path), clip, str(max(3, sizes.repeat_steady // 10))], env)
    if steady.returncode == 0:
        ancestor["steady"] = json.loads(steady.stdout.strip().splitlines()[-1])
    out["ancestor"] = ancestor
    return out


CALLGRIND_SCRIPT = textwrap.dedent("""
    import sys
    from edge_ser.classify import Classifier
    classifier = Classifier(sys.argv[1])
    for _ in range(int(sys.argv[3])):
        classifier.classify_file(sys.argv[2])
""")

CALLGRIND_REPEAT = 10


def instructions(model: Path, files: Dict[str, Path], sizes: Sizes) -> Dict[str, Any]:
    """Instructions per 3 s clip under callgrind, by differences of whole processes.

    Three runs of the same script: startup only (imports + model load), startup + 1
    clip, startup + 1 + N clips. The first difference is the first clip (with its
    one-time costs: lazy imports, filterbank, interpreter warm-up), the second divided
    by N the steady per-clip cost (decode + features + inference).
    """
    if not sizes.callgrind:
        return {"error": "skipped (--quick)"}
    valgrind = shutil.which("valgrind")
    if not valgrind:
        return {"error": "valgrind not installed"}
    env = child_env()
    env["EDGE_SER_NUM_THREADS"] = "1"
    counts = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, 1, 1 + CALLGRIND_REPEAT):
            cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.%p",
                   sys.executable, "-c", CALLGRIND_SCRIPT, str(model), str(files["clip3"]), str(n)]
            run = run_process(cmd, env, timeout=1800)
            collected = [line for line in run.stderr.splitlines() if "Collected :" in line]
            if run.returncode != 0 or not collected:
                return {"error": "callgrind failed: " + run.stderr.strip()[-300:]}
            counts.append(int(collected[-1].split(":")[-1].strip()))
    per_clip = (counts[2] - counts[1]) / CALLGRIND_REPEAT
    return {
        "startup_instructions": counts[0],
        "first_clip_instructions": counts[1] - counts[0],
        "clip_instructions": per_clip,
        "clip_seconds": 3.0,
        "per_audio_second": per_clip / 3.0,
        "repeat": CALLGRIND_REPEAT,
    }


# ---------------------------------------------------------------------------------------
# Daemon


def parse_events(stdout: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(result events, status events) from the daemon's JSON lines."""
    events = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return [e for e in events if e.get("type") != "status"], [e for e in events if e.get("type") == "status"]


def latency_stats(results: List[Dict[str, Any]]) -> Dict[str, Optional[float]]:
    latencies = [float(e["latency_ms"]) for e in results if isinstance(e.get("latency_ms"), (int, float))]
    return {
        "latency_median_ms": statistics.median(latencies) if latencies else None,
        "latency_p95_ms": percentile(latencies, 95) if latencies else None,
    }


def daemon(model: Path, files: Dict[str, Path], seconds: float, realtime_seconds: float) -> Dict[str, Any]:
    """``edge-ser listen --file``: as fast as it goes (RTF), then at real-time pace (latency).

    As fast as possible, the CPU time per second of audio is the real-time factor. At
    real-time pace (``--realtime``, like a microphone) the latencies are what a user
    sees: from the last captured sample of an utterance to its event.
    """
    if not importable("edge_ser.daemon"):
        return {"error": "edge_ser.daemon not present"}
    env = child_env()
    base = [sys.executable, "-m", "edge_ser", "listen", "--model", str(model), "--file"]
    # The same process on 1 s of audio: its CPU time is the daemon's startup, subtracted
    # below so the RTF is what listening costs, not what starting costs.
    with tempfile.TemporaryDirectory() as tmp:
        short = Path(tmp) / "one-second.wav"
        write_wav(short, speechlike(1.0, seed=1), RATE)
        startup = run_process(base + [str(short)], env)
    run = run_process(base + [str(files["daemon"])], env, timeout=1800)
    if run.returncode != 0:
        return {"error": f"listen exited {run.returncode}: " + " | ".join(run.stderr.strip().splitlines()[-3:])}
    results, statuses = parse_events(run.stdout)
    out: Dict[str, Any] = {
        "audio_seconds": seconds,
        "audio_source": str(files["daemon_source"]),
        "wall_s": run.wall_s,
        "cpu_s": run.cpu_s,
        "startup_cpu_s": startup.cpu_s if startup.returncode == 0 else None,
        "rtf": run.cpu_s / seconds,
        "max_rss_mb": run.max_rss_mb,
        "events": len(results),
        **latency_stats(results),
        "final_status": statuses[-1] if statuses else None,
    }
    if out["startup_cpu_s"] is not None:
        out["rtf_listening"] = max(0.0, run.cpu_s - out["startup_cpu_s"]) / seconds
    if realtime_seconds > 0:
        paced = run_process(base + [str(files["daemon"]), "--realtime", "--max-seconds", f"{realtime_seconds:g}"],
                            env, timeout=realtime_seconds * 3 + 120)
        if paced.returncode != 0:
            out["realtime"] = {"error": f"listen --realtime exited {paced.returncode}"}
        else:
            paced_results, _ = parse_events(paced.stdout)
            out["realtime"] = {
                "audio_seconds": realtime_seconds,
                "wall_s": paced.wall_s,
                "cpu_s": paced.cpu_s,
                "rtf": paced.cpu_s / realtime_seconds,
                "max_rss_mb": paced.max_rss_mb,
                "events": len(paced_results),
                **latency_stats(paced_results),
            }
    return out


# ---------------------------------------------------------------------------------------
# Report


def fmt(value: Optional[float], unit: str = "", digits: int = 2) -> str:
    if value is None:
        return NA
    return f"{value:.{digits}f}{unit}"


def ratio(a: Optional[float], b: Optional[float], digits: int = 1) -> str:
    if a is None or b is None or b == 0:
        return NA
    return f"{a / b:.{digits}f}x"


def goal(ok: Optional[bool]) -> str:
    return NA if ok is None else ("met" if ok else "NOT met")


def environment(model: Path, blas_note: str) -> Dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        info = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip().lower(), value.strip())
        cpu = info.get("model name") or info.get("hardware") or cpu
    except OSError:
        pass
    pi_model = ""
    try:
        pi_model = Path("/proc/device-tree/model").read_text().strip("\x00\n ")
    except OSError:
        pass
    blas = ""
    try:
        from threadpoolctl import threadpool_info

        blas = ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} x{i.get('num_threads')}"
                         for i in threadpool_info())
    except Exception:  # threadpoolctl is optional
        blas = "threadpoolctl not installed"
    return {
        "hostname": socket.gethostname(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": platform.machine(),
        "device": pi_model or cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "openblas_env": blas_note,
        "model": str(model),
        "model_bytes": model.stat().st_size,
        "load_average_start": list(os.getloadavg()),
    }


def markdown(r: Dict[str, Any]) -> str:
    env = r["environment"]
    lines = [
        f"# edge-ser benchmark: {env['hostname']}",
        "",
        f"{env['date']}; {env['device']} ({env['machine']}, {env['cores']} cores); Python {env['python']}, "
        f"numpy {env['numpy']} ({env['blas']}); {env['openblas_env']}.",
        f"Model: `{Path(env['model']).name}` ({env['model_bytes'] / 1024:.0f} KiB). Mode: {r['mode']}. "
        f"Load average (1 min) at start/end: {env['load_average_start'][0]:.2f} / "
        f"{env.get('load_average_end', [float('nan')])[0]:.2f} (other work on the machine inflates the times).",
        "Cold processes: median wall time of the runs, largest peak RSS (`ru_maxrss` of the child).",
        "",
    ]
    fe = r.get("frontend")
    if fe:
        lines += [
            "## Frontend (features)",
            "",
            f"Per clip, median of {r['sizes']['repeat_features']} after warm-up; {fe['in_process']['config']}; "
            "librosa = melspectrogram + power_to_db at the same settings; python_speech_features = logfbank "
            "(64 filters, same frames).",
            "",
            "| clip | edge_ser | librosa | python_speech_features | librosa / edge_ser |",
            "|---|---|---|---|---|",
        ]
        for key in ("clip3", "clip30"):
            row = fe["in_process"][key]
            lines.append(
                f"| {row['seconds']} s | {fmt(row['edge_ser_ms'], ' ms')} | {fmt(row['librosa_ms'], ' ms')} | "
                f"{fmt(row['psf_ms'], ' ms')} | {ratio(row['librosa_ms'], row['edge_ser_ms'])} |")
        s = fe["in_process"]["streaming"]
        lines += ["", f"Streaming (`StreamingFeatures`, 20 ms chunks): **{s['ms_per_audio_second']:.2f} ms per second "
                      f"of audio** ({s['ms_per_audio_second'] / 10:.2f}% of one core).", ""]
        lines += ["Cold process: import + decode a 3 s WAV + features, then exit.", "",
                  "| process | wall | peak RSS |", "|---|---|---|"]
        for key, label in (("python_only", "`python -c pass` (floor)"), ("edge_ser", "edge_ser (wav + features)"),
                           ("librosa", "librosa.load + melspectrogram")):
            c = fe["cold"].get(key)
            if not c:
                lines.append(f"| {label} | {NA} | {NA} |")
            elif "error" in c:
                lines.append(f"| {label} | {c['error']} | |")
            else:
                lines.append(f"| {label} | {fmt(c['wall_s'] * 1e3, ' ms', 0)} | {fmt(c['max_rss_mb'], ' MB', 1)} |")
        lines.append("")

    rt = r.get("runtime")
    if rt:
        cold = rt["cold"]
        e, a = cold["edge_ser"], cold.get("ancestor", {})
        lines += ["## Runtime (classify)", "",
                  "Cold: one whole process classifying one 3 s WAV, started from the shell.", "",
                  "| process | wall | CPU | peak RSS |", "|---|---|---|---|"]
        if "error" in e:
            lines.append(f"| `python -m edge_ser classify one.wav` | {e['error']} | | |")
        else:
            lines.append(f"| `python -m edge_ser classify one.wav` ({rt['steady'].get('backend', '?')}) | "
                         f"{fmt(e['wall_s'] * 1e3, ' ms', 0)} | {fmt(e['cpu_s'] * 1e3, ' ms', 0)} | "
                         f"{fmt(e['max_rss_mb'], ' MB', 1)} |")
        if "error" in a:
            lines.append(f"| ancestor (librosa + Keras CNN) | {a['error']} | | |")
        else:
            lines.append(f"| ancestor: librosa + TensorFlow {a.get('tensorflow', '?')} Keras CNN "
                         f"({a.get('params', 0) / 1000:.0f}k params) | {fmt(a['wall_s'] * 1e3, ' ms', 0)} | "
                         f"{fmt(a['cpu_s'] * 1e3, ' ms', 0)} | {fmt(a['max_rss_mb'], ' MB', 1)} |")
        g = r["goals"]
        lines += ["", f"Cold speed-up: **{g['cold_speedup_text']}** (goal >= 20x: {goal(g['cold_speedup_ok'])}); "
                      f"memory: **{g['memory_ratio_text']}** of the ancestor's (goal <= 1/8: {goal(g['memory_ok'])}).", ""]
        s = rt["steady"]
        lines += [f"Steady state, 3 s clip, warm process, median of {s['repeat']}:", "",
                  "| step | edge_ser | ancestor |", "|---|---|---|"]
        anc = a.get("steady", {}) if "error" not in a else {}
        lines.append(f"| decode WAV | {fmt(s['decode_ms'], ' ms', 3)} | (in features) |")
        lines.append(f"| features | {fmt(s['features_ms'], ' ms', 3)} | {fmt(anc.get('features_ms'), ' ms', 1)} |")
        lines.append(f"| inference | {fmt(s['inference_ms'], ' ms', 3)} | {fmt(anc.get('predict_ms'), ' ms', 1)} |")
        lines.append(f"| **classify (features + inference)** | **{fmt(s['total_ms'], ' ms', 3)}** | "
                     f"{fmt((anc.get('features_ms') or 0) + (anc.get('predict_ms') or 0) if anc else None, ' ms', 1)} |")
        lines += ["", f"Goal <= 3 ms per 3 s clip (set for the first, single-network model): {goal(g['steady_ok'])}.",
                  "", f"Device budget of the room-ready model (issue 12): file <= 1 MB: {goal(g['size_ok'])}; "
                  f"inference per 3 s window <= {BUDGET_WINDOW_MS:g} ms: {goal(g['window_ok'])}; cold classify "
                  f"<= {BUDGET_COLD_S:g} s and <= {BUDGET_COLD_MB:g} MB: {goal(g['cold_budget_ok'])}.", ""]
        ins = rt["instructions"]
        if "error" in ins:
            lines += [f"Instructions (callgrind): {ins['error']}.", ""]
        else:
            est = r["pi_estimate"]
            lines += [
                "Instructions (valgrind callgrind, 1 interpreter thread; differences of whole processes: startup "
                f"only, + 1 clip, + 1 + {ins['repeat']} clips):", "",
                f"- startup (imports + model load): {ins['startup_instructions'] / 1e6:.0f} M instructions",
                f"- first 3 s clip (with one-time costs): {ins['first_clip_instructions'] / 1e6:.1f} M instructions",
                f"- each further 3 s clip (decode + features + inference): {ins['clip_instructions'] / 1e6:.1f} M instructions "
                f"= **{ins['per_audio_second'] / 1e6:.1f} M instructions per second of audio**",
                f"- rough Pi estimate ({est['assumption']}): {est['text']}",
                "",
            ]
    d = r.get("daemon")
    if d:
        lines += ["## Daemon (`edge-ser listen --file`)", ""]
        if "error" in d:
            lines += [f"{d['error']}.", ""]
        else:
            g = r["goals"]
            rt_run = d.get("realtime") or {}
            lines += [
                f"Input: {d['audio_seconds']:.0f} s of {d['audio_source']}. As fast as possible: the WAV is read "
                "as fast as the worker takes it. Real-time pace: `--realtime`, like a microphone. `latency_ms` is "
                "the daemon's own measure, from the last captured sample of an utterance to its event; at real-time pace "
                "it includes the segmenter's wait for the end of speech (`end_silence_ms`), which the latency goal "
                "does not count (it is judged on the as-fast-as-possible run).", "",
                "| measure | as fast as possible | real-time pace | goal |", "|---|---|---|---|",
                f"| audio | {d['audio_seconds']:.0f} s | {fmt(rt_run.get('audio_seconds'), ' s', 0)} | |",
                f"| CPU time / audio time (RTF), whole process | {fmt(d['rtf'], '', 4)} | {fmt(rt_run.get('rtf'), '', 4)} | "
                f"<= 0.02: {goal(g['rtf_ok'])} |",
                f"| RTF without startup ({fmt(d.get('startup_cpu_s'), ' s CPU', 2)}) | {fmt(d.get('rtf_listening'), '', 4)} | | |",
                f"| events (utterances) | {d['events']} | {rt_run.get('events', NA)} | |",
                f"| event latency median / p95 | {fmt(d['latency_median_ms'], ' ms', 1)} / "
                f"{fmt(d['latency_p95_ms'], ' ms', 1)} | {fmt(rt_run.get('latency_median_ms'), ' ms', 1)} / "
                f"{fmt(rt_run.get('latency_p95_ms'), ' ms', 1)} | p95 <= 150 ms: {goal(g['latency_ok'])} |",
                f"| peak RSS | {fmt(d['max_rss_mb'], ' MB', 1)} | {fmt(rt_run.get('max_rss_mb'), ' MB', 1)} | "
                f"<= 80 MB: {goal(g['rss_ok'])} |",
                f"| wall time | {fmt(d['wall_s'], ' s', 1)} | {fmt(rt_run.get('wall_s'), ' s', 1)} | |",
                "",
            ]
    return "\n".join(lines) + "\n"


def evaluate_goals(r: Dict[str, Any]) -> Dict[str, Any]:
    g: Dict[str, Any] = {}
    rt = r.get("runtime") or {}
    e = (rt.get("cold") or {}).get("edge_ser") or {}
    a = (rt.get("cold") or {}).get("ancestor") or {}
    both = "error" not in e and "error" not in a and e and a
    g["cold_speedup"] = a["wall_s"] / e["wall_s"] if both else None
    g["cold_speedup_text"] = ratio(a.get("wall_s"), e.get("wall_s")) if both else NA
    g["cold_speedup_ok"] = g["cold_speedup"] >= 20 if g["cold_speedup"] is not None else None
    g["memory_ratio"] = e["max_rss_mb"] / a["max_rss_mb"] if both else None
    g["memory_ratio_text"] = f"1/{a['max_rss_mb'] / e['max_rss_mb']:.1f}" if both else NA
    g["memory_ok"] = g["memory_ratio"] <= 1 / 8 if g["memory_ratio"] is not None else None
    steady = (rt.get("steady") or {}).get("total_ms")
    g["steady_ok"] = steady <= 3.0 if steady is not None else None
    # The device budget of the room-ready model (issue 12), which a larger model may spend:
    # the file, int8 inference per 3 s window (tflite-runtime default kernels) and a cold classify.
    inference = (rt.get("steady") or {}).get("inference_ms")
    model_bytes = (r.get("environment") or {}).get("model_bytes")
    g["size_ok"] = model_bytes <= BUDGET_BYTES if model_bytes is not None else None
    g["window_ok"] = inference <= BUDGET_WINDOW_MS if inference is not None else None
    g["cold_budget_ok"] = (e["wall_s"] <= BUDGET_COLD_S and e["max_rss_mb"] <= BUDGET_COLD_MB
                           if e and "error" not in e else None)
    d = r.get("daemon") or {}
    ok = "error" not in d and bool(d)
    paced = d.get("realtime") or {} if ok else {}
    g["rtf_ok"] = d["rtf"] <= 0.02 if ok else None
    # The goal is on the as-fast-as-possible run (processing latency). At real-time pace
    # latency_ms also holds the segmenter's wait for the end of speech (end_silence_ms).
    p95 = d.get("latency_p95_ms") if ok else None
    g["latency_ok"] = p95 <= 150 if p95 is not None else None
    g["rss_ok"] = max(d["max_rss_mb"], paced.get("max_rss_mb") or 0.0) <= 80 if ok else None
    return g


def pi_estimate(ins: Dict[str, Any]) -> Dict[str, Any]:
    """Order-of-magnitude Pi cost from x86 instruction counts (assumptions stated)."""
    if not ins or "error" in ins:
        return {}
    # x86-64 with AVX2 does 256-bit SIMD; a Cortex-A72/A53 does 128-bit NEON, so the same
    # work takes about 1.5-2x the instructions. IPC ~1 (A72) / ~0.6 (A53, Zero 2 W).
    per_clip = ins["clip_instructions"]
    pi4 = per_clip * 1.75 / (1.5e9 * 1.0) * 1e3
    zero2 = per_clip * 1.75 / (1.0e9 * 0.6) * 1e3
    return {
        "assumption": "ARM needs ~1.75x the x86 instructions; Pi 4 A72 1.5 GHz IPC ~1.0, Zero 2 W A53 1 GHz IPC ~0.6",
        "pi4_ms_per_clip": pi4,
        "zero2w_ms_per_clip": zero2,
        "text": f"~{pi4:.0f} ms per 3 s clip on a Pi 4, ~{zero2:.0f} ms on a Zero 2 W (one core)",
    }


# ---------------------------------------------------------------------------------------
# Main


def reexec_without_openblas_overrides(keep: bool) -> str:
    """Drop OPENBLAS_CORETYPE/L2_SIZE for this benchmark process and its children only.

    They pin an older OpenBLAS kernel (a workaround some machines need for old builds)
    and make a current numpy's matrix products slower; a Pi never has them. Returns
    the note printed in the table header.
    """
    present = {k: os.environ[k] for k in OPENBLAS_VARS if k in os.environ}
    if os.environ.get(REEXEC_MARK):
        return "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE were set here and are unset for this benchmark (" + \
            os.environ[REEXEC_MARK] + ")"
    if not present:
        return "no OpenBLAS overrides in the environment"
    if keep:
        return "OpenBLAS overrides kept: " + ", ".join(f"{k}={v}" for k, v in present.items())
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_VARS}
    env[REEXEC_MARK] = ", ".join(f"{k}={v}" for k, v in present.items())
    os.execve(sys.executable, [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]], env)
    return ""  # not reached


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test: seconds, numbers meaningless)")
    p.add_argument("--skip-ancestor", action="store_true", help="do not run the TensorFlow/librosa ancestor")
    p.add_argument("--skip-daemon", action="store_true", help="do not run edge-ser listen")
    p.add_argument("--skip-callgrind", action="store_true", help="do not count instructions")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for bench-<hostname>.md/.json")
    p.add_argument("--model", type=Path, help="model to use (default: the shipped/installed one)")
    p.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-ser-bench",
                   help="where the ancestor's .keras model is kept between runs")
    p.add_argument("--daemon-seconds", type=float, help="audio for the daemon run (default 180, quick 8)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE if set (default: unset them for this run)")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    blas_note = reexec_without_openblas_overrides(args.keep_openblas_env)
    from edge_ser.paths import resolve_model_path

    model = resolve_model_path(args.model)
    sizes = Sizes.for_mode(args.quick)
    if args.skip_callgrind:
        sizes = dataclasses.replace(sizes, callgrind=False)
    daemon_seconds = args.daemon_seconds or sizes.daemon_seconds
    results: Dict[str, Any] = {
        "mode": "quick (smoke test, numbers meaningless)" if args.quick else "full",
        "sizes": sizes.__dict__,
        "environment": environment(model, blas_note),
    }
    with tempfile.TemporaryDirectory(prefix="edge-ser-bench-") as tmp:
        files = make_inputs(Path(tmp), daemon_seconds)
        print("frontend ...", file=sys.stderr)
        results["frontend"] = {"in_process": frontend_in_process(files, sizes), "cold": frontend_cold(files, sizes)}
        print("runtime ...", file=sys.stderr)
        results["runtime"] = {
            "steady": steady_state(model, files, sizes),
            "cold": runtime_cold(model, files, sizes, args.cache, args.skip_ancestor),
            "instructions": instructions(model, files, sizes),
        }
        results["pi_estimate"] = pi_estimate(results["runtime"]["instructions"])
        if args.skip_daemon:
            results["daemon"] = {"error": "skipped (--skip-daemon)"}
        else:
            print("daemon ...", file=sys.stderr)
            results["daemon"] = daemon(model, files, daemon_seconds, sizes.daemon_realtime_seconds)
    results["environment"]["load_average_end"] = list(os.getloadavg())
    results["goals"] = evaluate_goals(results)
    text = markdown(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{socket.gethostname()}"
    write_bytes_atomically(args.out / f"{stem}.md", text)
    write_bytes_atomically(args.out / f"{stem}.json", json.dumps(results, indent=1, default=str) + "\n")
    print(f"wrote {args.out / (stem + '.md')} and .json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
