"""Classifier: the whole-clip pipeline on real and synthesized audio, edge cases, the API."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edge_ser.audio import load_audio, resample, write_wav
from edge_ser.classify import Classifier, Prediction, _cached_classifier, predict_emotion
from edge_ser.errors import AudioError
from edge_ser.features import log_mel, num_frames
from edge_ser.wav import wav_bytes
from edge_ser.windows import window_starts
from runtime_fixtures import noise, test_models, tone  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def classifier(test_models) -> Classifier:
    return Classifier(test_models["int8"], num_threads=1)


def _check_prediction(pred: Prediction, labels) -> None:
    assert list(pred.probabilities) == list(labels)  # every label, model order
    assert pred.label == max(pred.probabilities, key=pred.probabilities.get)
    assert pred.confidence == pred.probabilities[pred.label]
    assert 0.0 <= pred.confidence <= 1.0
    assert pred.windows, "at least one window"
    mean = np.mean([[w.probabilities[k] for k in labels] for w in pred.windows], axis=0)
    assert np.allclose(mean, list(pred.probabilities.values()), atol=1e-6)


def test_corpus_clip_is_classified_window_by_window(classifier, ravdess_dir):
    path = ravdess_dir / "Actor_01" / "03-01-05-02-01-01-01.wav"
    samples, rate = load_audio(path)
    pred = classifier.classify_file(path, windows=True)
    assert classifier.classify_file(path).windows == []  # per-window results only when asked
    _check_prediction(pred, classifier.labels)
    assert pred.source == str(path)
    assert pred.duration == pytest.approx(samples.size / rate)
    meta = classifier.metadata
    n_frames = num_frames(samples.size, meta.feature_config)
    starts = window_starts(n_frames, meta.window_frames, meta.hop_frames)
    assert [round(w.start_s * 100) for w in pred.windows] == starts  # 10 ms hop
    assert pred.windows[-1].end_s <= pred.duration + 1e-9
    # bytes and a file object give the same answer as the path
    raw = path.read_bytes()
    assert classifier.classify_file(raw, name="clip").probabilities == pred.probabilities
    with open(path, "rb") as fh:
        assert classifier.classify_file(fh).probabilities == pred.probabilities


def test_signal_at_another_rate_is_resampled_to_the_model_rate(classifier):
    x48 = tone(2.0, rate=48000)
    via_signal = classifier.classify_signal(x48, 48000)
    via_resample = classifier.classify_signal(resample(x48, 48000, 16000), 16000)
    assert via_signal.probabilities == via_resample.probabilities
    assert via_signal.duration == pytest.approx(2.0, abs=1e-3)
    # and a 48 kHz WAV file is taken the same way
    from_file = classifier.classify_file(wav_bytes(x48, 48000, sample_format="float32"))
    assert np.allclose(list(from_file.probabilities.values()), list(via_signal.probabilities.values()), atol=1e-6)


def test_integer_pcm_and_stereo_signals(classifier):
    x = tone(1.5)
    pcm = np.round(x * 32767).astype(np.int16)
    as_float = classifier.classify_signal(pcm.astype(np.float32) / 32768, 16000)
    assert classifier.classify_signal(pcm, 16000).probabilities == as_float.probabilities
    stereo = np.stack([x, x], axis=1)
    assert classifier.classify_signal(stereo, 16000).probabilities == classifier.classify_signal(x, 16000).probabilities


def test_empty_silent_and_very_short_audio_have_a_defined_answer(classifier):
    empty = classifier.classify_signal(np.zeros(0, np.float32), 16000, windows=True)
    assert empty.duration == 0.0 and len(empty.windows) == 1
    _check_prediction(empty, classifier.labels)
    silent = classifier.classify_signal(np.zeros(16000, np.float32), 16000, windows=True)
    assert silent.probabilities == empty.probabilities  # silence normalizes to the all-pad window
    assert silent.duration == 1.0 and len(silent.windows) == 1
    blip = classifier.classify_signal(tone(0.01), 16000, windows=True)  # 160 samples: less than one frame
    assert len(blip.windows) == 1 and blip.windows[0].end_s == pytest.approx(0.01)
    # an empty WAV file (header only) is decoded to zero samples and gets the same answer
    assert classifier.classify_file(wav_bytes(np.zeros(0, np.float32), 16000)).probabilities == empty.probabilities
    # the label of silence means nothing, and the prediction says so
    assert empty.silent and silent.silent and empty.level_db == silent.level_db == -120.0
    assert empty.to_dict()["silent"] is True
    assert not blip.silent and blip.level_db > -40


def test_level_and_silent_flag_follow_the_signal_level(classifier):
    def at_level(x, dbfs):
        return (x * 10 ** (dbfs / 20) / np.sqrt(np.mean(np.square(x, dtype=np.float64)))).astype(np.float32)

    quiet_room = classifier.classify_signal(at_level(noise(1.0), -70.0), 16000)
    assert quiet_room.silent and quiet_room.level_db == pytest.approx(-70.0, abs=0.1)
    talking = classifier.classify_signal(at_level(tone(1.0), -30.0), 16000)
    assert not talking.silent and talking.level_db == pytest.approx(-30.0, abs=0.1)
    # 48 kHz input: the level is measured after resampling, on what the model hears
    loud = classifier.classify_signal(at_level(tone(1.0, rate=48000), -20.0), 48000)
    assert loud.level_db == pytest.approx(-20.0, abs=0.5)


def test_long_clip_is_covered_by_overlapping_windows(classifier):
    x = np.concatenate([tone(4.0, f0=140), noise(3.5)])
    pred = classifier.classify_signal(x, 16000, windows=True)
    frames = log_mel(x, classifier.metadata.feature_config).shape[0]
    starts = window_starts(frames, 300, 100)
    assert len(pred.windows) == len(starts) > 4
    assert pred.windows[-1].end_s == pytest.approx(frames / 100)
    _check_prediction(pred, classifier.labels)


def test_bad_signals_are_audio_errors(classifier):
    with pytest.raises(AudioError, match="NaN"):
        classifier.classify_signal(np.array([0.0, np.nan] * 1000, np.float32), 16000, source="x")
    with pytest.raises(AudioError, match="sample rate"):
        classifier.classify_signal(tone(1.0), 0)
    with pytest.raises(AudioError, match="shape"):
        classifier.classify_signal(np.zeros((2, 2, 2), np.float32), 16000)
    with pytest.raises(AudioError, match="not a RIFF/WAVE"):
        classifier.classify_file(b"plain text, not audio", name="note.txt")
    with pytest.raises(ValueError, match=r"\(frames, 64\)"):
        classifier.classify_features(np.zeros((10, 13), np.float32))


def test_prediction_top_and_json(classifier):
    pred = classifier.classify_signal(tone(3.5), 16000, source="tone", windows=True)
    top = pred.top(3)
    assert len(top) == 3 and top[0] == (pred.label, pred.confidence)
    assert top[0][1] >= top[1][1] >= top[2][1]
    data = json.loads(json.dumps(pred.to_dict()))
    assert data["label"] == pred.label and data["source"] == "tone"
    assert len(data["windows"]) == len(pred.windows) and "windows" not in pred.to_dict(windows=False)
    with pytest.raises(Exception):
        pred.label = "happy"  # frozen


def test_float_logits_model_through_the_classifier(test_models):
    clf = Classifier(test_models["float_logits"])
    pred = clf.classify_signal(tone(2.0), 16000, windows=True)
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert clf.model_id.startswith("edge-ser-float@test-1#")


def test_classifier_is_safe_to_share_between_threads(classifier):
    clips = [tone(3.2, f0=120 + 20 * i, seed=i) for i in range(4)]
    expected = [classifier.classify_signal(c, 16000).probabilities for c in clips]
    results = [None] * 8

    def work(i):
        results[i] = classifier.classify_signal(clips[i % 4], 16000).probabilities

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected * 2


def test_predict_emotion_keeps_the_ancestors_call(tmp_path, test_models, monkeypatch):
    clip = tmp_path / "speech.wav"
    write_wav(clip, tone(2.5), 16000)
    _cached_classifier.cache_clear()
    label, percent = predict_emotion(str(clip), model_path=str(test_models["int8"]))
    assert isinstance(label, str) and isinstance(percent, float)
    assert 0.0 < percent <= 100.0
    expected = Classifier(test_models["int8"]).classify_file(clip)
    assert (label, percent) == (expected.label, round(expected.confidence * 100, 2))
    # the default model (here via EDGE_SER_MODEL) resolves to the same cached classifier
    monkeypatch.setenv("EDGE_SER_MODEL", str(test_models["int8"]))
    assert predict_emotion(clip) == (label, percent)
    info = _cached_classifier.cache_info()
    assert info.misses == 1 and info.hits == 1


def test_lazy_exports_from_the_package():
    import edge_ser

    assert edge_ser.Classifier is Classifier and edge_ser.predict_emotion is predict_emotion
    assert edge_ser.__version__ == "0.1.0"
    with pytest.raises(AttributeError):
        edge_ser.no_such_name  # noqa: B018
