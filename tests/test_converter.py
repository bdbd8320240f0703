"""Tests of the workstation side: corpus readers, augmentation, training smoke run, conversion.

The heavy tests (training, conversion) run real TensorFlow on a tiny model in
subprocesses; the int8 result is then loaded by ``tflite_runtime`` in another fresh
subprocess the way the device loads it. TensorFlow is never imported into the pytest
process itself: its native libraries clash with tflite_runtime, which other test files
load in-process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None:
    pytest.skip("the converter needs TensorFlow (requirements-dev.txt); make test installs it", allow_module_level=True)

from converter.corpora import (  # noqa: E402
    CorpusError, cv_folds, normalize_label, read_corpus, read_folders, read_manifest, read_ravdess,
)
from edge_ser.metadata import EMOTIONS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def write_tone(path: Path, seconds: float = 0.5, freq: float = 220.0, rate: int = 16000, seed: int = 0) -> Path:
    """A short harmonic tone with a little noise, as 16-bit mono PCM."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 5)) * 0.2
    x = x + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(rate)
        fh.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return path


# -- corpus readers ---------------------------------------------------------------------------


def test_label_synonyms_and_unknown_label():
    assert normalize_label("fear") == "fearful"
    assert normalize_label("Surprise") == "surprised"
    assert normalize_label("neu") == "neutral"
    assert normalize_label(" ANGER ") == "angry"
    assert normalize_label("pleasant surprise") == "surprised"
    with pytest.raises(CorpusError, match="unknown emotion label 'bored'"):
        normalize_label("bored")


def test_ravdess_names_give_emotion_and_actor(tmp_path):
    write_tone(tmp_path / "Actor_03" / "03-01-06-02-01-02-03.wav")
    write_tone(tmp_path / "Actor_12" / "03-01-08-01-02-01-12.wav")
    write_tone(tmp_path / "Actor_12" / "03-02-05-01-02-01-12.wav")  # song: skipped
    (tmp_path / "Actor_12" / "notes.txt").write_text("not audio")
    items = read_ravdess(tmp_path)
    assert [(i.label, i.speaker) for i in items] == [("fearful", "03"), ("surprised", "12")]
    assert read_corpus(tmp_path) == items


def test_ravdess_bad_name_is_a_clear_error(tmp_path):
    write_tone(tmp_path / "Actor_01" / "recording.wav")
    with pytest.raises(CorpusError, match="not a RAVDESS file name"):
        read_ravdess(tmp_path)


def test_ravdess_real_corpus(ravdess_dir):
    items = read_ravdess(ravdess_dir)
    assert len(items) == 1200
    by_label = {e: sum(1 for i in items if i.label == e) for e in EMOTIONS}
    assert by_label["neutral"] == 80 and by_label["angry"] == 160
    folds = cv_folds(items)
    assert [n for n, _ in folds] == [1, 2, 3, 4, 5]  # fold 6's actors are absent


def test_folder_layout_with_and_without_speaker_folders(tmp_path):
    write_tone(tmp_path / "happy" / "spk1_a.wav")
    write_tone(tmp_path / "fear" / "bob" / "x.wav")
    items = read_folders(tmp_path)
    assert {(i.label, i.speaker) for i in items} == {("happy", "spk1"), ("fearful", "bob")}
    assert all(i.corpus == tmp_path.name for i in items)


def test_folder_layout_unknown_label_folder(tmp_path):
    write_tone(tmp_path / "sleepy" / "a.wav")
    with pytest.raises(CorpusError, match="sleepy"):
        read_folders(tmp_path)


def test_csv_manifest(tmp_path):
    write_tone(tmp_path / "audio" / "one.wav")
    write_tone(tmp_path / "audio" / "two.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,speaker\naudio/one.wav,surprise,s1\n" f"{tmp_path / 'audio' / 'two.wav'},neu,\n")
    items = read_manifest(manifest)
    assert [(i.label, i.speaker) for i in items] == [("surprised", "s1"), ("neutral", "two")]
    assert read_corpus(manifest) == items


def test_csv_manifest_errors(tmp_path):
    write_tone(tmp_path / "a.wav")
    bad_label = tmp_path / "bad.csv"
    bad_label.write_text("path,label\na.wav,joyful-ish\n")
    with pytest.raises(CorpusError, match=r"bad.csv:2: unknown emotion label"):
        read_manifest(bad_label)
    missing = tmp_path / "missing.csv"
    missing.write_text("path,label\nnope.wav,sad\n")
    with pytest.raises(CorpusError, match="does not exist"):
        read_manifest(missing)
    no_header = tmp_path / "nohead.csv"
    no_header.write_text("a.wav,sad\n")
    with pytest.raises(CorpusError, match="header"):
        read_manifest(no_header)


# -- augmentation and cache ---------------------------------------------------------------------


def test_augmentation_is_deterministic_and_keeps_length_plausible():
    from converter.augment import augment_audio, coloured_noise, spec_augment

    x = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * 0.3
    a, desc_a = augment_audio(x, 16000, np.random.default_rng(5))
    b, desc_b = augment_audio(x, 16000, np.random.default_rng(5))
    assert desc_a == desc_b and np.array_equal(a, b)
    assert 0.85 * x.size < a.size < 1.15 * x.size
    assert np.max(np.abs(a)) <= 0.99 + 1e-6
    brown = coloured_noise(4096, "brown", np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(brown)) ** 2
    assert spec[1:50].mean() > 100 * spec[-500:].mean()  # energy falls with frequency
    w = np.random.default_rng(0).standard_normal((300, 64)).astype(np.float32)
    masked = spec_augment(w, np.random.default_rng(1), time_width=40, freq_width=10)
    assert masked.shape == w.shape and np.sum(masked == w.min()) > 1


def test_spec_augment_on_two_views_masks_the_same_bands_in_each_with_its_own_minimum():
    """log-mel + PCEN windows (edge-db-pcen): a missing band is missing from both views, each
    filled with its block's minimum (as padding does); one block draws exactly as before."""
    from converter.augment import spec_augment

    rng = np.random.default_rng(0)
    db, pcen = rng.normal(-40, 10, (300, 16)), rng.normal(1, 0.2, (300, 16))
    both = np.concatenate([db, pcen], axis=1).astype(np.float32)
    masked = spec_augment(both, np.random.default_rng(4), time_masks=0, freq_masks=1, freq_width=6, blocks=2)
    hit_db = np.flatnonzero((masked[:, :16] == both[:, :16].min()).all(axis=0))
    hit_pcen = np.flatnonzero((masked[:, 16:] == both[:, 16:].min()).all(axis=0))
    assert hit_db.size and hit_db.tolist() == hit_pcen.tolist()
    timed = spec_augment(both, np.random.default_rng(4), time_masks=1, time_width=40, freq_masks=0, blocks=2)
    rows = np.flatnonzero((timed != both).any(axis=1))
    assert rows.size and (timed[rows, :16] == both[:, :16].min()).all() and (timed[rows, 16:] == both[:, 16:].min()).all()
    one = both[:, :16].copy()
    a = spec_augment(one, np.random.default_rng(9))
    b = spec_augment(one, np.random.default_rng(9), blocks=1)
    assert np.array_equal(a, b) and np.sum(a == one.min()) > 1


def test_a_band_warp_moves_a_tone_to_the_band_of_its_frequency_times_the_factor():
    """VTLP on log-mel: a 1 kHz tone warped by 1.1 peaks in the band centred nearest 1.1 kHz, by
    0.9 nearest 900 Hz; both views of a two-block window move alike; a factor of 1 changes
    nothing, and a recipe without a warp draws its windows exactly as before."""
    from converter.augment import training_window, warp_bands
    from edge_ser.features import log_mel, mel_band_centres, mel_filterbank, preset

    config = preset("edge")
    centres = mel_band_centres(config)
    peaks_hz = mel_filterbank(config).argmax(axis=0) * config.sample_rate / config.n_fft
    assert np.all(np.abs(peaks_hz - centres) <= config.sample_rate / config.n_fft)  # the triangles' peaks
    t = np.arange(config.sample_rate) / config.sample_rate
    tone = log_mel((0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32), config)
    assert abs(centres[tone.mean(axis=0).argmax()] - 1000.0) < 40.0
    for factor in (1.1, 0.9):
        warped = warp_bands(tone, factor, centres)
        assert warped.shape == tone.shape and warped.dtype == tone.dtype
        assert np.argmin(np.abs(centres - 1000.0 * factor)) == warped.mean(axis=0).argmax()
    assert np.allclose(warp_bands(tone, 1.0, centres), tone)
    both = np.concatenate([tone, tone + 5.0], axis=1)
    moved = warp_bands(both, 1.1, centres, blocks=2)
    assert np.allclose(moved[:, 64:], moved[:, :64] + 5.0)
    with pytest.raises(ValueError, match="columns"):
        warp_bands(both, 1.1, centres)
    long = np.tile(tone, (4, 1))
    plain = training_window(long, 300, np.random.default_rng(3))
    assert np.array_equal(plain, training_window(long, 300, np.random.default_rng(3), band_warp=0.0))
    assert not np.array_equal(plain, training_window(long, 300, np.random.default_rng(3), band_warp=0.1,
                                                     centres_hz=centres))
    with pytest.raises(ValueError, match="centre"):
        training_window(long, 300, np.random.default_rng(3), band_warp=0.1)


def test_a_recipe_computing_short_crops_from_the_mel_hears_them_as_the_device_hears_the_cut_audio(tmp_path):
    """``Recipe.short_from_mel``: each clip's mel spectrogram in dB is cached beside its features
    (from the same augmented audio), and a shortened training crop is the device's features of
    the cut audio (PCEN from the crop's first frame, normalized over the crop), not rows cut
    from the whole clip's PCEN; the random draws are those of any other crop."""
    from dataclasses import replace

    from converter.audio_io import load_clip
    from converter.augment import training_window
    from converter.corpora import Item
    from converter.train import ClipSet, Recipe, class_weights, clip_window, epoch_batch, load_clipset
    from edge_ser.features import log_mel, normalize_utterance, preset

    rate = 16000
    t = np.arange(4 * rate) / rate
    paths = []
    for k, freq in enumerate((180.0, 260.0)):  # syllables: a tone switched on and off
        x = 0.3 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * (1.3 + k) * t) > 0.2)
        x = x + 0.003 * np.random.default_rng(k).standard_normal(t.size)
        path = tmp_path / f"c{k}.wav"
        with wave.open(str(path), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(rate)
            fh.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
        paths.append(path)
    items = [Item(str(p), "happy", f"s{k}", "toy") for k, p in enumerate(paths)]
    config = preset("edge-pcen")
    data = load_clipset(items, config, 1, tmp_path / "cache", with_mel_db=True)
    assert len(data.mel_db) == 2 and all(len(v) == 2 for v in data.mel_db)
    for feats, mel in zip(data.feats, data.mel_db):
        assert [f.shape[0] for f in feats] == [m.shape[0] for m in mel] and mel[0].shape[1] == 64
    assert data.mel_db[0][1].dtype == np.float16  # an augmented copy, stored lean like its features
    assert data.subset(["s1"]).mel_db == [data.mel_db[1]]

    recipe = replace(Recipe(features="edge-pcen"), short_from_mel=True, min_frames=40, short_fraction=1.0)
    audio = load_clip(str(paths[0]), rate)
    hop, frame = config.hop_length, config.frame_length

    def device(start: int, length: int) -> np.ndarray:  # the device's features of the cut audio
        return log_mel(audio[start * hop:(start + length - 1) * hop + frame], config)

    def cut_rows(start: int, length: int) -> np.ndarray:  # rows of the whole clip, normalized again
        return normalize_utterance(data.feats[0][0][start:start + length], config)

    differs = 0
    for seed in range(8):
        got = clip_window(data, 0, 0, recipe, np.random.default_rng(seed))
        want = training_window(data.feats[0][0], 300, np.random.default_rng(seed), 1.0, 40, shortened=device)
        np.testing.assert_allclose(got, want, atol=1e-3)
        old = training_window(data.feats[0][0], 300, np.random.default_rng(seed), 1.0, 40, shortened=cut_rows)
        differs += not np.allclose(got, old, atol=0.05)
        np.testing.assert_allclose(clip_window(data, 0, 0, replace(recipe, short_from_mel=False, short_normalized=True),
                                               np.random.default_rng(seed)), old, atol=1e-5)
    assert differs >= 6  # the smoother's start is what the cut rows got wrong
    with pytest.raises(ValueError, match="short_from_mel"):
        clip_window(ClipSet(data.items, data.feats), 0, 0, recipe, np.random.default_rng(0))
    x, _, _ = epoch_batch(data, recipe, class_weights(data.labels), np.random.default_rng(0))  # epoch mode too
    assert x.shape == (2, 300, 64, 1)
    with pytest.raises(ValueError, match="short_from_mel"):
        epoch_batch(ClipSet(data.items, data.feats), recipe, class_weights(data.labels), np.random.default_rng(0))


def test_feature_cache_reuses_entries(tmp_path):
    from converter.cache import FeatureCache
    from edge_ser.features import log_mel, preset

    clip = write_tone(tmp_path / "c.wav", seconds=1.0)
    cache = FeatureCache(preset("edge"), tmp_path / "cache")
    first = cache.get_many([str(clip)], variants=(0, 1), workers=1, progress=False)
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 2
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = cache.get_many([str(clip)], variants=(0, 1), workers=1, progress=False)
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    assert np.array_equal(first[(str(clip), 0)], again[(str(clip), 0)])
    from converter.audio_io import load_clip

    assert np.allclose(first[(str(clip), 0)], log_mel(load_clip(str(clip)), preset("edge")))
    assert not np.array_equal(first[(str(clip), 0)].shape, ()) and (str(clip), 1) in again



def test_feature_cache_keys_by_content_not_time(tmp_path):
    """A corpus copied again (same bytes, new times) keeps its entries; new bytes get new ones."""
    from converter.audio_io import load_clip
    from converter.cache import FeatureCache
    from edge_ser.features import log_mel, preset

    clip = write_tone(tmp_path / "c.wav", seconds=1.0)
    cache = FeatureCache(preset("edge"), tmp_path / "cache")
    cache.get_many([str(clip)], variants=(0,), workers=1, progress=False)
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))  # what a fresh copy of the corpus looks like
    cache.get_many([str(clip)], variants=(0,), workers=1, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 1
    write_tone(clip, seconds=1.0, freq=330.0)
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))  # other bytes, the same size and time
    changed = cache.get_many([str(clip)], variants=(0,), workers=1, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2
    assert np.allclose(changed[(str(clip), 0)], log_mel(load_clip(str(clip)), preset("edge")))



def test_runs_sharing_the_cache_split_its_missing_entries_and_wait_for_the_ones_another_is_computing(
        tmp_path, monkeypatch):
    """An entry another run holds the lock of is skipped, the rest filled, then the skipped one waited
    for; if that run wrote it meanwhile, it is read, not computed again; if not (killed), it is computed."""
    import contextlib
    import fcntl
    import threading

    from converter import cache as cache_module
    from converter.cache import FeatureCache
    from edge_ser.features import preset

    clips = [str(write_tone(tmp_path / f"c{i}.wav", seconds=1.0, freq=220.0 + 110 * i)) for i in range(3)]
    cache = FeatureCache(preset("edge"), tmp_path / "cache")
    taken, free, killed = (cache._target(c, 0) for c in clips)
    os.makedirs(os.path.dirname(taken), exist_ok=True)
    os.makedirs(os.path.dirname(killed), exist_ok=True)
    computed, real = [], cache_module.compute_features

    def counting(path, *args, **kwargs):
        computed.append(path)
        return real(path, *args, **kwargs)

    other_run = os.open(taken + ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(other_run, fcntl.LOCK_EX)
    killed_run = os.open(killed + ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(killed_run, fcntl.LOCK_EX)
    monkeypatch.setattr(cache_module, "compute_features", counting)
    try:
        got = {}
        fill = threading.Thread(target=lambda: got.update(cache.get_many(clips, workers=1, progress=False)))
        fill.start()
        deadline = time.monotonic() + 60
        while not os.path.exists(free) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(free) and fill.is_alive() and computed == [clips[1]]  # the free one first
        features = real(clips[0], preset("edge"), 0, 0)
        np.save(taken, features.astype(np.float32))  # the other run writes its entry, then lets go
        os.close(other_run)
        os.close(killed_run)  # this one dies without writing
        other_run = killed_run = -1
    finally:
        for fd in (other_run, killed_run):
            with contextlib.suppress(OSError):
                os.close(fd)
    fill.join(60)
    assert not fill.is_alive()
    assert computed == [clips[1], clips[2]]  # the entry the other run wrote was read, not computed
    assert np.array_equal(got[(clips[0], 0)], features) and os.path.exists(killed)
    assert not list((tmp_path / "cache").rglob("*.lock"))  # every lock file went with its entry


def test_far_field_draws_have_their_own_cache_entries_and_draw_zero_keeps_its_key(tmp_path):
    """Several far-field draws of a clip are several entries; the first keeps the key it always had."""
    import hashlib

    from converter.cache import Treatment, content_digest, entry_key
    from edge_ser.features import preset

    clip = str(write_tone(tmp_path / "c.wav", seconds=0.5))
    config = preset("edge")
    far = Treatment(farfield=True)
    keys = [entry_key(clip, config, 0, draw, far) for draw in range(3)]
    assert len(set(keys)) == 3
    before = "|".join([config.hash(), os.path.abspath(clip), content_digest(clip), "0", "farfield-v1"])
    assert keys[0] == hashlib.sha256(before.encode("utf-8")).hexdigest()[:24]
    # a clean clip is the same whatever the seed: one entry
    assert entry_key(clip, config, 0, 0, Treatment()) == entry_key(clip, config, 0, 5, Treatment())


# -- training smoke test -------------------------------------------------------------------------


def _synth_corpus(root: Path) -> Path:
    """8 classes x 3 speakers of short tones that differ by pitch per class."""
    for e, label in enumerate(EMOTIONS):
        for s in range(3):
            for r in range(2):
                write_tone(root / label / f"spk{s}_{r}.wav", seconds=1.2 + 0.4 * r, freq=120 + 60 * e,
                           seed=100 * e + 10 * s + r)
    return root


def run_converter(args, cwd=ROOT, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([PY, "-m", "converter", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def check_in_tflite_runtime(model_path: Path, wav: Path) -> dict:
    """Load the model with tflite_runtime in a fresh process (never beside TensorFlow)."""
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from tflite_runtime.interpreter import Interpreter
        from edge_ser.metadata import load_metadata
        from edge_ser.features import log_mel
        from edge_ser.windows import split_windows
        from converter.audio_io import load_clip
        meta = load_metadata({str(model_path)!r})
        it = Interpreter(model_path={str(model_path)!r})
        it.allocate_tensors()
        inp, out = it.get_input_details()[0], it.get_output_details()[0]
        feats = log_mel(load_clip({str(wav)!r}, meta.feature_config.sample_rate), meta.feature_config)
        wins, _ = split_windows(feats, meta.window_frames, meta.hop_frames, meta.feature_config.n_blocks)
        scale, zero = inp["quantization"]
        probs = []
        for w in wins:
            q = np.clip(np.round(w / scale + zero), -128, 127).astype(np.int8).reshape(inp["shape"])
            it.set_tensor(inp["index"], q)
            it.invoke()
            o = it.get_tensor(out["index"])[0].astype(np.float32)
            probs.append((o - out["quantization"][1]) * out["quantization"][0])
        p = np.mean(probs, axis=0)
        # the device's own classifier on the same file, through the same runtime
        from edge_ser.classify import Classifier
        clf = Classifier({str(model_path)!r}, backend="tflite-runtime")
        pred = clf.classify_file({str(wav)!r})
        device_p = [pred.probabilities[l] for l in meta.labels]
        print(json.dumps({{"classifier_gap": float(np.max(np.abs(np.array(device_p) - p))),
                          "classifier_backend": clf.backend_name,"labels": list(meta.labels), "shape": [int(d) for d in inp["shape"]],
                          "in_dtype": str(inp["dtype"].__name__), "out_dtype": str(out["dtype"].__name__),
                          "sum": float(p.sum()), "top": meta.labels[int(p.argmax())],
                          "hash": meta.feature_hash, "extra_keys": sorted(meta.extra)}}))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("features", ["edge", "edge-pcen", "edge-db-pcen"])
def test_train_one_epoch_quantize_and_run_on_device_runtime(tmp_path, features):
    """The model file carries the features it was trained on, and the device computes them:
    its streaming classifier equals the whole-clip features fed by hand (PCEN, and log-mel
    and PCEN side by side, included)."""
    from edge_ser.features import preset

    data = _synth_corpus(tmp_path / "corpus")
    out = tmp_path / "tiny.tflite"
    card = tmp_path / "CARD.md"
    proc = run_converter([
        "train", "--data", str(data), "--cache", str(tmp_path / "cache"), "--epochs", "1",
        "--channels", "4,8,8", "--aug-variants", "1", "--cv-results", "", "--val-speakers", "1",
        "--features", features,
        "--out", str(out), "--card", str(card), "--keras-out", str(tmp_path / "tiny.keras"),
    ])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "integer only: True" in proc.stdout
    assert out.stat().st_size < 250 * 1024
    assert "Limits and intended use" in card.read_text()
    assert f"preset `{features}`" in card.read_text()
    result = check_in_tflite_runtime(out, data / "happy" / "spk0_0.wav")
    assert result["labels"] == list(EMOTIONS)
    assert result["shape"] == [1, 300, preset(features).n_features, 1]
    assert result["in_dtype"] == "int8" and result["out_dtype"] == "int8"
    assert abs(result["sum"] - 1.0) < 0.05
    assert result["classifier_gap"] < 1e-5, result
    assert {"corpora", "protocol", "command", "trained", "params"} <= set(result["extra_keys"])
    assert result["hash"] == preset(features).hash()

    # the saved Keras model re-quantizes through the quantize command (float16 variant too),
    # labelled with the preset its training record names, never silently with edge's
    q = run_converter(["quantize", str(tmp_path / "tiny.keras"), "--variant", "float16",
                       "--out", str(tmp_path / "f16.tflite")])
    assert q.returncode == 0, q.stderr[-2000:]
    assert json.loads(q.stdout)["size_bytes"] > 0
    from edge_ser.metadata import load_metadata

    assert load_metadata(str(tmp_path / "f16.tflite")).feature_hash == preset(features).hash()
    if preset(features).n_features != preset("edge").n_features:
        wrong = run_converter(["quantize", str(tmp_path / "tiny.keras"), "--variant", "float16", "--features",
                               "edge", "--out", str(tmp_path / "wrong.tflite")])
        assert wrong.returncode != 0 and not (tmp_path / "wrong.tflite").exists()
        assert "tiny.keras" in wrong.stderr and "128 feature columns" in wrong.stderr, wrong.stderr[-2000:]


@pytest.mark.slow
def test_cv_on_a_corpus_without_ravdess_actors_folds_by_speaker(tmp_path):
    data = _synth_corpus(tmp_path / "corpus")
    results = tmp_path / "results"
    proc = run_converter(["cv", "--data", str(data), "--cache", str(tmp_path / "cache"), "--epochs", "1",
                          "--channels", "4,8,8", "--aug-variants", "1", "--results", str(results),
                          "--work", str(tmp_path / "work")])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "3 folds by speaker" in proc.stdout
    summary = json.loads((results / "cv.json").read_text())
    assert [f["test_speakers"] for f in summary["folds"]] == [["spk0"], ["spk1"], ["spk2"]]
    for fold in summary["folds"]:
        assert fold["clips"] == 16 and fold["integer_only"]
        for kind in ("float", "int8"):
            assert 0.0 <= fold[kind]["ua"] <= 1.0
            assert np.asarray(fold[kind]["confusion"]).sum() == 16
        assert 0.0 <= fold["agreement"] <= 1.0
    assert "| **mean** |" in (results / "cv.md").read_text()
    assert (results / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_cv_stopped_midway_resumes_its_fold_and_reads_finished_folds_back(tmp_path):
    data = _synth_corpus(tmp_path / "corpus")
    work, results = tmp_path / "work", tmp_path / "results"
    args = ["cv", "--data", str(data), "--cache", str(tmp_path / "cache"), "--epochs", "6", "--channels", "4,8,8",
            "--aug-variants", "1", "--results", str(results), "--work", str(work)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    first = subprocess.Popen([PY, "-m", "converter", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    checkpoint = work / "fold1.checkpoint.npz"
    try:
        while not checkpoint.exists() and first.poll() is None:
            time.sleep(0.02)
    finally:
        first.kill()
        first.wait()
    # stopped after fold 1's first epoch: five more epochs and a conversion were still to come
    assert checkpoint.exists() and not (work / "fold1.json").exists()

    again = run_converter(args)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    assert f"resumed from {checkpoint}" in again.stdout
    assert sorted(p.name for p in work.iterdir()) == [f"fold{n}.{ext}" for n in (1, 2, 3) for ext in ("json", "tflite")]
    folds = json.loads((results / "cv.json").read_text())["folds"]
    assert [f["fold"] for f in folds] == [1, 2, 3]

    third = run_converter(args + ["--save-models", str(tmp_path / "kept")])
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-3000:]
    assert third.stdout.count("done already") == 3 and " loss " not in third.stdout  # no epoch trained
    assert json.loads((results / "cv.json").read_text())["folds"] == folds
    assert (tmp_path / "kept" / "fold2.tflite").read_bytes() == (work / "fold2.tflite").read_bytes()
    # another recipe (a longer schedule) does not reuse them
    fourth = run_converter([a if a != "6" else "2" for a in args] + ["--folds", "1"])
    assert fourth.returncode == 0 and "another training's" in fourth.stdout, fourth.stdout[-2000:]


TINY_SEED_MODEL = """
import sys
import keras
from keras import layers
with_channel, path = sys.argv[1] == "1", sys.argv[2]
keras.utils.set_random_seed(3)
shape = (126, 128, 1) if with_channel else (126, 128)
inputs = keras.Input(shape=shape)
x = inputs if with_channel else layers.Reshape((126, 128, 1))(inputs)
x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
x = layers.GlobalAveragePooling2D()(x)
outputs = layers.Dense(8, activation="softmax")(x)
keras.Model(inputs, outputs).save(path)
"""


def _tiny_seed_model(tmp_path: Path, with_channel: bool, suffix: str) -> Path:
    """A Keras model shaped like the ancestor's (4 s of 128 seed-preset mels), built in a subprocess."""
    path = tmp_path / f"seed{suffix}"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([PY, "-c", TINY_SEED_MODEL, "1" if with_channel else "0", str(path)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


@pytest.mark.slow
@pytest.mark.parametrize("with_channel,suffix", [(True, ".keras"), (False, ".h5")])
def test_convert_user_model_with_seed_preset(tmp_path, with_channel, suffix):
    model = _tiny_seed_model(tmp_path, with_channel, suffix)
    calib = tmp_path / "calib"
    for i in range(4):
        write_tone(calib / f"c{i}.wav", seconds=2.0 + i, freq=150 + 40 * i, seed=i)
    out = tmp_path / "user.tflite"
    proc = run_converter(["convert", str(model), "--preset", "seed", "--calibration", str(calib),
                          "--labels", ",".join(EMOTIONS), "--out", str(out)])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert report["window_frames"] == 126 and report["integer_only"]
    assert 0.0 <= report["top1_agreement_float_vs_int8"] <= 1.0
    result = check_in_tflite_runtime(out, calib / "c3.wav")
    from edge_ser.features import preset

    assert result["hash"] == preset("seed").hash()
    assert result["shape"][1:3] == [126, 128]


@pytest.mark.slow
def test_convert_rejects_feature_mismatch_and_label_count(tmp_path):
    model = _tiny_seed_model(tmp_path, True, ".keras")
    calib = tmp_path / "calib"
    write_tone(calib / "c.wav", seconds=2.0)
    proc = run_converter(["convert", str(model), "--preset", "edge", "--calibration", str(calib),
                          "--labels", ",".join(EMOTIONS), "--out", str(tmp_path / "x.tflite")])
    assert proc.returncode == 2
    assert "takes 128 features per frame but the feature config gives 64" in proc.stderr
    proc = run_converter(["convert", str(model), "--preset", "seed", "--calibration", str(calib),
                          "--labels", "a,b,c", "--out", str(tmp_path / "x.tflite")])
    assert proc.returncode == 2 and "8 outputs but 3 labels" in proc.stderr
    assert not (tmp_path / "x.tflite").exists()
