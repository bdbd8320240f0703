"""The feature frontend (edge_ser.features) against the libraries it replaces.

Parity runs on real speech (RAVDESS clips, via the ``ravdess_dir`` fixture) and on
white noise: librosa for the ``librosa``/``seed`` presets and the filterbanks,
python_speech_features for ``psf``/``psf_mfcc``. Streaming must reproduce the batch
path for every preset and padding mode, and the ``edge`` preset's hash is pinned so an
accidental change of the shipped features fails here first.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List

import numpy as np
import pytest

from edge_ser.errors import FeatureConfigError
from edge_ser.features import (PRESETS, FeatureConfig, StreamingFeatures, frame_features, log_mel,
                               mel_filterbank, num_frames, preset, utterance_stage)
from edge_ser.wav import read_wav

#: The shipped model was trained on exactly these features. Do not update this value
#: unless a new model is trained and shipped with the new features.
EDGE_HASH = "c74e1876d219c689"

CLIP_IDS = ["speech-a", "speech-b", "speech-c", "noise"]


@pytest.fixture(scope="module")
def librosa():
    return pytest.importorskip("librosa", reason="librosa (requirements-dev.txt); make test installs it")


@pytest.fixture(scope="module")
def psf():
    return pytest.importorskip("python_speech_features", reason="python_speech_features; make test installs it")


@pytest.fixture(scope="module")
def corpus_clips(ravdess_dir) -> List[np.ndarray]:
    """Three clips: different actors (male/female) and emotions (neutral, angry, sad)."""
    names = ["Actor_01/03-01-01-01-01-01-01.wav", "Actor_02/03-01-05-02-01-01-02.wav",
             "Actor_11/03-01-04-01-02-02-11.wav"]
    return [read_wav(ravdess_dir / name).samples for name in names]


@pytest.fixture(params=CLIP_IDS)
def clip(request) -> np.ndarray:
    """Real speech from the corpus (skipped if absent) or seeded white noise."""
    if request.param == "noise":
        return (np.random.default_rng(0).standard_normal(24000) * 0.1).astype(np.float32)
    clips = request.getfixturevalue("corpus_clips")
    return clips[CLIP_IDS.index(request.param)]


# --------------------------------------------------------------------------- librosa presets

LIBROSA_FRAMES = [(512, 128), (1024, 256), (2048, 512)]
LIBROSA_BANDS = [(0.0, None), (50.0, 8000.0), (300.0, 4000.0)]


@pytest.mark.dev
@pytest.mark.filterwarnings("ignore:Empty filters detected")
@pytest.mark.parametrize("fmin,fmax", LIBROSA_BANDS)
@pytest.mark.parametrize("mel_norm", ["slaney", None])
@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
@pytest.mark.parametrize("n_fft,hop", LIBROSA_FRAMES)
def test_librosa_preset_matches_melspectrogram_power_to_db(librosa, clip, n_fft, hop, mel_scale,
                                                           mel_norm, fmin, fmax):
    config = preset("librosa").replace(n_fft=n_fft, hop_length=hop, mel_scale=mel_scale,
                                       mel_norm=mel_norm, fmin=fmin, fmax=fmax)
    mel = librosa.feature.melspectrogram(
        y=clip, sr=16000, n_fft=n_fft, hop_length=hop, center=True, pad_mode="constant",
        n_mels=128, fmin=fmin, fmax=fmax, htk=mel_scale == "htk", norm=mel_norm, power=2.0)
    reference = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0).T
    ours = log_mel(clip, config)
    assert ours.shape == reference.shape and ours.dtype == np.float32
    above_floor = reference > reference.max() - 80.0 + 1e-3
    assert above_floor.mean() > 0.2
    assert np.abs(ours - reference)[above_floor].max() <= 0.01
    # below the floor both are clipped to it
    np.testing.assert_allclose(ours, reference, rtol=0, atol=0.01)


@pytest.mark.dev
def test_edge_frame_stage_matches_librosa_with_kaldi_framing(librosa, clip):
    """``edge`` frames are the 400 samples under the window (zero-padded to 512). librosa
    centres a 400-sample window in a 512-sample frame, so its frame t on the clip shifted
    by 56 samples sees the same samples; magnitudes do not depend on that placement."""
    config = preset("edge")
    mel = librosa.feature.melspectrogram(
        y=np.pad(clip, (56, 0)), sr=16000, n_fft=512, hop_length=160, win_length=400,
        center=False, n_mels=64, fmin=50.0, fmax=8000.0, power=2.0)
    reference = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T
    frames = frame_features(clip, config)
    assert frames.shape[0] == num_frames(clip.size, config) == 1 + (clip.size - 400) // 160
    assert frames.shape[0] - reference.shape[0] in (0, 1)  # librosa's 512-sample frames end sooner
    n = reference.shape[0]
    assert np.abs(frames[:n] - reference).max() <= 0.01
    # utterance stage: global mean/variance over the clip
    expected = (frames - frames.mean()) / frames.std()
    np.testing.assert_allclose(log_mel(clip, config), expected, rtol=0, atol=1e-4)


@pytest.mark.dev
def test_seed_preset_matches_librosa_amplitude_to_db_ref_min_and_min_max(librosa, clip):
    mel = librosa.feature.melspectrogram(
        y=clip, sr=16000, n_fft=2048, hop_length=512, center=True, pad_mode="reflect",
        n_mels=128, power=1.0)
    db = librosa.amplitude_to_db(mel, ref=np.min, amin=1e-5, top_db=80.0).T
    reference = (db - db.min()) / (db.max() - db.min())
    ours = log_mel(clip, preset("seed"))
    assert ours.shape == reference.shape
    # 0.01 dB on an 80 dB span
    np.testing.assert_allclose(ours, reference, rtol=0, atol=0.01 / 80)
    assert ours.min() == 0.0 and ours.max() == pytest.approx(1.0)


# --------------------------------------------------------------------------- python_speech_features


@pytest.mark.dev
def test_psf_preset_matches_logfbank(psf, clip):
    reference = psf.logfbank(clip.astype(np.float64), samplerate=16000)
    ours = log_mel(clip, preset("psf"))
    assert ours.shape == reference.shape
    # log energies are far from zero here (|value| > 1e-2), so a relative test is fair;
    # the tiny atol only covers float32 rounding for a value that happens to be near 0.
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.dev
def test_psf_mfcc_preset_matches_mfcc(psf, clip):
    reference = psf.mfcc(clip.astype(np.float64), samplerate=16000)
    ours = log_mel(clip, preset("psf_mfcc"))
    assert ours.shape == reference.shape
    # Cepstra are sums of 26 log energies of magnitude ~10-30 (times a lifter up to 12);
    # a coefficient that lands near 0 keeps the absolute float32 rounding of those
    # terms (~1e-5), which no relative tolerance can cover. atol=1e-4 is about 1e-6 of
    # the coefficients' range; everything else must agree to rtol=1e-4.
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    assert np.abs(reference).max() > 10.0


@pytest.mark.dev
def test_bin_snapped_filterbank_matches_psf(psf):
    for nfilt, nfft, rate, low, high in [(26, 512, 16000, 0, None), (40, 512, 16000, 300, 7000),
                                         (26, 1024, 22050, 0, None)]:
        config = preset("psf").replace(n_mels=nfilt, n_fft=nfft, sample_rate=rate, win_length=None,
                                       fmin=float(low), fmax=None if high is None else float(high))
        reference = psf.get_filterbanks(nfilt=nfilt, nfft=nfft, samplerate=rate, lowfreq=low, highfreq=high)
        np.testing.assert_allclose(mel_filterbank(config).T, reference, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------- filterbank


@pytest.mark.dev
@pytest.mark.filterwarnings("ignore:Empty filters detected")
@pytest.mark.parametrize("mel_norm", ["slaney", None])
@pytest.mark.parametrize("mel_scale", ["slaney", "htk"])
def test_triangular_filterbank_matches_librosa(librosa, mel_scale, mel_norm):
    for rate, n_fft, n_mels, fmin, fmax in [(16000, 512, 64, 50.0, 8000.0), (16000, 2048, 128, 0.0, None),
                                            (22050, 1024, 40, 300.0, 5000.0), (16000, 400, 26, 20.0, 7600.0)]:
        config = FeatureConfig(sample_rate=rate, n_fft=n_fft, win_length=None, n_mels=n_mels, fmin=fmin,
                               fmax=fmax, mel_scale=mel_scale, mel_norm=mel_norm)
        reference = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                        htk=mel_scale == "htk", norm=mel_norm)
        ours = mel_filterbank(config)
        assert ours.shape == (n_fft // 2 + 1, n_mels) and ours.dtype == np.float32
        scale = np.abs(reference).max()
        np.testing.assert_allclose(ours.T, reference, rtol=1e-5, atol=1e-6 * scale)


# --------------------------------------------------------------------------- streaming


def _variants() -> Dict[str, FeatureConfig]:
    """Every preset with center off, center + constant and center + reflect padding."""
    out = {}
    for name, config in PRESETS.items():
        out[f"{name}-nocenter"] = config.replace(center=False, pad_mode="constant")
        out[f"{name}-nocenter-padend"] = config.replace(center=False, pad_mode="constant", pad_end=True)
        out[f"{name}-center-constant"] = config.replace(center=True, pad_end=False, pad_mode="constant")
        out[f"{name}-center-reflect"] = config.replace(center=True, pad_end=False, pad_mode="reflect")
        out[name] = config
    return out


VARIANTS = _variants()


def _lengths(config: FeatureConfig) -> List[int]:
    half = config.n_fft // 2
    return sorted({0, 1, 2, config.frame_length - 1, config.frame_length, config.frame_length + 1,
                   half, half + 1, config.n_fft, config.n_fft + config.hop_length - 1, 5003})


def _stream(config: FeatureConfig, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    features = StreamingFeatures(config)
    pieces, i = [], 0
    while i < x.size:
        n = int(rng.choice([0, 1, 7, 100, config.hop_length, config.frame_length, 1000, 2500]))
        pieces.append(features.push(x[i:i + n]))
        i += n
    pieces.append(features.flush())
    for piece in pieces:
        assert piece.dtype == np.float32 and piece.ndim == 2 and piece.shape[1] == config.n_features
    return np.concatenate(pieces)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_streaming_equals_batch_for_every_preset_and_padding(variant):
    config = VARIANTS[variant]
    rng = np.random.default_rng(abs(hash(variant)) % (1 << 32))
    for n in _lengths(config):
        x = (rng.standard_normal(n) * 0.1).astype(np.float32)
        batch = frame_features(x, config)
        streamed = _stream(config, x, rng)
        assert streamed.shape == batch.shape == (num_frames(n, config), config.n_features), (variant, n)
        np.testing.assert_allclose(streamed, batch, rtol=1e-5, atol=1e-3, err_msg=f"{variant} n={n}")
        np.testing.assert_allclose(utterance_stage(streamed, config), log_mel(x, config),
                                   rtol=1e-4, atol=1e-3, err_msg=f"{variant} n={n}")


def test_streaming_on_real_speech_is_reusable_after_flush(corpus_clips):
    config = preset("edge")
    features = StreamingFeatures(config)
    rng = np.random.default_rng(3)
    for clip in corpus_clips[:2]:
        pieces = [features.push(clip[i:i + 1234]) for i in range(0, clip.size, 1234)]
        pieces.append(features.flush())  # resets: the next clip starts fresh
        streamed = np.concatenate(pieces)
        np.testing.assert_allclose(utterance_stage(streamed, config), log_mel(clip, config),
                                   rtol=1e-4, atol=1e-4)
        assert features.frames_emitted == 0
    assert _stream(config, corpus_clips[2], rng).shape == frame_features(corpus_clips[2], config).shape


# --------------------------------------------------------------------------- FeatureConfig


def test_edge_preset_hash_is_pinned():
    assert preset("edge").hash() == EDGE_HASH, (
        "the edge preset changed: the shipped model was trained on the old features")


def test_json_round_trip_and_hash_stability():
    for name, config in PRESETS.items():
        text = config.to_json()
        again = FeatureConfig.from_json(text)
        assert again == config and again.hash() == config.hash(), name
        assert json.loads(text) == config.to_dict()
        assert FeatureConfig.from_dict(json.loads(text)) == config
    # equal numbers hash equally whether written as int or float
    assert FeatureConfig(fmin=0).hash() == FeatureConfig(fmin=0.0).hash()
    assert len({c.hash() for c in PRESETS.values()}) == len(PRESETS)


_CHANGES = {
    "sample_rate": 8000, "n_fft": 1024, "win_length": 320, "hop_length": 128, "window": "hamming",
    "center": True, "pad_mode": "reflect", "pad_end": True, "preemphasis": 0.97, "spectrum_norm": "n_fft",
    "power": 1.0, "n_mels": 40, "fmin": 60.0, "fmax": 7000.0, "mel_scale": "htk", "mel_norm": None,
    "filterbank": "bin_snapped", "log": "ln", "db_factor": 20.0, "db_ref": "max", "amin": 1e-5,
    "top_db": 80.0, "n_mfcc": 13, "mfcc_lifter": 22, "mfcc_energy": True, "normalize": "min_max",
    "normalize_scope": "band", "normalize_eps": 1e-6, "pcen_time_constant": 0.1, "pcen_gain": 0.8,
    "pcen_bias": 10.0, "pcen_power": 0.25, "pcen_eps": 1e-6,
}


def test_hash_changes_when_any_field_changes():
    base = preset("edge")
    assert set(_CHANGES) == {f.name for f in dataclasses.fields(FeatureConfig)}, "new field: add it here"
    seen = {base.hash()}
    for field, value in _CHANGES.items():
        changes = {field: value}
        if field == "pad_end":
            changes["center"] = False
        if field == "sample_rate":
            changes["fmax"] = 4000.0
        if field.startswith("pcen_"):
            # PCEN's parameters shape nothing under a log, so they count only with log="pcen"
            assert base.replace(**changes).hash() == base.hash(), field
            base_pcen = base.replace(log="pcen")
            seen.add(base_pcen.hash())
            changed = base_pcen.replace(**changes)
        else:
            changed = base.replace(**changes)
        assert changed.hash() not in seen, field
        seen.add(changed.hash())


_INVALID = [
    ("sample_rate", 0), ("sample_rate", 16000.5), ("n_fft", 1), ("win_length", 0), ("win_length", 1024),
    ("hop_length", 0), ("window", "blackman"), ("pad_mode", "wrap"), ("preemphasis", 1.0),
    ("preemphasis", -0.1), ("spectrum_norm", "ortho"), ("power", 0.0), ("n_mels", 0), ("fmin", -1.0),
    ("fmin", 8000.0), ("fmax", 9000.0), ("mel_scale", "bark"), ("mel_norm", "l2"),
    ("filterbank", "gammatone"), ("log", "log2"), ("db_ref", "mean"), ("db_ref", 0.0), ("amin", 0.0),
    ("top_db", -1.0), ("n_mfcc", 65), ("n_mfcc", -1), ("normalize", "zscore"), ("normalize_scope", "row"),
]
_INVALID_PCEN = [("pcen_time_constant", 0.0), ("pcen_gain", 1.5), ("pcen_bias", 0.0), ("pcen_power", 0.0),
                 ("pcen_power", 2.0), ("pcen_eps", 0.0), ("n_mfcc", 13)]


@pytest.mark.parametrize("field,value", _INVALID, ids=[f"{f}={v}" for f, v in _INVALID])
def test_invalid_configs_name_the_field(field, value):
    with pytest.raises(FeatureConfigError, match=rf"\b{field}="):
        preset("edge").replace(**{field: value})


_INVALID_DB_PCEN = [("db_ref", "max"), ("top_db", 80.0), ("normalize", "min_max"), ("n_mfcc", 13),
                    ("pcen_gain", 1.5)]


@pytest.mark.parametrize("field,value", _INVALID_DB_PCEN, ids=[f"{f}={v}" for f, v in _INVALID_DB_PCEN])
def test_invalid_db_pcen_configs_name_the_field(field, value):
    with pytest.raises(FeatureConfigError, match=rf"\b{field}="):
        preset("edge-db-pcen").replace(**{field: value})


@pytest.mark.parametrize("field,value", _INVALID_PCEN, ids=[f"{f}={v}" for f, v in _INVALID_PCEN])
def test_invalid_pcen_configs_name_the_field(field, value):
    with pytest.raises(FeatureConfigError, match=rf"\b{field}="):
        preset("edge-pcen").replace(**{field: value})


def test_other_config_errors():
    with pytest.raises(FeatureConfigError, match="pad_end"):
        FeatureConfig(center=True, pad_end=True)
    with pytest.raises(FeatureConfigError, match="n_mfcc"):
        FeatureConfig(n_mfcc=13, log="none")
    with pytest.raises(FeatureConfigError, match="unknown field"):
        FeatureConfig.from_dict({**preset("edge").to_dict(), "dither": 1.0})
    with pytest.raises(FeatureConfigError, match="not valid JSON"):
        FeatureConfig.from_json("{")
    with pytest.raises(FeatureConfigError, match="object"):
        FeatureConfig.from_json("[1, 2]")
    with pytest.raises(FeatureConfigError, match="unknown feature preset 'nope'"):
        preset("nope")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_silence_and_empty_signals_give_finite_features(name):
    config = PRESETS[name]
    normalized = config if config.normalize != "none" else config.replace(normalize="mean_var")
    variants = [config, normalized, config.replace(normalize="mean_var", normalize_scope="band")]
    if config.log != "db+pcen":  # min-max of two blocks is refused (test_invalid_db_pcen_configs_...)
        variants.append(config.replace(normalize="min_max"))
    for cfg in variants:
        for signal in (np.zeros(16000, np.float32), np.full(8000, 0.3, np.float32),
                       np.zeros(0, np.float32), np.zeros(1, np.float32)):
            feats = log_mel(signal, cfg)
            assert feats.dtype == np.float32 and feats.shape == (num_frames(signal.size, cfg), cfg.n_features)
            assert np.isfinite(feats).all(), (name, cfg.normalize, signal.size)
    # Silence is constant over time: per-band normalization gives exactly zeros, and so
    # does global normalization of log-mels (every band sits at the floor). MFCCs of
    # silence differ between coefficients, so only the per-band case applies to them.
    silence = np.zeros(16000, np.float32)
    per_band = log_mel(silence, config.replace(normalize="mean_var", normalize_scope="band"))
    assert per_band.size and np.abs(per_band).max() == 0.0
    if not config.n_mfcc:
        silent = log_mel(silence, normalized)
        assert silent.size and np.abs(silent).max() == 0.0


def test_edge_features_are_gain_invariant_above_the_floor():
    """Global mean/variance normalization cancels a gain (a shift in dB), as long as no
    bin hits the amin floor (real recordings with digital silence do, hence noise)."""
    noise = (np.random.default_rng(2).standard_normal(16000) * 0.1).astype(np.float32)
    config = preset("edge")
    np.testing.assert_allclose(log_mel(noise * 0.25, config), log_mel(noise, config), rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- bit-identical streaming (issue 11)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_streamed_frames_are_bit_identical_to_the_whole_clip(name):
    """A row's features must not depend on how many frames are computed with it: a
    float32 matrix product rounded differently by chunk, and an int8 model's input
    could tip over a quantization step between a streamed and a whole clip."""
    from edge_ser.speechlike import speechlike

    config = PRESETS[name]
    x = speechlike(12.0, seed=5)
    whole = frame_features(x, config)
    for step in (160, 333, 4096, 21845):
        stream = StreamingFeatures(config)
        parts = [stream.push(x[i:i + step]) for i in range(0, x.size, step)] + [stream.flush()]
        np.testing.assert_array_equal(np.concatenate(parts), whole, err_msg=f"{name} step {step}")


def _variants(config):
    out = [config, config.replace(normalize="mean_var"), config.replace(normalize="mean_var", normalize_scope="band")]
    if config.log != "db+pcen":  # min-max of two blocks is refused
        out += [config.replace(normalize="min_max"), config.replace(normalize="min_max", normalize_scope="band")]
    if config.log == "db" and not config.n_mfcc:
        out += [config.replace(db_ref="max", top_db=50.0, normalize="mean_var"),
                config.replace(db_ref="min", top_db=60.0, normalize="min_max", normalize_scope="band")]
    return out


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_utterance_stats_in_passes_equal_the_utterance_stage(name):
    from edge_ser.features import UtteranceStats
    from edge_ser.speechlike import speechlike

    signals = [speechlike(9.0, seed=4), np.zeros(8000, np.float32), np.zeros(0, np.float32)]
    for config in _variants(PRESETS[name]):
        for x in signals:
            frames = frame_features(x, config)
            expected = utterance_stage(frames, config)
            stats = UtteranceStats(config)
            while not stats.done:
                for i in range(0, len(frames), 97):
                    stats.update(frames[i:i + 97])
                stats.end_pass()
            assert stats.passes_done <= 2
            got = [stats.apply(frames[i:i + 97]) for i in range(0, len(frames), 97)]
            got = np.concatenate(got) if got else np.zeros((0, config.n_features), np.float32)
            np.testing.assert_array_equal(got, expected, err_msg=f"{config} n={x.size}")


def test_window_cutter_equals_split_windows_for_any_chunking():
    from edge_ser.windows import WindowCutter, split_windows

    rng = np.random.default_rng(0)
    for n in (0, 1, 150, 299, 300, 301, 399, 400, 401, 1234):
        feats = rng.standard_normal((n, 8)).astype(np.float32)
        expected, expected_starts = split_windows(feats, 300, 100)
        for chunk in (1, 7, 100, 5000):
            cutter = WindowCutter(300, 100, 8)
            pieces = [cutter.push(feats[i:i + chunk]) for i in range(0, n, chunk)] + [cutter.flush()]
            windows = np.concatenate([w for w, _ in pieces])
            starts = [s for _, ss in pieces for s in ss]
            assert starts == expected_starts, (n, chunk)
            np.testing.assert_array_equal(windows, expected)
            assert cutter.frames == 0  # flush resets


def test_windows_of_two_blocks_are_each_blocks_own_windows():
    """A short clip of log-mel + PCEN is padded block by block: each block's windows are the ones
    its own preset gives (a member of a mixed ensemble hears padding as it was trained), on the
    whole-clip, stream and training paths alike."""
    from edge_ser.windows import WindowCutter, random_window, split_windows

    rng = np.random.default_rng(1)
    for n in (1, 120, 299, 450):
        low = rng.standard_normal((n, 8)).astype(np.float32)
        high = (rng.standard_normal((n, 8)) * 3 + 5).astype(np.float32)  # its minimum is far above low's
        both = np.concatenate([low, high], axis=1)
        windows, starts = split_windows(both, 300, 100, blocks=2)
        apart = np.concatenate([split_windows(low, 300, 100)[0], split_windows(high, 300, 100)[0]], axis=2)
        np.testing.assert_array_equal(windows, apart)
        cutter = WindowCutter(300, 100, 16, blocks=2)
        pieces = [cutter.push(both[i:i + 37]) for i in range(0, n, 37)] + [cutter.flush()]
        np.testing.assert_array_equal(np.concatenate([w for w, _ in pieces]), windows)
        crop = random_window(both, 300, np.random.default_rng(n), blocks=2)
        alone = random_window(high, 300, np.random.default_rng(n))
        np.testing.assert_array_equal(crop[:, 8:], alone)
    with pytest.raises(ValueError, match="blocks"):
        split_windows(np.zeros((10, 15), np.float32), 300, 100, blocks=2)


def test_a_shortened_training_crop_can_be_normalized_as_the_device_normalizes_that_short_clip():
    """The device normalizes a short utterance over itself; a stretch cut from a longer clip's
    normalized features carries the longer clip's scale. With ``shortened`` the training crop of a
    shortened stretch is the device's window of that stretch's own features (both views of a
    log-mel + PCEN clip, block by block), and the random draws are the same either way."""
    from edge_ser.features import frame_features, normalize_utterance, preset, utterance_stage
    from edge_ser.windows import random_window, split_windows

    config = preset("edge-db-pcen")
    rng = np.random.default_rng(7)
    quiet = np.zeros(16000, np.float32) + 1e-4 * rng.standard_normal(16000).astype(np.float32)
    voice = 0.3 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000).astype(np.float32)
    raw = frame_features(np.concatenate([quiet, voice, quiet]), config)  # 3 s: a word between silences
    whole = utterance_stage(raw, config)
    np.testing.assert_array_equal(normalize_utterance(raw, config), utterance_stage(raw, config))
    for seed in range(6):
        kept = random_window(whole, 300, np.random.default_rng(seed), min_frames=40, blocks=2)
        device_like = random_window(whole, 300, np.random.default_rng(seed), min_frames=40, blocks=2,
                                    shortened=lambda a, n: normalize_utterance(whole[a:a + n], config))
        draws = np.random.default_rng(seed)
        length = int(draws.integers(40, min(whole.shape[0], 300) + 1))
        start = int(draws.integers(0, whole.shape[0] - length + 1))
        offset = int(draws.integers(0, 300 - length + 1))
        own = utterance_stage(raw[start:start + length], config)  # what the device computes for that stretch
        np.testing.assert_allclose(device_like[offset:offset + length], own, atol=1e-4)
        assert np.allclose(device_like[:offset], own.reshape(length, 2, -1).min(axis=(0, 2)).repeat(64))
        np.testing.assert_array_equal(kept[offset:offset + length], whole[start:start + length])
        assert not np.allclose(kept, device_like, atol=1e-2)  # the two scales differ
    # a clip no longer than the shortest crop is never shortened, so never normalized again
    short = whole[:40]
    np.testing.assert_array_equal(random_window(short, 300, np.random.default_rng(0), min_frames=40, blocks=2,
                                                shortened=lambda a, n: short[a:a + n] * 0),
                                  random_window(short, 300, np.random.default_rng(0), blocks=2))
    assert split_windows(short, 300, 100, blocks=2)[0].shape == (1, 300, 128)


def test_a_clip_computed_from_its_mel_spectrogram_in_db_is_the_device_s_clip_of_that_audio():
    """Training keeps each clip's mel spectrogram in dB (``mel_db_config``) to compute a stretch of
    it as the device computes the audio of that stretch alone: for PCEN a fresh smoother at the
    stretch's first frame, then the stretch's own normalization. Row for row it equals ``log_mel``
    of the stretch's samples, for log-mel, PCEN and both; float16 storage (the cache's augmented
    copies) stays within a few hundredths of a standard deviation."""
    from edge_ser.features import clip_features_from_mel_db, mel_db_config, normalize_utterance

    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000
    quiet = 1e-3 * rng.standard_normal(16000)
    voice = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 1e-3 * rng.standard_normal(16000)
    signal = np.concatenate([quiet, voice, quiet]).astype(np.float32)
    for name in ("edge", "edge-pcen", "edge-db-pcen"):
        config = preset(name)
        mel_db = log_mel(signal, mel_db_config(config))
        assert mel_db.shape == (num_frames(signal.size, config), config.n_mels)
        np.testing.assert_array_equal(mel_db, frame_features(signal, preset("edge").replace(normalize="none")))
        for start, length in ((0, mel_db.shape[0]), (120, 40), (90, 140)):
            audio = signal[start * config.hop_length:(start + length - 1) * config.hop_length + config.frame_length]
            device = log_mel(audio, config)
            np.testing.assert_allclose(clip_features_from_mel_db(mel_db[start:start + length], config), device,
                                       atol=1e-4)
            stored = clip_features_from_mel_db(mel_db[start:start + length].astype(np.float16), config)
            assert np.abs(stored - device).max() < 0.05
        if "pcen" in name:  # the cut rows of the whole clip are not the device's short clip
            whole = log_mel(signal, config)
            assert not np.allclose(normalize_utterance(whole[120:160], config),
                                   clip_features_from_mel_db(mel_db[120:160], config), atol=0.1)
    with pytest.raises(ValueError, match="MFCC"):
        clip_features_from_mel_db(np.zeros((5, 26), np.float32), preset("psf_mfcc"))


# --------------------------------------------------------------------------- PCEN


@pytest.mark.dev
def test_pcen_matches_librosa_from_the_first_frames_steady_state(librosa, clip):
    """librosa.pcen is the reference. Its smoother starts as if a unit input had lasted forever,
    which at our scale (1.0 is a full-scale band) is a loud start; ours starts from the first
    frame's own steady state, so librosa is given that starting state here."""
    from scipy.signal import lfilter_zi

    config = preset("edge-pcen").replace(normalize="none")
    mel = frame_features(clip, config.replace(log="none")).T.astype(np.float64)
    s = config.pcen_smoothing
    expected = librosa.pcen(mel, sr=config.sample_rate, hop_length=config.hop_length,
                            time_constant=config.pcen_time_constant, gain=config.pcen_gain,
                            bias=config.pcen_bias, power=config.pcen_power, eps=config.pcen_eps,
                            zi=lfilter_zi([s], [1, s - 1]) * mel[:, :1])
    got = frame_features(clip, config).T
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _tone(level: float, seconds: float = 4.0, onset: float = 1.0, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (level * np.sin(2 * np.pi * hz * t) * (t >= onset)).astype(np.float32)


def test_pcen_lifts_onsets_and_flattens_what_is_steady():
    """What PCEN is for: a band that holds steady sinks towards one value whatever its level,
    while its onset stands out. Log-mel keeps the 20 dB between the two levels."""
    config = preset("edge-pcen").replace(normalize="none")
    band = int(np.argmax(frame_features(_tone(0.1), config.replace(log="db"))[200]))
    loud, quiet = (frame_features(_tone(level), config)[:, band] for level in (0.1, 0.01))
    onset = 100  # the tone starts at 1 s
    for track in (loud, quiet):
        assert track[onset:onset + 5].max() > 3 * track[350:].mean()
    assert abs(loud[350:].mean() - quiet[350:].mean()) < 0.1 * loud[350:].mean()
    db = [frame_features(_tone(level), config.replace(log="db"))[350:, band].mean() for level in (0.1, 0.01)]
    assert db[0] - db[1] == pytest.approx(20.0, abs=0.5)


def test_pcen_state_carries_over_a_stream_and_starts_afresh_after_flush():
    from edge_ser.speechlike import speechlike

    config = preset("edge-pcen")
    x = speechlike(3.0, seed=7)
    whole = frame_features(x, config)
    stream = StreamingFeatures(config)
    first = np.concatenate([stream.push(x[:20000]), stream.push(x[20000:]), stream.flush()])
    again = np.concatenate([stream.push(x), stream.flush()])
    np.testing.assert_array_equal(first, whole)
    np.testing.assert_array_equal(again, whole)
    # a stream that did not start afresh would begin from the last clip's smoother
    late = frame_features(x[16000:], config)
    assert not np.allclose(late[:20], whole[100:120])


def test_db_pcen_is_edge_and_edge_pcen_side_by_side_bit_for_bit():
    """An ensemble's log-mel member and PCEN member each read one block of edge-db-pcen: every
    path the device takes (whole clip, stream, two-pass statistics) gives each block exactly
    what the member's own preset gives, so the members hear what they were trained on."""
    from edge_ser.speechlike import speechlike

    both, db, pcen = preset("edge-db-pcen"), preset("edge"), preset("edge-pcen")
    assert both.blocks() == [db, pcen] and both.n_features == 128 and both.kind == "log-mel + PCEN mel"
    assert db.blocks() == [db] and db.n_blocks == 1
    assert both.hash() != both.replace(pcen_gain=0.8).hash()  # the PCEN block's parameters count
    x = speechlike(4.0, seed=3) * np.linspace(0.2, 1.0, 64000, dtype=np.float32)
    whole = log_mel(x, both)
    np.testing.assert_array_equal(whole, np.concatenate([log_mel(x, db), log_mel(x, pcen)], axis=1))
    # the two blocks are normalized each on its own: a shared mean would shift one of them
    np.testing.assert_allclose(whole[:, :64].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(whole[:, 64:].mean(), 0.0, atol=1e-5)
    stream = StreamingFeatures(both)
    frames = np.concatenate([stream.push(x[i:i + 4321]) for i in range(0, x.size, 4321)] + [stream.flush()])
    np.testing.assert_array_equal(frames, frame_features(x, both))
    from edge_ser.features import UtteranceStats

    stats = UtteranceStats(both)
    while not stats.done:
        for i in range(0, len(frames), 57):
            stats.update(frames[i:i + 57])
        stats.end_pass()
    chunked = np.concatenate([stats.apply(frames[i:i + 57]) for i in range(0, len(frames), 57)])
    np.testing.assert_array_equal(chunked, whole)
