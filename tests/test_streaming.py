"""Issue 11: classification streams in bounded memory and answers as the batch pipeline does.

The batch reference here is built from the building blocks (decode whole, ``log_mel``,
``split_windows``, ``Model.predict``, mean), i.e. what ``classify_file`` did before it
streamed. Files, bytes, pipes and arrays must agree with it: same label, probabilities
within 1e-6, on corpus clips and on a clip long enough to need the second decoding pass.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

from edge_ser.audio import load_audio, resample
from edge_ser.classify import Classifier
from edge_ser.errors import AudioError, EdgeSerError
from edge_ser.features import log_mel
from edge_ser.pipeline import FRAME_CACHE_BYTES
from edge_ser.speechlike import speechlike
from edge_ser.wav import read_wav, wav_bytes, write_wav
from edge_ser.windows import split_windows
from runtime_fixtures import ROOT, test_models, tone  # noqa: F401  (fixture)

SHIPPED = ROOT / "models" / "edge-ser-int8.tflite"


class Pipe(io.RawIOBase):
    """A non-seekable stream (like stdin from a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), 65536))
        buffer[: len(data)] = data
        return len(data)


@pytest.fixture(scope="module")
def shipped() -> Classifier:
    if not SHIPPED.is_file():
        pytest.skip("shipped model missing")
    return Classifier(SHIPPED, num_threads=1)


@pytest.fixture(scope="module")
def small(test_models) -> Classifier:
    return Classifier(test_models["int8"], num_threads=1)


def batch_samples(source, rate: int) -> np.ndarray:
    """Decode the whole file, resample the whole signal, clip: the old load_audio."""
    audio = read_wav(source)
    return np.clip(resample(audio.samples, audio.sample_rate, rate), -1.0, 1.0)


def batch_probabilities(classifier: Classifier, samples: np.ndarray) -> np.ndarray:
    """The whole-clip pipeline: every frame and window in memory at once."""
    meta = classifier.metadata
    windows, _ = split_windows(log_mel(samples, meta.feature_config), meta.window_frames, meta.hop_frames)
    return classifier.model.predict(windows).mean(axis=0)


def assert_agrees(prediction, expected: np.ndarray, labels) -> None:
    got = np.array([prediction.probabilities[k] for k in labels])
    assert prediction.label == labels[int(np.argmax(expected))]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def _corpus_clips(ravdess_dir, count=8):
    files = sorted(ravdess_dir.glob("Actor_*/*.wav"))
    return files[:: max(1, len(files) // count)][:count]


def test_streamed_answers_equal_the_batch_pipeline_on_corpus_clips(shipped, ravdess_dir):
    for path in _corpus_clips(ravdess_dir):
        samples = batch_samples(path, shipped.sample_rate)
        expected = batch_probabilities(shipped, samples)
        raw = path.read_bytes()
        for prediction in (shipped.classify_file(path), shipped.classify_bytes(raw, "upload.wav"),
                           shipped.classify_file(Pipe(raw), name="<stdin>")):
            assert_agrees(prediction, expected, shipped.labels)
            assert prediction.duration == pytest.approx(samples.size / shipped.sample_rate)


def test_a_long_clip_agrees_through_two_decoding_passes_and_the_spool(small, tmp_path):
    """200 s at 44.1 kHz: more frames than the in-memory cache, so a file is decoded
    twice and a pipe's frames go through the temporary spool file."""
    phrase = speechlike(25.0, rate=44100, seed=7)
    x = np.concatenate([phrase * gain for gain in (1.0, 0.5, 0.8, 0.3, 0.9, 0.6, 0.4, 0.7)])
    blob = wav_bytes(x, 44100)
    samples = batch_samples(blob, small.sample_rate)
    frames = log_mel(samples, small.metadata.feature_config)
    assert frames.nbytes > FRAME_CACHE_BYTES  # the case under test: no in-memory replay
    expected = batch_probabilities(small, samples)
    path = tmp_path / "long.wav"
    path.write_bytes(blob)
    for prediction in (small.classify_file(path), small.classify_bytes(blob, "long.wav"),
                       small.classify_file(Pipe(blob), name="<stdin>")):
        assert_agrees(prediction, expected, small.labels)
        assert prediction.window_count == len(split_windows(frames, 300, 100)[1])
        assert prediction.windows == []  # not asked for
    # arrays stream too (resampled without the file path's clipping, as before)
    assert_agrees(small.classify_signal(x, 44100), batch_probabilities(small, resample(x, 44100, 16000)),
                  small.labels)
    with_windows = small.classify_bytes(blob, "long.wav", windows=True)
    assert len(with_windows.windows) == with_windows.window_count
    assert with_windows.windows[-1].end_s == pytest.approx(frames.shape[0] / 100)


def test_a_non_seekable_stream_beyond_the_cap_is_refused_by_name(small):
    blob = wav_bytes(tone(30.0), 16000)
    with pytest.raises(AudioError, match=r"^<stdin>: longer than 20 s of audio.*save it to a file"):
        small.classify_file(Pipe(blob), name="<stdin>", max_unseekable_seconds=20)
    # the same audio from a seekable source has no such limit
    assert small.classify_bytes(blob, "x.wav", windows=False).duration == pytest.approx(30.0)


# --------------------------------------------------------------------------- the Python API


def test_wrong_arguments_are_edge_ser_errors_with_a_hint(small, tmp_path, test_models):
    from edge_ser.classify import predict_emotion

    path = tmp_path / "clip.wav"
    write_wav(path, tone(1.0), 16000)
    model = str(test_models["int8"])
    with pytest.raises(EdgeSerError, match="no audio given"):
        predict_emotion(None, model_path=model)
    with pytest.raises(EdgeSerError, match=r"classify_signal\(samples, sample_rate\)"):
        predict_emotion(tone(1.0), model_path=model)
    with open(path, "r", encoding="utf-8", errors="strict") as text:
        with pytest.raises(EdgeSerError, match=r"text mode.*'rb'"):
            predict_emotion(text, model_path=model)
    with pytest.raises(EdgeSerError, match="cannot read audio from a int"):
        small.classify_file(42)
    with pytest.raises(EdgeSerError, match="classify_bytes needs bytes"):
        small.classify_bytes(str(path), "x")


def test_classify_signal_shape_rule(small):
    x = tone(1.0)
    with pytest.raises(AudioError, match=r"16000 channels .*samples\.T"):
        small.classify_signal(np.zeros((2, 16000), np.float32), 16000)
    stereo = np.stack([x, x])  # (channels, frames): refused, and its transpose is the stereo clip
    with pytest.raises(AudioError, match="samples.T"):
        small.classify_signal(stereo, 16000)
    assert small.classify_signal(stereo.T, 16000).probabilities == small.classify_signal(x, 16000).probabilities
    for rate in (1, 3999, 384001, 16000.0, True):
        with pytest.raises(AudioError, match=r"sample rate must be an integer in 4000\.\.384000 Hz"):
            small.classify_signal(x, rate)


def test_classify_bytes_is_bounded_for_a_lying_header(small):
    """Issue 11: 2000 samples 'at 65521 Hz' (an odd prime rate) is bounded work now."""
    blob = wav_bytes(np.random.default_rng(0).uniform(-0.5, 0.5, 2000).astype(np.float32), 65521)
    prediction = small.classify_bytes(blob, "odd.wav")
    assert prediction.duration == pytest.approx(2000 / 65521, abs=1e-3)
    with pytest.raises(AudioError, match=r"^one\.wav: implausible sample rate 1 Hz"):
        small.classify_bytes(wav_bytes(np.zeros(2000, np.float32), 4000)[:24] + (1).to_bytes(4, "little")
                             + wav_bytes(np.zeros(2000, np.float32), 4000)[28:], "one.wav")


# --------------------------------------------------------------------------- live streaming API


def test_stream_classifier_gives_one_result_per_utterance(small, ravdess_dir):
    from edge_ser.stream import StreamClassifier

    speech, _ = load_audio(ravdess_dir / "Actor_01" / "03-01-05-02-01-01-01.wav", 48000)
    gap = np.zeros(48000, np.float32)
    signal = np.concatenate([gap, speech, gap, gap, speech, gap])
    stream = StreamClassifier(small, sample_rate=48000)
    results = []
    for i in range(0, signal.size, 960):  # 20 ms chunks, as a microphone delivers them
        results += stream.push(signal[i:i + 960])
    results += stream.flush()
    assert len(results) == 2 and all(r.reason == "silence" for r in results)
    first, second = results
    assert 1.0 <= first.start < first.end <= 1.0 + speech.size / 48000 + 0.7
    assert second.start > first.end + 1.5
    for r in results:
        assert r.label in small.labels and r.prediction.duration == pytest.approx(r.end - r.start, abs=0.05)
        assert set(r.to_dict()) >= {"label", "probabilities", "start", "end", "reason"}
    # int16 stereo chunks are taken as well
    pcm = np.round(np.stack([signal, signal], axis=1) * 32767).astype(np.int16)
    again = StreamClassifier(small, sample_rate=48000)
    stereo_results = [r for i in range(0, len(pcm), 4800) for r in again.push(pcm[i:i + 4800])] + again.flush()
    assert [r.label for r in stereo_results] == [r.label for r in results]


def test_stream_classifier_window_mode(small):
    from edge_ser.stream import StreamClassifier

    stream = StreamClassifier(small, sample_rate=16000, mode="window", window_s=3.0, hop_s=1.0)
    x = speechlike(6.0, seed=2)
    results = [r for i in range(0, x.size, 1600) for r in stream.push(x[i:i + 1600])]
    assert [round(r.end) for r in results] == [3, 4, 5, 6] and all(r.reason == "hop" for r in results)
    with pytest.raises(ValueError, match="mode"):
        StreamClassifier(small, mode="sometimes")


# --------------------------------------------------------------------------- the CLI, peak RSS


def _peak_rss_mb(args, stdin=None) -> "tuple[float, subprocess.CompletedProcess]":
    """Run ``python -m edge_ser ARGS`` and return its own peak RSS (os.wait4 rusage)."""
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "edge_ser", *args], stdin=stdin or subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(ROOT))
    out, err = proc.stdout.read(), proc.stderr.read()  # small outputs: no deadlock
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    proc.stderr.close()
    done = subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())
    return usage.ru_maxrss / 1024.0, done


def test_cli_memory_does_not_grow_with_the_clip(tmp_path, test_models):
    """Issue 11: a 20-minute WAV (77 MB) took 1.5 GB; now within ~20 MB of a 3 s clip's."""
    model = str(test_models["int8"])
    phrase = speechlike(10.0, rate=32000, seed=1)
    write_wav(tmp_path / "short.wav", phrase[: 3 * 32000], 32000)
    write_wav(tmp_path / "long.wav", np.tile(phrase, 120), 32000)
    assert (tmp_path / "long.wav").stat().st_size > 76_000_000
    base, short = _peak_rss_mb(["classify", "--model", model, str(tmp_path / "short.wav")])
    assert short.returncode == 0, short.stderr
    peak, long = _peak_rss_mb(["classify", "--model", model, str(tmp_path / "long.wav")])
    assert long.returncode == 0 and "1200.00s" in long.stdout, long.stderr
    assert peak - base < 20, f"3 s clip: {base:.0f} MB, 20 min: {peak:.0f} MB"
    with open(tmp_path / "long.wav", "rb") as fh:  # stdin from a pipe (spooled frames)
        cat = subprocess.Popen(["cat"], stdin=fh, stdout=subprocess.PIPE)
        piped, via_stdin = _peak_rss_mb(["classify", "--model", model, "-"], stdin=cat.stdout)
        cat.stdout.close()
        cat.wait()
    assert via_stdin.returncode == 0 and "1200.00s" in via_stdin.stdout, via_stdin.stderr
    assert piped - base < 20, f"3 s clip: {base:.0f} MB, 20 min on stdin: {piped:.0f} MB"


def test_cli_hostile_headers_are_named_errors_or_bounded(tmp_path, test_models):
    model = str(test_models["int8"])
    write_wav(tmp_path / "short.wav", tone(3.0), 16000)
    base, ok = _peak_rss_mb(["classify", "--model", model, str(tmp_path / "short.wav")])
    assert ok.returncode == 0
    noise = (np.random.default_rng(0).uniform(-0.3, 0.3, 2000)).astype(np.float32)
    one_hz = bytearray(wav_bytes(noise, 16000))
    one_hz[24:28] = (1).to_bytes(4, "little")
    (tmp_path / "one_hz.wav").write_bytes(bytes(one_hz))
    write_wav(tmp_path / "prime.wav", noise, 65521)
    peak, result = _peak_rss_mb(["classify", "--model", model, str(tmp_path / "one_hz.wav"),
                                 str(tmp_path / "prime.wav")])
    assert result.returncode == 1
    assert f"{tmp_path / 'one_hz.wav'}: implausible sample rate 1 Hz (supported: 4000..384000 Hz)" in result.stderr
    assert "prime.wav" in result.stdout and "Traceback" not in result.stderr
    assert peak - base < 20, f"{base:.0f} MB vs {peak:.0f} MB"
    with open("/dev/zero", "rb") as zero:  # stdin through the same bounded reader: a named error
        peak, result = _peak_rss_mb(["classify", "--model", model, "-"], stdin=zero)
    assert result.returncode == 1 and "<stdin>: not a RIFF/WAVE file" in result.stderr
    assert peak - base < 20


def test_cli_batch_of_odd_rates_stays_bounded(tmp_path, test_models):
    """Issue 11: 200 tiny WAVs at 16001..16200 Hz kept 16 resampler plans of ~18 MB (242 MB)."""
    model = str(test_models["int8"])
    folder = tmp_path / "odd"
    folder.mkdir()
    clip = tone(0.01)
    for rate in range(16001, 16201):
        write_wav(folder / f"r{rate}.wav", clip, rate)
    write_wav(tmp_path / "model_rate.wav", clip, 16000)  # the baseline: no resampling at all
    base, one = _peak_rss_mb(["classify", "--model", model, str(tmp_path / "model_rate.wav")])
    peak, batch = _peak_rss_mb(["classify", "--model", model, str(folder)])
    assert one.returncode == 0 and batch.returncode == 0, batch.stderr
    assert batch.stdout.count(".wav") == 200
    assert peak - base < 20, f"one file: {base:.0f} MB, 200 files: {peak:.0f} MB"
