"""Tests of the multi-corpus, room-ready training and evaluation pieces (issue 12).

Corpus manifests (Opus, empty labels for arousal-only corpora), the split of rooms and
noise into training and held-out sides, the scoring rule of the independent evaluation
(restricted argmax, calm folded into neutral), run planning (development, calibration and
test speakers never overlap), balanced sampling, calibration maths, and a smoke training
run through the whole Opus/manifest path on clips the project makes itself (espeak-ng,
then soundfile to Opus), exported as an int8 logits model that the device runtime loads.
TensorFlow runs only in subprocesses (see tests/test_converter.py for why).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("soundfile") is None:
    pytest.skip("the converter needs TensorFlow and soundfile (requirements-dev.txt); make test installs it", allow_module_level=True)

import soundfile  # noqa: E402

from converter.corpora import CorpusError, Item, corpus_classes, read_corpora, read_manifest  # noqa: E402
from converter.protocol import (  # noqa: E402
    DEV_SPEAKERS, expected_calibration_error, fit_temperature, plan_run, restricted_predictions,
    scored_labels,
)
from converter.train import BalancedSampler, ClipSet, grouped_permutation  # noqa: E402
from edge_ser.metadata import EMOTIONS  # noqa: E402
from edge_ser.resample import resample  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def write_opus(path: Path, seconds: float = 0.6, freq: float = 200.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    x = 0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), x.astype(np.float32), 16000, format="OGG", subtype="OPUS")
    return path


# -- manifests ----------------------------------------------------------------------------------


def test_manifest_folder_names_the_corpus_and_arousal_rows_have_no_label(tmp_path):
    corpus = tmp_path / "arabic"
    write_opus(corpus / "a.opus")
    write_opus(corpus / "b.opus")
    (corpus / "manifest.csv").write_text("path,label,speaker,arousal\na.opus,,ar-7,high\nb.opus,anger,ar-8,\n")
    items = read_corpora([corpus])
    assert [(i.corpus, i.label, i.speaker, i.arousal) for i in items] == [
        ("arabic", None, "ar-7", "high"), ("arabic", "angry", "ar-8", None)]
    assert items[0].label_index == -1
    assert corpus_classes(items) == {"arabic": ("angry",)}


def test_manifest_rejects_an_empty_label_without_arousal_and_duplicate_corpus_names(tmp_path):
    corpus = tmp_path / "c"
    write_opus(corpus / "a.opus")
    (corpus / "manifest.csv").write_text("path,label,speaker\na.opus,,s1\n")
    with pytest.raises(CorpusError, match=r"manifest.csv:2: empty label"):
        read_manifest(corpus / "manifest.csv")
    (corpus / "manifest.csv").write_text("path,label,speaker,arousal\na.opus,,s1,sleepy\n")
    with pytest.raises(CorpusError, match="unknown arousal level 'sleepy'"):
        read_manifest(corpus / "manifest.csv")
    (corpus / "manifest.csv").write_text("path,label,speaker\na.opus,sad,s1\n")
    with pytest.raises(CorpusError, match="corpus name 'c' is also"):
        read_corpora([corpus, corpus / "manifest.csv"])


def test_opus_clips_decode_at_16k_through_the_workstation_loader(tmp_path):
    from converter.audio_io import load_clip, opus_round_trip

    x = load_clip(str(write_opus(tmp_path / "x.opus", seconds=1.0)))
    assert x.dtype == np.float32 and abs(x.size - 16000) < 400
    y = opus_round_trip(x, 16000)
    assert y.shape == x.shape and 0.5 < np.corrcoef(x, y)[0, 1] <= 1.0


# -- scoring rule ---------------------------------------------------------------------------------


def test_restricted_argmax_adds_calm_to_neutral_and_ignores_absent_classes():
    p = np.zeros((2, 8))
    p[0, [EMOTIONS.index("calm"), EMOTIONS.index("neutral"), EMOTIONS.index("sad")]] = [0.3, 0.25, 0.45]
    p[1, [EMOTIONS.index("disgust"), EMOTIONS.index("happy")]] = [0.9, 0.1]
    classes = ("neutral", "happy", "sad", "angry", "fearful")
    pred, renorm = restricted_predictions(p, classes)
    assert [EMOTIONS[i] for i in pred] == ["neutral", "happy"]  # 0.55 beats 0.45; disgust is not a choice
    assert np.allclose(renorm.sum(axis=1), 1.0) and renorm[1, EMOTIONS.index("disgust")] == 0
    with_calm = restricted_predictions(p, tuple(EMOTIONS))[0]
    assert EMOTIONS[with_calm[0]] == "sad"  # 8-way: no folding


def test_scored_labels_fold_calm_into_neutral_and_drop_what_is_not_scored():
    items = [Item("a", "calm", "1", "ravdess"), Item("b", "disgust", "1", "ravdess"), Item("c", "sad", "1", "ravdess")]
    labels = scored_labels(items, ("neutral", "happy", "sad", "angry", "fearful", "surprised"))
    assert labels.tolist() == [EMOTIONS.index("neutral"), -1, EMOTIONS.index("sad")]


def test_calibration_maths():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 4000)
    correct = rng.random(4000) < conf
    probs = np.zeros((4000, 8))
    probs[:, 0] = conf
    probs[:, 1] = 1 - conf
    labels = np.where(correct, 0, 1)
    assert expected_calibration_error(probs, labels) < 0.03
    assert expected_calibration_error(probs, np.full(4000, 2)) > 0.6
    # logits made twice too confident: the fitted temperature undoes it
    items = [Item(f"c{i}", EMOTIONS[i % 8], "s", "x") for i in range(800)]
    true_logits = rng.standard_normal((800, 8))
    true_p = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    drawn = np.array([rng.choice(8, p=row) for row in true_p])
    items = [Item(f"c{i}", EMOTIONS[d], "s", "x") for i, d in enumerate(drawn)]
    t = fit_temperature([row[None] * 2.0 for row in true_logits], items, logits=True)
    assert 1.6 < t < 2.5


# -- planning -------------------------------------------------------------------------------------


def _fake_items():
    items = []
    for actor in [f"{i:02d}" for i in range(1, 25) if i not in (6, 13, 17, 22)]:
        items += [Item(f"r{actor}{e}", e, actor, "ravdess") for e in EMOTIONS]
    for s in ["nemo-EB0", "nemo-WR0", "nemo-KD0", "nemo-IC0", "nemo-SM0"]:
        items += [Item(f"{s}{e}", e, s, "nemo") for e in ("neutral", "happy", "sad", "angry", "fearful", "surprised")]
    for s in [f"ased-{i:02d}" for i in range(1, 21)]:
        items += [Item(f"{s}{e}", e, s, "ased") for e in ("neutral", "happy", "sad", "angry", "fearful")]
    items += [Item("b1", None, "baved-1", "baved", "high")]
    return items


@pytest.mark.parametrize("run", ["dev", "cv1", "cv3", "loco-ravdess", "loco-nemo", "loco-ased"])
def test_runs_never_share_speakers_between_train_calibration_and_test(run):
    plan = plan_run(run, _fake_items(), ("ravdess", "nemo", "ased"))
    train = {i.speaker for i in plan.train}
    cal = {i.speaker for i in plan.calibration}
    test = {i.speaker for i in plan.test}
    assert train and test and not (train & test) and not (cal & test) and not (cal & train)
    assert all(i.label is not None for i in plan.train + plan.test + plan.calibration)
    if run == "dev":
        assert test == {s for v in DEV_SPEAKERS.values() for s in v} and not cal
    else:
        assert cal  # a temperature needs held-out training speakers


def test_leaving_ravdess_out_scores_only_the_classes_the_others_teach():
    plan = plan_run("loco-ravdess", _fake_items(), ("ravdess", "nemo", "ased"))
    assert plan.classes == {"ravdess": ("neutral", "happy", "sad", "angry", "fearful", "surprised")}
    assert {i.corpus for i in plan.train} == {"nemo", "ased"} and not plan.farfield
    assert plan_run("loco-ased", _fake_items(), ("ravdess", "nemo", "ased")).classes == {
        "ased": ("neutral", "happy", "sad", "angry", "fearful")}


# -- balanced sampling ----------------------------------------------------------------------------


def test_class_mask_merges_calm_into_neutral_where_a_corpus_has_neutral_but_no_calm():
    from converter.train import MERGED_INTO_NEUTRAL, class_mask

    nemo = class_mask(("neutral", "happy", "sad", "angry", "fearful", "surprised"))
    assert nemo[EMOTIONS.index("calm")] == MERGED_INTO_NEUTRAL and nemo[EMOTIONS.index("disgust")] == 0
    assert class_mask(tuple(EMOTIONS)).tolist() == [1.0] * 8
    assert class_mask(("happy", "sad"))[EMOTIONS.index("calm")] == 0  # no neutral: calm is simply absent


def test_balanced_sampler_draws_corpora_then_classes_uniformly_and_masks_absent_classes():
    items = [Item(f"big{i}", "angry" if i % 10 else "sad", "b", "big") for i in range(1000)]
    items += [Item(f"small{i}", ("calm", "disgust")[i % 2], "s", "small") for i in range(10)]
    data = ClipSet(items, [[np.zeros((5, 2))] for _ in items])
    sampler = BalancedSampler(data)
    idx, names = sampler.draw(4000, np.random.default_rng(0))
    labels = [items[i].label for i in idx]
    assert 0.45 < names.count("small") / 4000 < 0.55
    big = [lab for lab, n in zip(labels, names) if n == "big"]
    assert 0.4 < big.count("sad") / len(big) < 0.6  # classes uniform within the corpus, not by clip count
    assert sampler.masks["big"].tolist() == [1.0 if e in ("sad", "angry") else 0.0 for e in EMOTIONS]
    perm = grouped_permutation(names, np.random.default_rng(1))
    assert all(names[p] == n for p, n in zip(perm, names))


def test_balanced_sampler_corpus_weights_set_each_corpus_share_of_the_draws():
    items = [Item(f"a{i}", "angry", "a", "a") for i in range(50)]
    items += [Item(f"b{i}", "sad", "b", "b") for i in range(50)]
    items += [Item(f"c{i}", "sad", "c", "c") for i in range(50)]
    data = ClipSet(items, [[np.zeros((5, 2))] for _ in items])
    _, names = BalancedSampler(data, {"a": 2.0}).draw(6000, np.random.default_rng(0))
    assert 0.47 < names.count("a") / 6000 < 0.53  # 2 : 1 : 1 (a corpus not named weighs 1)
    assert 0.22 < names.count("c") / 6000 < 0.28
    _, names = BalancedSampler(data, {"b": 0.0, "c": 0.0}).draw(100, np.random.default_rng(0))
    assert set(names) == {"a"}
    with pytest.raises(ValueError, match="corpus weights"):
        BalancedSampler(data, {"a": 0.0, "b": 0.0, "c": 0.0})


@pytest.mark.parametrize("run", ["dev", "cv2", "loco-nemo", "loco-ravdess"])
def test_arousal_only_clips_train_every_run_and_are_never_calibrated_or_scored(run):
    plan = plan_run(run, _fake_items(), ("ravdess", "nemo", "ased", "baved"))
    assert [i.path for i in plan.train if i.corpus == "baved"] == ["b1"]
    assert all(i.label is not None for i in plan.test + plan.calibration)
    assert "baved" not in plan.classes


def test_only_the_dev_run_scores_an_unseen_arousal_corpus_and_never_one_the_recipe_trains_on():
    items = _fake_items()
    dev = plan_run("dev", items, ("ravdess", "nemo", "ased"))
    assert [i.path for i in dev.unseen_arousal] == ["b1"]
    assert "b1" not in [i.path for i in dev.train + dev.test + dev.calibration]
    assert plan_run("cv2", items, ("ravdess", "nemo", "ased")).unseen_arousal == []
    assert plan_run("dev", items, ("ravdess", "nemo", "ased", "baved")).unseen_arousal == []  # heard it
    alone = plan_run("unseen", items, ("ravdess", "nemo", "ased"))  # a model file that heard every speaker
    assert [i.path for i in alone.unseen_arousal] == ["b1"] and not alone.test and not alone.calibration


def test_arousal_is_read_from_the_answered_emotion_and_from_the_sums_of_each_level():
    from converter.unseen_arousal import AROUSAL_OF, arousal_probabilities, score_arousal

    assert set(AROUSAL_OF) == set(EMOTIONS) and set(AROUSAL_OF.values()) == {"low", "mid", "high"}
    probs = np.zeros((4, 8))
    probs[0, EMOTIONS.index("sad")] = 0.4  # sad is the answer, but high sums more
    probs[0, [EMOTIONS.index("angry"), EMOTIONS.index("happy")]] = 0.3
    probs[1, EMOTIONS.index("calm")], probs[1, EMOTIONS.index("neutral")] = 0.35, 0.3  # mid 0.65
    probs[1, EMOTIONS.index("sad")] = 0.35  # a tie with calm: the first emotion (calm) is the answer
    probs[2, EMOTIONS.index("sad")] = 1.0
    probs[3, EMOTIONS.index("surprised")] = 1.0
    np.testing.assert_allclose(arousal_probabilities(probs)[0], [0.4, 0.0, 0.6])
    items = [Item(f"b{i}", None, f"baved-{i % 2}", "baved", level)
             for i, level in enumerate(("high", "mid", "low", "low"))]
    got = score_arousal(probs, items)
    assert got["summed"]["confusion"] == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]  # rows low, mid, high
    assert got["summed"]["recall"] == {"low": 0.5, "mid": 1.0, "high": 1.0}
    assert abs(got["summed"]["ua"] - 2.5 / 3) < 1e-9 and got["summed"]["wa"] == 0.75
    assert got["answered"]["confusion"] == [[1, 0, 1], [0, 1, 0], [1, 0, 0]]  # clip 0 answered sad: low
    assert abs(got["ua"] - 1.5 / 3) < 1e-9 and got["ua"] == got["answered"]["ua"] and got["speakers"] == 2
    assert got["first_emotion"] == {"low": {"sad": 1, "surprised": 1}, "mid": {"calm": 1}, "high": {"sad": 1}}


def _arousal_data():
    items = [Item(f"e{i}", ("sad", "angry")[i % 2], "e", "emo") for i in range(20)]
    items += [Item(f"a{i}", None, f"ar-{i % 3}", "arabic", ("low", "mid", "high", "high")[i % 4]) for i in range(40)]
    return items, ClipSet(items, [[np.zeros((50, 4), dtype=np.float32)] for _ in items])


def test_an_ensemble_member_may_train_on_arousal_material_besides_but_not_on_other_scored_corpora(monkeypatch):
    from converter import protocol
    from converter.protocol import ENSEMBLES, recipe_corpora, run_names

    corpora = recipe_corpora("rooms-long-pcen-arousal")
    assert corpora == ("ravdess", "nemo", "ased", "baved")  # BAVED joins the arousal member's training only
    assert run_names(corpora) == run_names(recipe_corpora("rooms-long-pcen"))  # no run scores BAVED
    monkeypatch.setitem(ENSEMBLES, "mixed", ("rooms-long", "baseline"))  # RAVDESS only beside three corpora
    with pytest.raises(ValueError, match="members train on different corpora"):
        protocol.recipe_corpora("mixed")


def test_balanced_sampler_draws_arousal_only_corpora_by_level_only_for_an_arousal_head():
    items, data = _arousal_data()
    assert BalancedSampler(data).corpora == ["emo"]  # without a head they take no part
    sampler = BalancedSampler(data, {"arabic": 0.5}, arousal=True)
    assert sampler.corpora == ["arabic", "emo"] and sampler.masks["arabic"].sum() == 0
    idx, names = sampler.draw(3000, np.random.default_rng(0))
    arousal = [items[i].arousal for i, n in zip(idx, names) if n == "arabic"]
    assert 0.30 < len(arousal) / 3000 < 0.37  # weights 0.5 : 1
    assert all(items[i].corpus == n for i, n in zip(idx, names))
    assert 0.28 < arousal.count("high") / len(arousal) < 0.39  # levels uniform, not by clip count


def test_balanced_batch_appends_arousal_targets_after_the_class_mask():
    from converter.train import Recipe, balanced_batch

    _, data = _arousal_data()
    recipe = Recipe(window_frames=20, min_frames=10, batch_size=64, sampling="balanced", masked=True,
                    arousal_weight=1.0)
    sampler = BalancedSampler(data, arousal=True)
    _, y, _ = balanced_batch(data, sampler, recipe, np.random.default_rng(0))
    assert y.shape == (64, 8 + 8 + 3 + 1)
    has = y[:, 19] > 0.5
    assert has.any() and (~has).any()
    assert np.allclose(y[has, :16], 0) and np.allclose(y[has, 16:19].sum(axis=1), 1, atol=1e-5)
    assert np.allclose(y[~has, 16:], 0) and np.allclose(y[~has, :8].sum(axis=1), 1, atol=1e-5)
    plain = Recipe(window_frames=20, min_frames=10, batch_size=64, sampling="balanced", masked=True)
    _, y_plain, _ = balanced_batch(data, BalancedSampler(data), plain, np.random.default_rng(0))
    assert y_plain.shape == (64, 16)  # without a head: [targets | mask], as before


def test_a_corpus_adversary_appends_each_clips_corpus_and_draws_the_batches_of_the_recipe_without_it():
    from converter.train import Recipe, balanced_batch, reversal_strength

    items = [Item(f"e{i}", ("sad", "angry")[i % 2], f"s{i}", "emo") for i in range(6)]
    items += [Item(f"p{i}", ("sad", "happy", "neutral")[i % 3], f"p{i}", "polish") for i in range(6)]
    rng = np.random.default_rng(0)
    data = ClipSet(items, [[rng.standard_normal((40, 8)).astype(np.float32)] for _ in items])
    plain = Recipe(window_frames=20, min_frames=10, batch_size=64, sampling="balanced", masked=True, aug_variants=0)
    adversary = Recipe(**{**plain.__dict__, "corpus_adversary": 1.0})
    sampler = BalancedSampler(data)
    x, y, _ = balanced_batch(data, sampler, adversary, np.random.default_rng(3))
    x_plain, y_plain, _ = balanced_batch(data, sampler, plain, np.random.default_rng(3))
    assert np.array_equal(x, x_plain) and np.array_equal(y[:, :16], y_plain)  # the same draws, crops and mixup
    assert y.shape == (64, 16 + 2) and sampler.corpora == ["emo", "polish"]
    corpus = y[:, 16:]
    assert np.array_equal(corpus.sum(axis=1), np.ones(64))  # mixup pairs clips of one corpus: still one-hot
    polish = corpus[:, 1] == 1
    assert polish.any() and (~polish).any()
    assert np.all(y[polish][:, 8 + EMOTIONS.index("angry")] == 0)  # polish rows carry polish's class mask
    assert np.all(y[~polish][:, 8 + EMOTIONS.index("happy")] == 0)
    strengths = [reversal_strength(adversary, epoch, 32) for epoch in range(1, 33)]
    assert strengths[0] == 0.0 and all(a < b for a, b in zip(strengths, strengths[1:]))
    assert 0.99 < strengths[-1] < 1.0 and 0.84 < strengths[8] < 0.85  # a quarter of the way: 2 / (1 + e^-2.5) - 1
    assert reversal_strength(Recipe(**{**adversary.__dict__, "corpus_adversary": 0.5}), 9, 32) == strengths[8] / 2

    # a speaker adversary: one class per speaker of each corpus (speaker ids repeat across corpora)
    items[6] = Item("p0", "sad", "s0", "polish")  # "s0" speaks in both corpora: two speakers
    data = ClipSet(items, data.feats)
    sampler = BalancedSampler(data)
    assert sampler.speakers == sorted([f"emo/s{i}" for i in range(6)] + ["polish/s0"]
                                      + [f"polish/p{i}" for i in range(1, 6)])
    speakers = Recipe(**{**plain.__dict__, "speaker_adversary": 1.0, "mixup_alpha": 0.0})
    x, y, _ = balanced_batch(data, sampler, speakers, np.random.default_rng(3))
    x_plain, y_plain, _ = balanced_batch(data, sampler, Recipe(**{**plain.__dict__, "mixup_alpha": 0.0}),
                                         np.random.default_rng(3))
    assert np.array_equal(x, x_plain) and np.array_equal(y[:, :16], y_plain) and y.shape == (64, 16 + 12)
    idx, _ = sampler.draw(64, np.random.default_rng(3))
    named = [sampler.speakers[k] for k in y[:, 16:].argmax(axis=1)]
    assert named == [f"{items[i].corpus}/{items[i].speaker}" for i in idx]
    assert reversal_strength(speakers, 9, 32) == strengths[8]
    with pytest.raises(ValueError, match="not both"):
        reversal_strength(Recipe(**{**speakers.__dict__, "corpus_adversary": 1.0}), 9, 32)


def test_consistency_batches_are_clean_windows_then_degraded_twins_cut_at_the_same_draws():
    """rooms-twins: row i + half is row i's clip, same crop, masks and mixup, from a degraded copy."""
    from converter.train import Recipe, balanced_batch

    rng = np.random.default_rng(1)
    items = [Item(f"e{i}", ("sad", "angry", "happy")[i % 3], f"s{i % 4}", "emo") for i in range(30)]
    items += [Item(f"p{i}", ("sad", "neutral")[i % 2], f"p{i % 3}", "other") for i in range(12)]
    feats = []
    for i in range(len(items)):
        clean = rng.standard_normal((int(rng.integers(60, 200)), 6)).astype(np.float32)
        feats.append([clean, clean + 100.0, clean + 100.0])  # "degraded" = clean shifted by 100
    data = ClipSet(items, feats)
    recipe = Recipe(window_frames=80, min_frames=30, batch_size=32, sampling="balanced", masked=True,
                    consistency=1.0, mixup_alpha=0.3)
    x, y, w = balanced_batch(data, BalancedSampler(data), recipe, np.random.default_rng(0))
    assert x.shape == (32, 80, 6, 1) and y.shape == (32, 16) and w.shape == (32,)
    clean, twins = x[:16], x[16:]
    assert np.allclose(twins - clean, 100.0, atol=1e-3)  # same crop, padding, masks and mixup partners
    assert np.array_equal(y[:16], y[16:])  # same mixed targets and class masks
    assert clean.max() < 50  # the first half is the clean copy, always
    plain = Recipe(window_frames=80, min_frames=30, batch_size=32, sampling="balanced", masked=True)
    x_plain, _, _ = balanced_batch(data, BalancedSampler(data), plain, np.random.default_rng(0))
    assert x_plain.shape == (32, 80, 6, 1)
    assert 0 < (x_plain.reshape(32, -1).max(axis=1) > 50).sum() < 32  # without it: clean or a copy per window


#: Script lines the loss tests' subprocesses share: the softmax over the classes present (happy, sad,
#: angry) at a temperature, and eight tiny clips of two classes, each with one noisy copy.
_KEPT_PROBS_AND_TINY_CLIPS = """
def kept_probs(row, t=1.0):
    z = row[[2, 3, 4]] / t
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()

rng = np.random.default_rng(0)
items = [Item(f"e{i}", ("sad", "angry")[i % 2], f"s{i % 3}", "emo") for i in range(8)]
data = ClipSet(items, [[f, f + rng.normal(0, 0.5, f.shape).astype(np.float32)]
                       for f in (rng.standard_normal((120, 16)).astype(np.float32) for _ in items)])
"""


@pytest.mark.slow
def test_consistency_term_pulls_the_degraded_twin_towards_the_clean_one_only_and_trains():
    script = """
import json
import numpy as np
import tensorflow as tf
from converter.corpora import Item
from converter.train import ClipSet, Recipe, masked_crossentropy, train_model

n = 8
mask = np.zeros(n, dtype=np.float32)
mask[[2, 3, 4]] = 1.0  # happy, sad, angry present
target = np.zeros(n, dtype=np.float32)
target[3] = 1.0
y = np.tile(np.concatenate([target, mask]), (4, 1))
clean = np.array([[0, 0, 5, 1, 0, 0, 0, 0], [0, 0, 0, 2, 1, 0, 0, 0]], dtype=np.float32)
twins = np.array([[0, 0, 0, 3, 0, 0, 0, 0], [0, 0, 0, 2, 1, 0, 0, 0]], dtype=np.float32)
logits = tf.Variable(np.concatenate([clean, twins]))
plain, paired = masked_crossentropy(0.1), masked_crossentropy(0.1, consistency=1.0)
with tf.GradientTape() as tape:
    extra = tf.reduce_sum(paired(y, logits) - plain(y, logits))
grad = tape.gradient(extra, logits).numpy()

""" + _KEPT_PROBS_AND_TINY_CLIPS + """
p, q = kept_probs(clean[0]), kept_probs(twins[0])
recipe = Recipe(window_frames=100, min_frames=50, batch_size=8, sampling="balanced", masked=True, steps=4,
                warmup_epochs=1, channels=(4, 8, 8), aug_variants=1, consistency=1.0)
result = train_model(data, None, recipe, log=lambda *a: None)
try:
    train_model(data, None, Recipe(batch_size=7, sampling="balanced", masked=True, consistency=1.0),
                log=lambda *a: None)
    refused = ""
except ValueError as exc:
    refused = str(exc)
print(json.dumps({"extra": (paired(y, logits) - plain(y, logits)).numpy().tolist(),
                  "kl": float(np.sum(p * np.log(p / q))), "clean_grad": np.abs(grad[:2]).max().item(),
                  "twin_grad": np.abs(grad[2]).max().item(), "loss": result.history[-1]["loss"],
                  "refused": refused}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = info["extra"]
    assert extra[0] == 0 and extra[1] == 0  # clean rows: cross-entropy alone
    assert abs(extra[2] - info["kl"]) < 1e-4 and info["kl"] > 0.5  # a twin that disagrees: KL(clean || twin)
    assert abs(extra[3]) < 1e-5  # a twin that agrees: nothing
    assert info["clean_grad"] == 0 and info["twin_grad"] > 0.1  # only the twin is pulled
    assert np.isfinite(info["loss"])
    assert "even batch size" in info["refused"]


def test_distillation_adds_the_teachers_softened_divergence_over_the_corpus_classes_and_trains():
    script = """
import json
import numpy as np
import tensorflow as tf
import keras
from converter.corpora import Item
from converter.train import ClipSet, Recipe, masked_crossentropy, train_model

n, t = 8, 2.0
mask = np.zeros(n, dtype=np.float32)
mask[[2, 3, 4]] = 1.0  # happy, sad, angry present
target = np.zeros(n, dtype=np.float32)
target[3] = 1.0
teacher = np.array([[0, 9, 4, 1, 0, 0, 0, 0], [0, 0, 0, 2, 1, 0, 0, 0]], dtype=np.float32)  # 9: an absent class
student = np.array([[0, 0, 0, 3, 0, 0, 0, 0], [0, 0, 0, 2, 1, 0, 0, 0]], dtype=np.float32)
y = np.concatenate([np.tile(np.concatenate([target, mask]), (2, 1)), teacher], axis=1)
logits = tf.Variable(student)
plain, taught = masked_crossentropy(0.1), masked_crossentropy(0.1, distill_weight=1.0, distill_temperature=t)
with tf.GradientTape() as tape:
    extra = tf.reduce_sum(taught(y, logits) - plain(y[:, :2 * n], logits))
grad = tape.gradient(extra, logits).numpy()

""" + _KEPT_PROBS_AND_TINY_CLIPS + """
p, q = kept_probs(teacher[0], t), kept_probs(student[0], t)
recipe = Recipe(window_frames=100, min_frames=50, batch_size=8, sampling="balanced", masked=True, steps=4,
                warmup_epochs=1, channels=(4, 8, 8), aug_variants=1, distill_weight=1.0, teacher="any")
inputs = keras.Input((100, 16, 1))
mentor = keras.Model(inputs, keras.layers.Dense(n)(keras.layers.Flatten()(inputs)))
result = train_model(data, None, recipe, log=lambda *a: None, teacher=mentor)
refused = []
for kwargs in ({}, {"teacher": mentor, "recipe": Recipe(window_frames=100, min_frames=50, batch_size=8,
                                                        sampling="balanced", masked=True, steps=4)}):
    try:
        train_model(data, None, kwargs.pop("recipe", recipe), log=lambda *a: None, **kwargs)
        refused.append("")
    except ValueError as exc:
        refused.append(str(exc))
print(json.dumps({"extra": (taught(y, logits) - plain(y[:, :2 * n], logits)).numpy().tolist(),
                  "kl": float(t * t * np.sum(p * np.log(p / q))), "absent_grad": float(np.abs(grad[:, [0, 1, 5, 6, 7]]).max()),
                  "grad": float(np.abs(grad[0]).max()), "loss": result.history[-1]["loss"], "refused": refused}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = info["extra"]
    # T**2 KL(teacher || student) at temperature T over the corpus's classes: the teacher's mass on
    # an absent class (its logit 9) counts for nothing, and a student that agrees adds nothing
    assert abs(extra[0] - info["kl"]) < 1e-4 and info["kl"] > 0.5
    assert abs(extra[1]) < 1e-5
    assert info["absent_grad"] == 0 and info["grad"] > 0.05
    assert np.isfinite(info["loss"])
    assert all("teacher model" in why for why in info["refused"])  # a teacher needs the recipe, and back


def test_a_distilled_recipe_learns_from_its_runs_own_teacher_members(tmp_path):
    """converter protocol --recipe rooms-db-distilled: the teacher ensemble's members of the same run
    are trained (or loaded when kept) under their own names and seed, the row names them, and
    converter train refuses the recipe with a one-line reason (it has no run to take a teacher from)."""
    datasets = _dev_corpora(tmp_path / "datasets")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    models, results = tmp_path / "models", tmp_path / "results"

    def protocol(*more: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([PY, "-m", "converter", "protocol", "--recipe", "rooms-db-distilled", "--runs", "dev",
                               "--steps", "2", "--models", str(models), "--results", str(results), "--datasets",
                               str(datasets), "--cache", str(tmp_path / "cache"), *more],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    first = protocol("--seed", "7")
    assert "member rooms-long trains" in first.stdout and "member rooms-pcen trains" in first.stdout
    assert (models / "rooms-long-seed7" / "dev.keras").exists() and (models / "rooms-pcen-seed7" / "dev.keras").exists()
    row = json.loads((results / "rooms-db-distilled-seed7" / "dev.json").read_text())
    assert row["teacher"]["ensemble"] == "rooms-long-pcen"
    assert set(row["teacher"]["members"]) == {"rooms-long", "rooms-pcen"}
    assert row["recipe"]["distill_weight"] == 1.0 and row["recipe"]["features"] == "edge-db-pcen"
    again = protocol("--seed", "7", "--results", str(tmp_path / "again"))
    assert "member rooms-long loaded from" in again.stdout and "member rooms-pcen loaded from" in again.stdout
    shown = json.loads((tmp_path / "again" / "rooms-db-distilled-seed7" / "dev.json").read_text())
    assert shown["teacher"]["members"]["rooms-long"]["sha256"] == row["teacher"]["members"]["rooms-long"]["sha256"]
    refused = subprocess.run([PY, "-m", "converter", "train", "--recipe", "rooms-db-distilled", "--out",
                              str(tmp_path / "no.tflite")], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and not (tmp_path / "no.tflite").exists()
    assert refused.stderr.strip().splitlines()[-1].startswith("error: recipe rooms-db-distilled learns from ensemble "
                                                              "rooms-long-pcen")


@pytest.mark.slow
def test_arousal_head_trains_then_is_cut_off_before_evaluation_and_int8_export():
    script = """
import json
import numpy as np
from converter.corpora import Item
from converter.evaluate import int8_model
from converter.quantize import TFLiteRunner
from converter.train import ClipSet, Recipe, masked_crossentropy, train_model

rng = np.random.default_rng(0)
items = [Item(f"e{i}", ("sad", "angry")[i % 2], "e", "emo") for i in range(8)]
items += [Item(f"a{i}", None, "ar", "arabic", ("low", "mid", "high")[i % 3]) for i in range(6)]
data = ClipSet(items, [[rng.standard_normal((120, 16)).astype(np.float32)] for _ in items])
recipe = Recipe(window_frames=100, min_frames=50, batch_size=8, sampling="balanced", masked=True, steps=4,
                warmup_epochs=1, channels=(4, 8, 8), aug_variants=0, arousal_weight=1.0)
result = train_model(data, None, recipe, log=lambda *a: None)
tfl = int8_model(result.model, data, recipe)
out = TFLiteRunner(tfl).predict(data.feats[0][0][None, :100, :, None])
loss = masked_crossentropy(0.1, 1.0)
logits = np.zeros((2, 11), dtype=np.float32)
logits[:, 8] = 3.0  # the arousal head says "low"
row_emotion = np.zeros(20, dtype=np.float32)
row_emotion[[4, 12, 13]] = 1.0  # target sad; mask: sad and angry present
row_arousal = np.zeros(20, dtype=np.float32)
row_arousal[[16, 19]] = 1.0  # arousal "low", no emotion
value = np.asarray(loss(np.stack([row_emotion, row_arousal]), logits))
print(json.dumps({"outputs": result.model.output_shape[-1], "layers": [l.name for l in result.model.layers],
                  "int8_shape": list(out.shape), "loss": value.tolist()}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["outputs"] == 8 and "arousal" not in info["layers"] and info["int8_shape"] == [1, 8]
    emotion, arousal = info["loss"]
    assert abs(emotion - np.log(2)) < 1e-4  # two present classes, equal logits: the arousal logits play no part
    p_low = np.exp(3.0) / (np.exp(3.0) + 2)
    expected = -(0.9 + 0.1 / 3) * np.log(p_low) - 2 * (0.1 / 3) * np.log(1 / (np.exp(3.0) + 2))
    assert abs(arousal - expected) < 1e-4  # the arousal row: arousal cross-entropy only (smoothed), no emotion term



@pytest.mark.slow
def test_a_corpus_adversary_reverses_the_gradient_into_the_shared_layers_and_is_cut_off_before_export():
    script = """
import json
import numpy as np
import tensorflow as tf
import keras
from converter.corpora import Item
from converter.evaluate import int8_model
from converter.model import REVERSAL_LAYER, build_model
from converter.quantize import TFLiteRunner
from converter.train import ClipSet, Recipe, masked_crossentropy, train_model

rng = np.random.default_rng(0)
items = [Item(f"e{i}", ("sad", "angry")[i % 2], f"s{i % 3}", "emo") for i in range(8)]
items += [Item(f"p{i}", ("sad", "happy", "neutral")[i % 3], f"p{i % 2}", "polish") for i in range(9)]
data = ClipSet(items, [[rng.standard_normal((120, 16)).astype(np.float32)] for _ in items])
recipe = Recipe(window_frames=100, min_frames=50, batch_size=8, sampling="balanced", masked=True, steps=4,
                warmup_epochs=1, channels=(4, 8, 8), aug_variants=0, corpus_adversary=1.0)
logs = []
result = train_model(data, None, recipe, log=logs.append)
tfl = int8_model(result.model, data, recipe)
out = TFLiteRunner(tfl).predict(data.feats[0][0][None, :100, :, None])

# the corpus logits' gradient reaches the shared layers negated and scaled by the reversal's strength
model = build_model(100, 16, 8, (4, 8, 8), output="logits", adversary_classes=2)
x = tf.constant(rng.standard_normal((2, 100, 16, 1)).astype(np.float32))

def stem_gradient(strength):
    model.get_layer(REVERSAL_LAYER).strength.assign(strength)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=False)[:, 8:] ** 2)
    return tape.gradient(loss, model.get_layer("stem_conv").kernel).numpy()

features = keras.Model(model.inputs, model.get_layer("flatten").output)
with tf.GradientTape() as tape:  # the same head without the reversal
    head = model.get_layer("adversary")(model.get_layer("adversary_hidden")(features(x, training=False)))
    loss = tf.reduce_sum(head ** 2)
plain = tape.gradient(loss, model.get_layer("stem_conv").kernel).numpy()
full, half, off = stem_gradient(1.0), stem_gradient(0.5), stem_gradient(0.0)

loss = masked_crossentropy(0.1, adversary_classes=2)
logits = np.zeros((1, 10), dtype=np.float32)
logits[:, 8] = 2.0  # the discriminator says "emo"
row = np.zeros(18, dtype=np.float32)
row[[4, 12, 13, 17]] = 1.0  # target sad; mask: sad and angry; corpus "polish"
print(json.dumps({"outputs": result.model.output_shape[-1], "layers": [l.name for l in result.model.layers],
                  "int8_shape": list(out.shape), "loss": float(np.asarray(loss(row[None], logits))[0]),
                  "strengths": [h["reversal_strength"] for h in result.history],
                  "told": [h["adversary_told_apart"] for h in result.history], "logs": logs,
                  "reversed": bool(np.allclose(full, -plain, atol=1e-6)),
                  "halved": bool(np.allclose(half, full / 2, atol=1e-7)),
                  "off": float(np.abs(off).max()), "size": float(np.abs(plain).max())}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["outputs"] == 8 and info["int8_shape"] == [1, 8]
    assert not {"adversary", "adversary_hidden", "adversary_reversal"} & set(info["layers"])
    assert info["reversed"] and info["halved"] and info["off"] == 0.0 and info["size"] > 0
    # two present classes at equal logits (log 2) plus the discriminator's cross-entropy for "polish"
    assert abs(info["loss"] - (np.log(2) + np.log(np.exp(2.0) + 1))) < 1e-4
    assert info["strengths"][0] == 0.0 and info["strengths"][-1] > 0.9 and len(info["told"]) == len(info["strengths"])
    assert all(0.0 <= t <= 1.0 for t in info["told"])
    assert any("the discriminator tells" in line and "chance 50.0%" in line for line in info["logs"])


@pytest.mark.slow
def test_an_ensemble_averages_its_members_logits_in_one_int8_graph_and_loads_saved_members(tmp_path):
    """rooms-pair: saved member models are loaded (not retrained), averaged, exported as one graph."""
    script = f"""
import json
from pathlib import Path
import numpy as np
from converter.corpora import Item
from converter.ensemble import average_logits
from converter.model import build_model
from converter.protocol import ENSEMBLES, RunPlan, _member_models
from converter.quantize import TFLiteRunner, convert

models_dir = Path({str(tmp_path / "models")!r})
members = [build_model(100, 16, 8, channels, output="logits") for channels in ((4, 8, 8), (8, 8, 16))]
for name, model in zip(ENSEMBLES["rooms-pair"], members):
    (models_dir / name).mkdir(parents=True)
    model.save(models_dir / name / "cv1.keras")
plan = RunPlan("cv1", [Item("x", "sad", "s", "ravdess")], [], [], {{}}, farfield=True)
loaded, info = _member_models("rooms-pair", plan, None, models_dir, None, log=lambda *a: None)
x = np.random.default_rng(0).standard_normal((6, 100, 16, 1)).astype(np.float32)
ensemble = average_logits(loaded)
expected = (np.asarray(members[0](x)) + np.asarray(members[1](x))) / 2
runner = TFLiteRunner(convert(ensemble, x, "int8"))
try:
    average_logits([members[0], build_model(100, 16, 6, (4, 8, 8), output="logits")])
    refused = ""
except ValueError as exc:
    refused = str(exc)
import hashlib
print(json.dumps({{"sources": [v["source"] for v in info.values()],
                  "digests_match": [v["sha256"] == hashlib.sha256(Path(v["source"]).read_bytes()).hexdigest()[:16]
                                    for v in info.values()],
                  "float_error": float(np.abs(np.asarray(ensemble(x)) - expected).max()),
                  "int8_error": float(np.abs(runner.predict(x) - expected).max()),
                  "spread": float(np.abs(expected).max()),
                  "inputs": len(runner.interpreter.get_input_details()),
                  "refused": refused}}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(src.endswith("cv1.keras") for src in info["sources"]) and len(info["sources"]) == 2
    assert info["digests_match"] == [True, True]  # rows say which file, not only which path, they scored
    assert info["float_error"] < 1e-5  # exactly the mean of the two members' logits
    assert info["int8_error"] < 0.1 * info["spread"]  # one int8 graph reproduces it to a few steps
    assert info["inputs"] == 1 and "disagree" in info["refused"]

@pytest.mark.slow
def test_a_mixed_ensemble_hands_each_member_its_block_of_log_mel_and_pcen():
    """rooms-long-pcen: a log-mel member and a PCEN member read their own block of one
    edge-db-pcen input; the int8 graph slices (no arithmetic) and follows the float mean."""
    script = """
import json
import numpy as np
from converter.ensemble import average_logits, member_views
from converter.model import build_model
from converter.protocol import ENSEMBLES, RECIPES, ensemble_features
from converter.quantize import TFLiteRunner, convert, graph_report
from converter.train import Recipe
from edge_ser.features import preset

both = preset("edge-db-pcen").replace(n_mels=16)
db, pcen = both.blocks()
views = member_views(both, [pcen, db])  # any order: each member finds its block
members = [build_model(100, 16, 8, channels, output="logits") for channels in ((4, 8, 8), (8, 8, 16))]
x = np.random.default_rng(0).standard_normal((6, 100, 32, 1)).astype(np.float32)
ensemble = average_logits(members, views=views)
expected = (np.asarray(members[0](x[:, :, 16:])) + np.asarray(members[1](x[:, :, :16]))) / 2
graph = convert(ensemble, x, "int8")
runner = TFLiteRunner(graph)
refusals = []
for attempt in (lambda: member_views(both, [db, preset("edge").replace(n_mels=16, fmin=0.0)]),
                lambda: ensemble_features([Recipe(features="edge-pcen"), Recipe(features="edge")]),
                lambda: average_logits(members, views=[(0, 16)])):
    try:
        attempt()
        refusals.append("")
    except ValueError as exc:
        refusals.append(str(exc))
print(json.dumps({"views": views, "shape": list(ensemble.input_shape),
                  "features": {name: ensemble_features([RECIPES[m][0]() for m in ENSEMBLES[name]])
                               for name in ("rooms-pair", "rooms-long-pcen")},
                  "float_error": float(np.abs(np.asarray(ensemble(x)) - expected).max()),
                  "int8_error": float(np.abs(runner.predict(x) - expected).max()),
                  "spread": float(np.abs(expected).max()),
                  "ops": sorted({op["op_name"] for op in runner.interpreter._get_ops_details()}),
                  "integer_only": graph_report(graph)["integer_only"], "refusals": refusals}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["views"] == [[16, 32], [0, 16]] and info["shape"] == [None, 100, 32, 1]
    assert info["features"] == {"rooms-pair": "edge", "rooms-long-pcen": "edge-db-pcen"}
    assert info["float_error"] < 1e-5  # exactly the mean of each member on its own block
    assert info["int8_error"] < 0.1 * info["spread"]
    assert "STRIDED_SLICE" in info["ops"] and info["integer_only"]
    not_a_block, wrong_order, one_view = info["refusals"]
    assert "not a block" in not_a_block and "in this order" in wrong_order and "2 members" in one_view


def test_an_ensemble_member_is_scored_on_windows_cut_from_its_own_features():
    """The float score beside an ensemble's is the member's own: a clip shorter than a window is
    padded as the member's protocol run pads it (one minimum for log-mel's 64 bands), not as the
    ensemble's two blocks would (a minimum per half of those bands)."""
    from dataclasses import replace

    from converter.protocol import ENSEMBLES, RECIPES, RunPlan, ensemble_features, member_scorer, window_outputs

    recipes = [RECIPES[m][0]() for m in ENSEMBLES["rooms-long-pcen"]]
    ensemble = replace(recipes[0], features=ensemble_features(recipes))
    plan = RunPlan("cv1", [Item("x", "sad", "s", "ravdess")], [], [], {}, farfield=True)
    short = np.random.default_rng(0).standard_normal((120, 64)).astype(np.float32)
    short[:, 32:] += 5.0  # the upper bands' minimum is not the clip's
    windows = lambda w: w.reshape(len(w), -1)  # noqa: E731 -- the windows themselves, as the model gets them
    [scored] = window_outputs(windows, [short], member_scorer(plan, ensemble, recipes[0]).recipe)
    [own] = window_outputs(windows, [short], recipes[0])
    [halves] = window_outputs(windows, [short], ensemble)
    assert np.array_equal(scored, own)
    assert not np.array_equal(scored, halves)

def test_the_card_says_which_member_hears_one_block_and_which_hears_both_as_channels():
    from converter.export import _network_line

    member = {"steps": 8000, "channels": [24, 32], "head": "time_pool"}
    plain = _network_line(1000, {"members": [dict(member, member="rooms-long", features="edge"),
                                             dict(member, member="rooms-pcen", features="edge-pcen")]}, True)
    stacked = _network_line(1000, {"members": [dict(member, member="rooms-long", features="edge"),
                                               dict(member, member="rooms-pcen-db", features="edge-db-pcen")]}, True)
    single = _network_line(1000, {"features": "edge-db-pcen", "channels": [24, 32], "head": "time_pool"}, True)
    assert "its own block of the input" in plain and "as a second channel" in plain and "band on band" not in plain
    assert "`rooms-long` on the log-mel block" in stacked
    assert "`rooms-pcen-db` on the log-mel + PCEN mel blocks as 2 channels, band on band" in stacked
    assert "as a second channel" not in stacked and "each channel's deltas" in stacked
    assert "stacks the log-mel + PCEN mel blocks as 2 channels" in single

@pytest.mark.slow
def test_a_member_that_hears_two_views_stacks_them_as_channels_beside_a_one_view_member():
    """rooms-long-pcen-db: a member trained on edge-db-pcen sees log-mel and PCEN as two channels,
    band on band, each with its own time difference; in the ensemble it reads both blocks while
    the log-mel member reads its own, and the int8 graph follows the float mean."""
    script = """
import json
import numpy as np
from converter.ensemble import average_logits, member_views
from converter.model import build_model
from converter.protocol import ENSEMBLES, RECIPES, ensemble_features
from converter.quantize import TFLiteRunner, convert, graph_report
from edge_ser.features import preset

import keras

both = preset("edge-db-pcen").replace(n_mels=16)
db, pcen = both.blocks()
x = np.random.default_rng(0).standard_normal((6, 100, 32, 1)).astype(np.float32)
fused = build_model(100, 32, 8, (4, 8, 8), output="logits", blocks=2)
probe = keras.Model(fused.inputs, [fused.get_layer("blocks_as_channels").output, fused.get_layer("with_delta").output])
stacked, with_delta = (np.asarray(t) for t in probe(x))
planes = np.stack([x[..., :16, 0], x[..., 16:, 0]], axis=-1)
padded = np.pad(planes, ((0, 0), (1, 1), (0, 0), (0, 0)))
deltas = 0.5 * (padded[:, 2:] - padded[:, :-2])
views = member_views(both, [db, both])
plain = build_model(100, 16, 8, (4, 8, 8), output="logits")
ensemble = average_logits([plain, fused], views=views)
expected = (np.asarray(plain(x[:, :, :16])) + np.asarray(fused(x))) / 2
graph = convert(ensemble, x, "int8")
runner = TFLiteRunner(graph)
try:
    build_model(100, 33, 8, (4, 8, 8), blocks=2)
    refused = ""
except ValueError as exc:
    refused = str(exc)
print(json.dumps({"stack_error": float(np.abs(stacked - planes).max()),
                  "delta_error": float(np.abs(with_delta[..., 2:] - deltas).max()),
                  "channels": int(with_delta.shape[-1]), "views": views,
                  "features": ensemble_features([RECIPES[m][0]() for m in ENSEMBLES["rooms-long-pcen-db"]]),
                  "float_error": float(np.abs(np.asarray(ensemble(x)) - expected).max()),
                  "int8_error": float(np.abs(runner.predict(x) - expected).max()),
                  "spread": float(np.abs(expected).max()),
                  "integer_only": graph_report(graph)["integer_only"], "refused": refused}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["stack_error"] == 0.0  # log-mel band k beside PCEN band k, nothing mixed
    assert info["delta_error"] < 1e-6 and info["channels"] == 4  # each view's own time difference
    assert info["views"] == [[0, 16], [0, 32]] and info["features"] == "edge-db-pcen"
    assert info["float_error"] < 1e-5
    assert info["int8_error"] < 0.1 * info["spread"] and info["integer_only"]
    assert "do not split into 2 blocks" in info["refused"]

@pytest.mark.slow
def test_a_weighted_ensemble_scales_each_member_and_equal_weights_keep_the_plain_mean():
    """rooms-long-pcen-w70: 0.7 of the log-mel member's logits plus 0.3 of the PCEN member's, in
    the float model and the int8 graph; equal weights build the very graph of the plain mean, and
    weights that are not a convex combination are refused rather than rescaled."""
    script = """
import json
import numpy as np
from converter.ensemble import average_logits
from converter.model import build_model
from converter.protocol import ENSEMBLES, ensemble_spec, ensemble_weights
from converter.quantize import TFLiteRunner, convert
from converter.train import Recipe

members = [build_model(100, 16, 8, channels, output="logits") for channels in ((4, 8, 8), (8, 8, 16))]
x = np.random.default_rng(1).standard_normal((6, 100, 16, 1)).astype(np.float32)
a, b = (np.asarray(m(x)) for m in members)
weights = ensemble_weights("rooms-long-pcen-w70")
weighted = average_logits(members, weights=weights)
expected = weights[0] * a + weights[1] * b
runner = TFLiteRunner(convert(weighted, x, "int8"))
refusals = []
for bad in ((0.7, 0.4), (1.2, -0.2), (0.5, 0.3, 0.2)):
    try:
        average_logits(members, weights=bad)
        refusals.append("")
    except ValueError as exc:
        refusals.append(str(exc))
equal = average_logits(members, weights=(0.5, 0.5))
spec = ensemble_spec("rooms-long-pcen-w70", [Recipe(features="edge"), Recipe(features="edge-pcen")])
print(json.dumps({"float_error": float(np.abs(np.asarray(weighted(x)) - expected).max()),
                  "mean_gap": float(np.abs(expected - (a + b) / 2).max()),
                  "int8_error": float(np.abs(runner.predict(x) - expected).max()),
                  "spread": float(np.abs(expected).max()),
                  "ops": sorted({op["op_name"] for op in runner.interpreter._get_ops_details()}),
                  "equal_layers": [layer.__class__.__name__ for layer in equal.layers],
                  "plain": ensemble_weights("rooms-long-pcen"), "spec_weights": spec.get("weights"),
                  "members": list(ENSEMBLES["rooms-long-pcen-w70"]), "refusals": refusals}))
"""
    proc = subprocess.run([PY, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["float_error"] < 1e-5 and info["mean_gap"] > 100 * info["float_error"]  # not the plain mean
    assert info["int8_error"] < 0.1 * info["spread"] and "ADD" in info["ops"]
    assert "Average" in info["equal_layers"] and "Rescaling" not in info["equal_layers"]
    assert info["plain"] is None and info["spec_weights"] == [0.7, 0.3]
    assert info["members"] == ["rooms-long", "rooms-pcen"]
    not_one, negative, three = info["refusals"]
    assert "sum to 1" in not_one and "positive" in negative and "3 weights for 2" in three


#: Shared by the graph checks below: one int8 conversion's ops and error, and a refused build.
_GRAPH_CHECK = """
import json
import keras
import numpy as np
from converter.model import build_model
from converter.quantize import TFLiteRunner, convert


def int8_report(model, x):
    plain = np.asarray(model(x))
    runner = TFLiteRunner(convert(model, x, "int8"))
    return {"int8_error": float(np.abs(runner.predict(x) - plain).max()), "spread": float(np.abs(plain).max()),
            "ops": sorted({op["op_name"] for op in runner.interpreter._get_ops_details()})}


def refusal(**kwargs):
    try:
        build_model(100, 16, 8, (4, 8, 8), **kwargs)
    except ValueError as exc:
        return str(exc)
    return ""


rng = np.random.default_rng(0)
"""


def _graph_check(script: str) -> dict:
    """Run ``_GRAPH_CHECK`` + ``script`` in a fresh interpreter; its last line is a JSON report."""
    proc = subprocess.run([PY, "-c", _GRAPH_CHECK + script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_band_mean_normalisation_removes_a_fixed_colouring_inside_one_int8_graph():
    """rooms-cmn: a constant added to a band (a room's or a microphone's colouring, the level) changes nothing."""
    info = _graph_check("""
model = build_model(100, 16, 8, (4, 8, 8), output="logits", input_norm="band_mean")
x = (rng.standard_normal((6, 100, 16, 1)) * 3 - 8).astype(np.float32)
coloured = x + (rng.standard_normal((1, 1, 16, 1)) * 4).astype(np.float32)
change = float(np.abs(np.asarray(model(coloured)) - np.asarray(model(x))).max())
print(json.dumps({"float_change": change, "refused": refusal(input_norm="band_max"), **int8_report(model, x)}))
""")
    assert info["float_change"] < 1e-4 * max(1.0, info["spread"])
    assert info["int8_error"] < 0.1 * info["spread"]
    assert {"AVERAGE_POOL_2D", "SUB"} <= set(info["ops"]) and "DEQUANTIZE" not in info["ops"]
    assert "band_mean" in info["refused"]


def test_attention_head_takes_a_weighted_mean_over_time_inside_one_int8_graph():
    """rooms-attention: weights over the frames sum to one; the pooled value lies between the
    frames' minimum and maximum; the int8 graph has no float islands and follows the float model."""
    info = _graph_check("""
# the shipped size: int8 resolution depends on the frame count and the channels
model = build_model(300, 64, 8, (24, 32, 48, 64, 96), output="logits", head="time_attention")
x = (rng.standard_normal((8, 300, 64, 1)) * 3).astype(np.float32)
probe = keras.Model(model.inputs, [model.get_layer(n).output for n in
                                   ("block4_relu", "time_attention_softmax", "time_attention_pool")])
frames_in, weights, pooled = (np.asarray(t) for t in probe(x))
summed = pooled[:, 0]
print(json.dumps({"weight_sums": np.abs(weights.sum(axis=-1) - 1).max().item(),
                  "below_min": float((frames_in.min(axis=1) - summed).max()),
                  "above_max": float((summed - frames_in.max(axis=1)).max()),
                  "refused": refusal(head="time_median"), **int8_report(model, x)}))
""")
    assert info["weight_sums"] < 1e-5
    assert info["below_min"] < 1e-5 and info["above_max"] < 1e-5
    assert info["int8_error"] < 0.1 * info["spread"]
    assert {"SOFTMAX", "MUL"} <= set(info["ops"]) and not {"DEQUANTIZE", "BATCH_MATMUL"} & set(info["ops"])
    assert "time_median" in info["refused"]


def test_another_seed_is_its_own_row_and_changes_only_the_seed():
    from converter.protocol import RECIPES, _make_recipe, seeded_label

    assert seeded_label("rooms-cmn", None) == "rooms-cmn" and seeded_label("rooms-cmn", 2) == "rooms-cmn-seed2"
    own, other = _make_recipe("rooms-cmn", None), _make_recipe("rooms-cmn", None, seed=2)
    assert other.seed == 2 and own.seed != 2
    assert {k for k, v in own.to_dict().items() if other.to_dict()[k] != v} == {"seed"}
    assert own.input_norm == "band_mean" and RECIPES["rooms-ravdess-half"][0]().input_norm == "none"


# -- rooms and noise ------------------------------------------------------------------------------


def test_rooms_and_noise_split_by_place_and_recording(tmp_path):
    from converter import rooms

    shared = Path(os.environ.get("EDGE_SER_SHARED", ROOT.parent / "shared")) / "datasets"
    if not (shared / "rirs" / "manifest.csv").is_file():
        pytest.skip(f"rooms and noise not found under {shared}")
    train, test = (rooms.rir_paths(s, shared) for s in rooms.SPLITS)
    assert train and test
    assert not {rooms.place_id(p) for p in train} & {rooms.place_id(p) for p in test}
    ntrain, ntest = (rooms.noise_paths(s, shared) for s in rooms.SPLITS)
    assert ntest and all(rooms.noise_recording_id(p) for p in ntest)  # held out: UrbanSound8K only
    assert not {rooms.noise_recording_id(p) for p in ntrain} & {rooms.noise_recording_id(p) for p in ntest}
    assert rooms.noise_recording_id("fold1/101415-3-0-8.opus") == "us8k-101415"


def test_far_field_parts_take_each_side_and_each_part_apart():
    """farfield-parts: reverb alone keeps the dry peak and adds no noise; each side uses its own bank."""
    from converter.farfield_parts import PARTS, clip_parts, degrade, markdown, training_sample
    from converter.rooms import RoomBank, prepare_rir

    echo = np.zeros(800, dtype=np.float32)
    echo[0], echo[300] = 1.0, 0.8
    direct = np.zeros(10, dtype=np.float32)
    direct[0] = 1.0
    noise = (np.random.default_rng(0).standard_normal(8000) * 0.3).astype(np.float32)
    # held-out places: a strong echo; training places: a direct path alone
    banks = {"test": RoomBank((prepare_rir(echo),), (noise,)), "train": RoomBank((prepare_rir(direct),), (noise,))}
    x = (np.sin(np.arange(16000) / 10.0) * np.hanning(16000) * 0.5).astype(np.float32)
    rng = np.random.default_rng
    assert np.array_equal(degrade(x, "clean", banks, rng(1)), x)
    assert np.allclose(degrade(x, "reverb-train", banks, rng(1)), x, atol=1e-5)  # through a direct path
    held = degrade(x, "reverb-heldout", banks, rng(1))
    assert not np.allclose(held, x, atol=1e-3) and np.isclose(np.abs(held).max(), np.abs(x).max(), rtol=1e-4)
    # the whole condition adds noise where the clip is silent; reverb alone does not
    assert np.abs(degrade(x, "farfield-train", banks, rng(1))[:50]).max() > 10 * np.abs(x[:50]).max() + 1e-4
    parts = clip_parts(x, "a.wav", banks, lambda s: s[:100])
    assert list(parts) == list(PARTS)
    assert all(np.array_equal(parts[p], clip_parts(x, "a.wav", banks, lambda s: s[:100])[p]) for p in PARTS)
    assert not np.array_equal(parts["farfield-heldout"], clip_parts(x, "b.wav", banks, lambda s: s[:100])[
        "farfield-heldout"])  # another clip, other draws

    items = [Item(f"{c}{i}.wav", "neutral", f"{c}-{i % 3}", c) for c in ("x", "y") for i in range(7)]
    sample = training_sample(items, 5)
    assert sample == training_sample(items, 5) and len(sample) == len(set(sample)) == 10
    assert {c: sum(it.corpus == c for it in sample) for c in ("x", "y")} == {"x": 5, "y": 5}
    table = markdown({"speakers": "dev", "clips": 2, "models": {"m/dev": {p: {"ua": 0.5, "ravdess": 0.25}
                                                                          for p in PARTS}}})
    assert "| m/dev | 50.0 % (25.0) |" in table and all(p in table for p in PARTS)
    assert "features" not in table.split("\n")[0]
    assert "features edge-pcen" in markdown({"speakers": "dev", "clips": 2, "features": "edge-pcen", "models": {}})


def test_far_field_is_seeded_and_uses_the_bank(tmp_path):
    from converter.rooms import FarField, RoomBank, far_field, prepare_rir

    rir = np.zeros(800, dtype=np.float32)
    rir[40], rir[300] = 1.0, 0.5
    bank = RoomBank((prepare_rir(rir),), (np.random.default_rng(0).standard_normal(8000).astype(np.float32),))
    x = np.sin(np.arange(16000) / 10.0).astype(np.float32) * 0.5
    a = far_field(x, bank, np.random.default_rng(3))
    b = far_field(x, bank, np.random.default_rng(3))
    assert np.array_equal(a, b) and a.shape == x.shape
    quiet = far_field(x, bank, np.random.default_rng(3), FarField(snr_db=(60, 60), attenuation_db=(20, 20)))
    assert np.sqrt(np.mean(quiet ** 2)) < 0.2 * np.sqrt(np.mean(x ** 2))


@pytest.mark.slow
def test_simulated_rooms_are_drawn_in_range_prepared_like_measured_ones_and_kept(tmp_path):
    from converter.simulated_rooms import draw_room, simulate, simulated_bank

    rng = np.random.default_rng(0)
    for _ in range(50):
        room = draw_room(rng)
        assert 0.5 <= float(np.linalg.norm(np.subtract(room.source, room.microphone))) <= 5.0
        assert all(0.3 <= p <= d - 0.3 for p, d in zip(room.source[:2] + room.microphone[:2], room.dims[:2] * 2))
    short, long = (simulate(replace_rt60(draw_room(np.random.default_rng(1)), t)) for t in (0.2, 0.9))
    for rir in (short, long):
        assert np.argmax(np.abs(rir)) == 0 and abs(float(np.sum(rir.astype(np.float64) ** 2)) - 1.0) < 1e-4

    def tail_energy(rir: np.ndarray) -> float:  # energy after the first 50 ms
        return float(np.sum(rir[800:].astype(np.float64) ** 2))

    assert tail_energy(long) > 2 * tail_energy(short)
    made = simulated_bank(count=3, seed=5, directory=str(tmp_path))
    simulated_bank.cache_clear()
    kept = simulated_bank(count=3, seed=5, directory=str(tmp_path))
    assert len(list(tmp_path.glob("simulated-rooms-*.npz"))) == 1
    assert all(np.array_equal(a, b) for a, b in zip(made, kept))


def replace_rt60(room, rt60: float):
    from dataclasses import replace

    return replace(room, rt60=rt60)


def test_room_voices_hears_the_runs_own_training_speakers_behind_a_share_of_its_noisy_copies(tmp_path, monkeypatch):
    """room-voices: the voice bank comes from the training clips given (at most four a speaker, never
    an arousal-only clip), its digest names the cache entries, and 40 % of the copies given real
    noise hear voices instead; a bank not registered, or an unknown augmentation, is a clear error."""
    from converter import augment, rooms
    from converter.cache import Treatment, entry_key
    from converter.protocol import RECIPES, training_treatment
    from edge_ser.features import preset

    rir = np.zeros(400, dtype=np.float32)
    rir[0] = 1.0
    fake = rooms.RoomBank((rir,), (np.random.default_rng(0).standard_normal(4000).astype(np.float32),))
    monkeypatch.setattr(rooms, "load_bank", lambda *a, **k: fake)
    t = np.arange(8000) / 16000
    items = []
    for s, hz in enumerate((170.0, 230.0, 290.0)):
        for k in range(6):
            path = tmp_path / f"s{s}-{k}.wav"
            soundfile.write(str(path), (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
            items.append(Item(str(path), "sad", f"s{s}", "c"))
    unlabelled = Item(items[0].path, None, "b0", "baved", "mid")
    recipe = RECIPES["rooms-pcen-voices"][0]()
    treatment = training_treatment(recipe, items + [unlabelled], 16000)
    name = treatment.augmentation
    assert name.startswith("room-voices:") and treatment.opus_wav
    bank = augment._VOICE_BANKS[name.split(":")[1]]
    assert [len(voice) for voice in bank] == [4, 4, 4]  # three speakers, four clips each, no BAVED
    assert training_treatment(recipe, items[:12], 16000).augmentation != name  # another run, another bank
    assert training_treatment(RECIPES["rooms-pcen"][0](), items, 16000).augmentation == "room"
    config = preset("edge-pcen")
    assert entry_key(items[0].path, config, 1, 0, treatment) != entry_key(items[0].path, config, 1, 0,
                                                                           Treatment("room", opus_wav=True))
    speech = (0.3 * np.sin(2 * np.pi * 100.0 * np.arange(16000) / 16000)).astype(np.float32)
    heard = {"voices": 0, "noise": 0}
    for seed in range(300):
        out, steps = augment.augmentation_function(name)(speech, 16000, np.random.default_rng(seed))
        assert out.dtype == np.float32 and out.size >= 0.85 * speech.size
        heard["voices"] += "voices@" in steps
        heard["noise"] += "noise@" in steps
    share = heard["voices"] / (heard["voices"] + heard["noise"])
    assert abs(share - augment.VOICES_SHARE) < 0.08 and abs((heard["voices"] + heard["noise"]) / 300 - 0.8) < 0.07
    with pytest.raises(RuntimeError, match="not registered"):
        augment.augmentation_function("room-voices:000000000000")(speech, 16000, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment.augmentation_function("underwater")


@pytest.mark.slow
def test_room_sim_shares_its_copies_between_measured_simulated_and_no_room(monkeypatch):
    """room-sim: measured 45 %, simulated 35 %; the first room recipe never draws a simulated room."""
    from converter import augment, rooms, simulated_rooms

    rir = np.zeros(400, dtype=np.float32)
    rir[0] = 1.0
    fake = rooms.RoomBank((rir,), (np.random.default_rng(0).standard_normal(4000).astype(np.float32),))
    monkeypatch.setattr(rooms, "load_bank", lambda *a, **k: fake)
    monkeypatch.setattr(simulated_rooms, "simulated_bank", lambda *a, **k: (rir,))
    x = (0.3 * np.sin(np.arange(1600) / 5.0)).astype(np.float32)
    counts = {"rir": 0, "simulated-room": 0}
    first = {"rir": 0, "simulated-room": 0}
    for seed in range(300):
        for recipe, tally in ((augment.augment_room_sim, counts), (augment.augment_room, first)):
            steps = recipe(x, 16000, np.random.default_rng(seed))[1].split(",")
            for key in tally:
                tally[key] += key in steps
    assert abs(counts["rir"] / 300 - 0.45) < 0.07 and abs(counts["simulated-room"] / 300 - 0.35) < 0.07
    assert first["simulated-room"] == 0 and abs(first["rir"] / 300 - 0.6) < 0.07


def test_room_mic_hears_half_its_copies_through_another_microphone_drawn_per_copy(monkeypatch):
    """room-mic: half of the room copies pass through a drawn equalizer and roll-offs after the noise;
    each copy is a function of its seed (audiomentations' global generators seeded from it and put
    back), keeps its peak, and loses the low end; the first room recipe never draws a microphone."""
    import random

    from converter import augment, rooms

    rir = np.zeros(400, dtype=np.float32)
    rir[0] = 1.0
    fake = rooms.RoomBank((rir,), (np.random.default_rng(0).standard_normal(4000).astype(np.float32),))
    monkeypatch.setattr(rooms, "load_bank", lambda *a, **k: fake)
    x = (0.3 * np.sin(np.arange(3200) / 5.0)).astype(np.float32)
    heard = {"room-mic": 0, "room": 0}
    for seed in range(200):
        for name in heard:
            steps = augment.augmentation_function(name)(x, 16000, np.random.default_rng(seed))[1].split(",")
            heard[name] += "mic" in steps
    assert abs(heard["room-mic"] / 200 - augment.MICROPHONE_SHARE) < 0.08 and heard["room"] == 0

    t = np.arange(16000) / 16000
    tones = (0.2 * np.sin(2 * np.pi * 20.0 * t) + 0.2 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)

    def level_db(y: np.ndarray, hz: float) -> float:
        return float(20 * np.log10(np.abs(np.fft.rfft(y))[int(hz)] + 1e-9))  # 1 Hz bins

    random.seed(3)
    np.random.seed(3)
    expected = (random.random(), float(np.random.random()))
    random.seed(3)
    np.random.seed(3)
    falls, mids = [], []
    for seed in range(40):
        heard_through = augment.another_microphone(tones, 16000, np.random.default_rng(seed))
        assert heard_through.dtype == np.float32 and heard_through.shape == tones.shape
        assert np.isclose(np.max(np.abs(heard_through)), np.max(np.abs(tones)), rtol=1e-5)
        falls.append((level_db(tones, 20) - level_db(tones, 1000)) - (level_db(heard_through, 20) - level_db(heard_through, 1000)))
        mids.append(level_db(heard_through, 1000))
    assert (random.random(), float(np.random.random())) == expected  # the global generators put back
    assert np.array_equal(augment.another_microphone(tones, 16000, np.random.default_rng(7)),
                          augment.another_microphone(tones, 16000, np.random.default_rng(7)))
    assert np.mean(falls) > 10.0 and min(falls) > 0.0  # a high-pass at 50-400 Hz takes the 20 Hz tone down
    assert np.std(mids) > 0.5  # and each copy's microphone is a different one


def _vowel(f0: float, formant: float = 700.0, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    """A steady vowel-like sound: the harmonics of ``f0`` shaped by one resonance at ``formant``."""
    t = np.arange(int(rate * seconds)) / rate
    harmonics = np.arange(1, int(4000 / f0) + 1) * f0
    gains = 1.0 / np.sqrt((1.0 - (harmonics / formant) ** 2) ** 2 + (harmonics / (formant * 4.0)) ** 2)
    x = np.sum(gains[:, None] * np.sin(2 * np.pi * harmonics[:, None] * t), axis=0)
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def _f0(y: np.ndarray, rate: int = 16000) -> float:
    """The strongest autocorrelation period between 60 and 400 Hz, as a frequency."""
    segment = y[rate // 8: -rate // 8].astype(np.float64)
    lags = np.correlate(segment, segment, "full")[segment.size - 1:]
    low, high = rate // 400, rate // 60
    return rate / (low + int(np.argmax(lags[low:high])))


def _formant(y: np.ndarray, rate: int = 16000) -> float:
    """The power-weighted mean frequency between 200 and 2000 Hz: where the one resonance of
    :func:`_vowel` sits, whichever harmonics sample it."""
    power = np.abs(np.fft.rfft(y * np.hanning(y.size))) ** 2
    hz = np.fft.rfftfreq(y.size, 1 / rate)
    band = (hz > 200) & (hz < 2000)
    return float(np.sum(hz[band] * power[band]) / np.sum(power[band]))


def test_room_pitch_transposes_half_its_voices_keeping_formants_timing_and_peak(monkeypatch):
    """room-pitch: half of the room copies are spoken higher or lower within +-3 semitones before the
    room, and no room copy is; transpose_voice moves the pitch by the semitones asked and leaves the
    formant, the length and the peak where they were (a speed change moves the formant too); a clip
    Praat cannot analyse keeps its pitch; a copy stays a function of its seed."""
    from converter import augment, rooms

    rir = np.zeros(400, dtype=np.float32)
    rir[0] = 1.0
    fake = rooms.RoomBank((rir,), (np.random.default_rng(0).standard_normal(4000).astype(np.float32),))
    monkeypatch.setattr(rooms, "load_bank", lambda *a, **k: fake)
    x = _vowel(150.0, seconds=0.4)
    transposed = {"room-pitch": [], "room": []}
    for seed in range(300):
        for name, shifts in transposed.items():
            steps = augment.augmentation_function(name)(x, 16000, np.random.default_rng(seed))[1].split(",")
            shifts += [float(step[len("pitch"):]) for step in steps if step.startswith("pitch")]
    assert abs(len(transposed["room-pitch"]) / 300 - augment.TRANSPOSE_SHARE) < 0.08 and not transposed["room"]
    assert max(np.abs(transposed["room-pitch"])) <= augment.TRANSPOSE_SEMITONES
    assert min(transposed["room-pitch"]) < -2 and max(transposed["room-pitch"]) > 2
    copy = augment.augmentation_function("room-pitch")
    assert np.array_equal(copy(x, 16000, np.random.default_rng(11))[0], copy(x, 16000, np.random.default_rng(11))[0])

    vowel = _vowel(150.0)
    assert abs(_formant(vowel) - 700.0) < 50
    for semitones in (3.0, -3.0, 1.5):
        heard = augment.transpose_voice(vowel, 16000, semitones)
        assert heard.dtype == np.float32 and heard.shape == vowel.shape
        assert np.isclose(np.max(np.abs(heard)), np.max(np.abs(vowel)), rtol=1e-5)
        assert abs(_f0(heard) / _f0(vowel) / 2.0 ** (semitones / 12.0) - 1.0) < 0.02
        assert abs(_formant(heard) - _formant(vowel)) < 20  # the formant stays
    faster = augment.change_speed(vowel, 2.0 ** (3.0 / 12.0))
    assert _formant(faster) - _formant(vowel) > 80  # where a speed change moves it with the pitch
    for unvoiced in (vowel[:300], np.zeros(16000, dtype=np.float32)):
        assert np.array_equal(augment.transpose_voice(unvoiced, 16000, 3.0), unvoiced)


@pytest.mark.slow
def test_short_scaling_hears_the_unseen_words_whole_and_cut_short_both_ways_with_the_shipped_model(tmp_path):
    """converter short-scaling: each long enough unseen-language word whole, and cut short, scaled by
    itself (the device) or by the whole word (as training cut); a word too short is left out, and a
    folder without the unseen language is refused in one line."""
    opus = {"format": "OGG", "subtype": "OPUS"}
    root = _dev_corpora(tmp_path / "datasets")  # the protocol's corpora; their BAVED stand-in is replaced
    shutil.rmtree(root / "baved")
    (root / "baved").mkdir()
    rows = ["path,label,speaker,arousal"]
    t = np.arange(32000) / 16000
    for i, level in enumerate(("low", "mid", "high", "mid")):
        voice = np.where((t > 0.4) & (t < 1.6), 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t), 0.0)
        x = (voice + 0.003 * np.random.default_rng(i).standard_normal(t.size)).astype(np.float32)
        soundfile.write(str(root / "baved" / f"w{i}.opus"), x if i < 3 else x[:16000], 16000, **opus)
        rows.append(f"w{i}.opus,,baved-{i % 2},{level}")
    (root / "baved" / "manifest.csv").write_text("\n".join(rows) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out = tmp_path / "short-scaling.json"
    proc = subprocess.run([PY, "-m", "converter", "short-scaling", "--datasets", str(root), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["words"] == 3 and result["speakers"] == 2  # the 1 s word is too short to cut
    assert list(result["scores"]) == ["whole", "1 s device", "1 s as training cut", "0.5 s device",
                                      "0.5 s as training cut"]
    assert all(m["clips"] == 3 for m in result["scores"].values())
    text = out.with_suffix(".md").read_text()
    assert "| 0.5 s as training cut |" in text
    gap = result["feature_gap"]["0.5 s"]  # the shipped model hears log-mel and PCEN
    assert gap["normalized over the cut"]["all frames"]["log-mel"] < 1e-3  # normalizing again gives the device's
    assert gap["as cut"]["all frames"]["log-mel"] > 0.05  # the whole word's scale is not the cut's
    assert gap["normalized over the cut"]["first 10 frames"]["PCEN"] > 0.05  # the smoother's start still differs
    assert "| 0.5 s | normalized over the cut | " in text and "PCEN, first 10 frames" in text
    shutil.rmtree(root / "baved")
    none = subprocess.run([PY, "-m", "converter", "short-scaling", "--datasets", str(root), "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert none.returncode != 0 and "no unseen-language corpus" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is an apt package of the project; make test installs it")
def test_speaker_pitch_fits_the_answers_and_moves_each_unseen_speaker_to_the_training_speakers_normal_pitch(tmp_path):
    """converter speaker-pitch on the shipped model: targets from the training speakers whose corpus
    says their gender (RAVDESS's stand-in actors, neutral at 140 Hz), each unseen-language speaker's
    normal pitch from their mid words, the oracle and five control shifts, every way of hearing scored,
    word pitches kept in the cache; a speaker without a gender is not moved."""
    from converter.speaker_pitch import semitones

    opus = {"format": "OGG", "subtype": "OPUS"}
    root = _dev_corpora(tmp_path / "datasets")
    shutil.rmtree(root / "baved")
    (root / "baved").mkdir()
    rows = ["path,label,speaker,arousal,gender"]
    t = np.arange(24000) / 16000
    words = [("baved-0", "m", "low", 110), ("baved-0", "m", "mid", 130), ("baved-0", "m", "high", 170),
             ("baved-1", "f", "mid", 220), ("baved-1", "f", "high", 280), ("baved-2", "", "mid", 200)]
    for i, (speaker, gender, level, hz) in enumerate(words):
        x = sum(0.15 / k * np.sin(2 * np.pi * k * hz * t) for k in (1, 2, 3))
        x = x + 0.003 * np.random.default_rng(i).standard_normal(t.size)
        soundfile.write(str(root / "baved" / f"w{i}.opus"), x.astype(np.float32), 16000, **opus)
        rows.append(f"w{i}.opus,,{speaker},{level},{gender}")
    (root / "baved" / "manifest.csv").write_text("\n".join(rows) + "\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    out, cache = tmp_path / "speaker-pitch.json", tmp_path / "cache"
    command = [PY, "-m", "converter", "speaker-pitch", "--datasets", str(root), "--out", str(out),
               "--cache", str(cache)]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["words"] == 6 and result["speakers"] == 3 and result["unvoiced_words"] == 0
    neutral = semitones(140.0)  # every stand-in actor's neutral clip
    assert result["targets"].keys() == {"f", "m"} and result["targets"]["m"]["speakers"] == 2
    assert all(abs(v["semitones"] - neutral) < 0.3 for v in result["targets"].values())
    oracle, control = result["shifts"]["oracle"], result["shifts"]["control 1"]
    assert abs(oracle["baved-0"] - (neutral - semitones(130.0))) < 0.3  # moved up 1.3 semitones
    assert abs(oracle["baved-1"] - (neutral - semitones(220.0))) < 0.3  # moved down 7.8
    assert oracle["baved-2"] == 0.0 == control["baved-2"] and result["moved_speakers"] == 2
    assert all(abs(control[s]) == abs(oracle[s]) for s in oracle)
    assert list(result["scores"]) == ["as recorded", "oracle"] + [f"control {d}" for d in range(1, 6)]
    assert all(m["clips"] == 6 for m in result["scores"].values())
    assert result["reading"]["words"] == 5  # baved-2 has no gender: left out of the fit
    text = out.with_suffix(".md").read_text()
    assert "| oracle | every speaker (6 words) |" in text and "2 speakers moved" in text
    assert "| control, mean of 5 (UA lowest-highest) | the speakers moved (5 words) |" in text
    assert result["moved_scores"]["oracle"]["clips"] == 5
    kept = json.loads((cache / "pitch.json").read_text())
    assert len(next(iter(kept.values()))) == 6 + 3  # the words and the stand-in actors' neutral clips
    shutil.rmtree(root / "baved")
    none = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert none.returncode != 0 and "no unseen-language corpus" in none.stderr
    assert len(none.stderr.strip().splitlines()) == 1


def test_window_restart_differs_only_in_pcen_and_only_after_the_stream_has_run():
    """The continuous-mode diagnosis: a window classified alone (the daemon) and the same
    frames cut from the whole stream share the log-mel block always, the PCEN block in the
    stream's first window, and not after a quiet stretch followed by loud speech-like sound."""
    from converter.window_restart import Stream, window_features
    from edge_ser.features import preset

    config = preset("edge-db-pcen")
    rng = np.random.default_rng(3)
    t = np.arange(4 * 16000) / 16000
    quiet = (0.005 * rng.standard_normal(t.size)).astype(np.float32)
    loud = (0.3 * np.sin(2 * np.pi * (150 + 60 * t) * t) + quiet).astype(np.float32)
    stream = Stream("s", np.concatenate([quiet, loud]), np.array([t.size, 2 * t.size]), np.array([0, 4]))
    restart, carried, labels = window_features(stream, config)
    db, pcen = config.block_columns()
    assert len(restart) == len(carried) == 6 and labels.tolist() == [0, 0, 0, 4, 4, 4]  # centres 1.5 .. 6.5 s
    assert all(r.shape == (298, 128) for r in restart)
    np.testing.assert_array_equal(restart[0], carried[0])
    for r, c in zip(restart, carried):
        np.testing.assert_allclose(r[:, db], c[:, db], atol=1e-4)
    # window 4 starts on the loud sound: alone, its smoother starts there; in the stream it
    # has settled on the quiet stretch, so the first frames come out far louder
    assert np.abs(restart[4][:, pcen] - carried[4][:, pcen]).max() > 0.5


# -- smoke training through Opus manifests ----------------------------------------------------------


def _espeak_corpus(root: Path, name: str, labels, speakers, voice: str) -> Path:
    """espeak-ng sentences at different pitch/speed per label, encoded to Ogg Opus, with a manifest."""
    rows = ["path,label,speaker"]
    for si, speaker in enumerate(speakers):
        for li, label in enumerate(labels):
            wav = root / "tmp" / f"{name}-{speaker}-{label}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["espeak-ng", "-v", voice, "-p", str(20 + 10 * li), "-s", str(120 + 15 * li + 5 * si),
                            "-w", str(wav), "one two three"], check=True, capture_output=True)
            x, rate = soundfile.read(str(wav), dtype="float32")
            x = resample(x, rate, 16000)  # espeak-ng speaks at 22050 Hz; Opus takes 16000
            rel = f"{speaker}/{label}.opus"
            (root / name / speaker).mkdir(parents=True, exist_ok=True)
            soundfile.write(str(root / name / rel), x, 16000, format="OGG", subtype="OPUS")
            rows.append(f"{rel},{label},{name}-{speaker}")
    (root / name / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / name


def _room_bank(root: Path) -> Path:
    """A project-made stand-in for ../shared/datasets/{rirs,noise}: synthetic rooms and noise."""
    rng = np.random.default_rng(0)
    for kind, names in (("rirs", [f"h{i:03d}_Room" for i in range(1, 9)]),
                        ("noise", [f"{100 + i}-0-0-0" for i in range(8)])):
        (root / kind).mkdir(parents=True, exist_ok=True)
        rows = ["path,source"]
        for n in names:
            if kind == "rirs":
                x = rng.standard_normal(4000) * np.exp(-np.arange(4000) / 600.0)
                x[0] = 3.0
            else:
                x = rng.standard_normal(16000) * 0.1
            soundfile.write(str(root / kind / f"{n}.flac"), x.astype(np.float32) / 4, 16000)
            rows.append(f"{n}.flac,test")
        (root / kind / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def _on_device(model: Path, wav: Path, report: str) -> dict:
    """Classify ``wav`` with ``model`` through the device path (tflite-runtime) in a fresh interpreter;
    ``report`` (code that sees ``clf``, ``p``, the result, and ``m``, the metadata) prints one JSON line."""
    script = ("import json\nfrom edge_ser.classify import Classifier\n"
              f"clf = Classifier({str(model)!r}, backend='tflite-runtime')\n"
              f"p = clf.classify_file({str(wav)!r})\nm = clf.model.metadata\n" + report)
    proc = subprocess.run([PY, "-c", script], env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed; make test installs it")
def test_rooms_recipe_trains_on_opus_manifests_and_exports_an_int8_logits_model(tmp_path):
    datasets = _room_bank(tmp_path / "datasets")
    en = _espeak_corpus(tmp_path, "en", ["neutral", "happy", "sad", "angry"], ["a", "b"], "en-us")
    pl = _espeak_corpus(tmp_path, "pl", ["neutral", "sad", "surprised"], ["c", "d"], "pl")
    out = tmp_path / "tiny.tflite"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    recipe_args = ["--recipe", "rooms", "--data", str(en), "--data", str(pl), "--steps", "3", "--channels", "4,8,8",
                   "--aug-variants", "1", "--cache", str(tmp_path / "cache"), "--cv-results", "",
                   "--protocol", str(tmp_path / "none"), "--temperature", "1.5"]
    keras_file = tmp_path / "tiny.keras"
    proc = subprocess.run(
        [PY, "-m", "converter", "train", *recipe_args, "--out", str(out), "--card", str(tmp_path / "CARD.md"),
         "--keras-out", str(keras_file)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # the saved float model exports again without training, under the training run's command
    again = tmp_path / "again.tflite"
    redo = subprocess.run(
        [PY, "-m", "converter", "train", *recipe_args, "--from-keras", str(keras_file), "--out", str(again),
         "--card", str(tmp_path / "CARD-again.md")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert redo.returncode == 0, redo.stdout[-2000:] + redo.stderr[-3000:]
    assert "no training" in redo.stdout and "epoch" not in redo.stdout.replace("epochs in", "")
    assert f"--keras-out {keras_file}" in (tmp_path / "CARD-again.md").read_text()  # the command that trained it
    refused = subprocess.run(
        [PY, "-m", "converter", "train", *recipe_args, "--steps", "4", "--from-keras", str(keras_file),
         "--out", str(tmp_path / "no.tflite"), "--card", ""], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600)
    assert refused.returncode != 0 and "another recipe" in refused.stderr and not (tmp_path / "no.tflite").exists()
    assert "corpora en (4 classes), pl (3 classes)" in proc.stdout
    assert "integer only: True" in proc.stdout
    card = (tmp_path / "CARD.md").read_text()
    assert "T = 1.50" in card and "non-commercial" in card and "Limits and intended use" in card
    # stamping refreshes the metadata and the card without touching the graph
    before = out.read_bytes()
    (tmp_path / "protocol").mkdir()

    def stamp_model() -> subprocess.CompletedProcess:
        proc = subprocess.run([PY, "-m", "converter", "stamp", str(out), "--protocol", str(tmp_path / "protocol"),
                               "--card", str(tmp_path / "CARD2.md")], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc

    stamp_model()
    assert out.read_bytes() != before and (tmp_path / "CARD2.md").read_text().startswith("# Model card")
    # stamped again with the same figures: the card is rewritten, the model file (and so its id) is not
    stamped = out.read_bytes()
    (tmp_path / "CARD2.md").unlink()
    restamp = stamp_model()
    assert "left as it is" in restamp.stdout + restamp.stderr
    assert out.read_bytes() == stamped and (tmp_path / "CARD2.md").read_text().startswith("# Model card")
    info = _on_device(out, tmp_path / "tmp" / "en-a-happy.wav", (
        f"q = Classifier({str(again)!r}, backend='tflite-runtime').classify_file({str(tmp_path / 'tmp' / 'en-a-happy.wav')!r})\n"
        "print(json.dumps({'output': m.output, 'sum': sum(p.probabilities.values()), 'labels': list(m.labels),"
        " 'temperature': m.extra.get('temperature'), 'corpora': m.extra.get('corpora'),"
        " 'stamped': 'stamped' in m.extra, 'same': p.probabilities == q.probabilities}))\n"))
    assert info["output"] == "logits" and abs(info["sum"] - 1.0) < 1e-4
    assert info["labels"] == list(EMOTIONS) and info["temperature"] == 1.5 and info["corpora"] == ["en", "pl"]
    assert info["stamped"] and info["same"]  # the re-export is the same model


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed; make test installs it")
def test_a_log_mel_and_pcen_ensemble_trains_resumes_and_runs_on_the_device(tmp_path):
    """train --recipe rooms-half-pcen: members saved beside --keras-out; an interrupted run resumes
    (a saved member is loaded, the missing one trains); the device computes edge-db-pcen for it."""
    datasets = _room_bank(tmp_path / "datasets")
    en = _espeak_corpus(tmp_path, "en", ["neutral", "happy", "sad", "angry"], ["a", "b"], "en-us")
    pl = _espeak_corpus(tmp_path, "pl", ["neutral", "sad", "surprised"], ["c", "d"], "pl")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    keras_file = tmp_path / "ens.keras"
    args = ["--recipe", "rooms-half-pcen", "--data", str(en), "--data", str(pl), "--steps", "3",
            "--channels", "4,8,8", "--aug-variants", "1", "--cache", str(tmp_path / "cache"), "--cv-results", "",
            "--protocol", str(tmp_path / "none"), "--temperature", "1.5", "--keras-out", str(keras_file)]

    def train(*more: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([PY, "-m", "converter", "train", *args, *more], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc

    first = train("--out", str(tmp_path / "first.tflite"), "--card", "")
    saved = {p.name for p in tmp_path.glob("ens.*.keras")}
    assert saved == {"ens.rooms-ravdess-half.keras", "ens.rooms-pcen.keras"}, first.stdout[-2000:]
    assert not list(tmp_path.glob("*.checkpoint.npz"))  # each member's checkpoint went once it was saved
    (tmp_path / "ens.rooms-pcen.keras").unlink()  # as if the run had stopped after the first member
    out = tmp_path / "ens.tflite"
    again = train("--from-keras", str(keras_file), "--out", str(out), "--card", str(tmp_path / "CARD.md"))
    assert "member rooms-ravdess-half loaded from" in again.stdout and "member rooms-pcen trains" in again.stdout
    assert "integer only: True" in again.stdout
    card = (tmp_path / "CARD.md").read_text()
    assert "an ensemble of 2 compact CNNs" in card and "log-mel + PCEN mel" in card and "T = 1.50" in card
    refused = subprocess.run([PY, "-m", "converter", "train", *args, "--features", "edge", "--out",
                              str(tmp_path / "no.tflite"), "--card", ""], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
    assert refused.returncode != 0 and "--features does not apply" in refused.stderr
    info = _on_device(out, tmp_path / "tmp" / "en-a-happy.wav", (
        "from edge_ser.features import preset\n"
        "print(json.dumps({'features': m.feature_config == preset('edge-db-pcen'), 'output': m.output,"
        " 'sum': sum(p.probabilities.values()), 'recipe': m.extra['recipe_name'],"
        " 'members': list(m.extra['recipe']['ensemble'])}))\n"))
    assert info["features"] and info["output"] == "logits" and abs(info["sum"] - 1.0) < 1e-4
    assert info["recipe"] == "rooms-half-pcen" and info["members"] == ["rooms-ravdess-half", "rooms-pcen"]


def _dev_corpora(root: Path) -> Path:
    """Tiny RAVDESS, nEMO and ASED stand-ins (tones) with development and training speakers, and a
    room bank with places and recordings on both sides of the held-out split."""
    from converter.rooms import is_held_out

    def tone(path: Path, freq: float, seed: int, fmt: dict) -> str:
        rng = np.random.default_rng(seed)
        t = np.arange(12000) / 16000
        x = 0.2 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(path), x.astype(np.float32), 16000, **fmt)
        return path.name

    seed = 0
    for actor in ("01", "11", "02"):  # 01 and 11 are development actors
        for e in (1, 4, 5):
            seed += 1
            tone(root / "ravdess" / f"Actor_{actor}" / f"03-01-{e:02d}-01-01-01-{actor}.wav", 100 + 40 * e, seed, {})
    opus = {"format": "OGG", "subtype": "OPUS"}
    for corpus, speakers in (("nemo", ("nemo-EB0", "nemo-XX1")), ("ased", ("ased-01", "ased-20"))):
        rows = ["path,label,speaker"]
        for speaker in speakers:
            for i, label in enumerate(("neutral", "sad", "angry")):
                seed += 1
                rows.append(f"{tone(root / corpus / f'{speaker}-{label}.opus', 150 + 50 * i, seed, opus)},"
                            f"{label},{speaker}")
        (root / corpus / "manifest.csv").write_text("\n".join(rows) + "\n")
    rows = ["path,label,speaker,arousal"]  # an arousal-only corpus no recipe here trains on
    for i, level in enumerate(("low", "mid", "high")):
        seed += 1
        rows.append(f"{tone(root / 'baved' / f'w{i}.opus', 120 + 60 * i, seed, opus)},,baved-{i % 2},{level}")
    (root / "baved" / "manifest.csv").write_text("\n".join(rows) + "\n")
    places = [f"h{i:03d}" for i in range(1, 200)]
    recordings = [str(100 + i) for i in range(200)]
    rng = np.random.default_rng(0)
    for kind, names in (("rirs", [p for p in places if is_held_out(p)][:2] + [p for p in places if not is_held_out(p)][:1]),
                        ("noise", [r for r in recordings if is_held_out(f"us8k-{r}")][:2]
                         + [r for r in recordings if not is_held_out(f"us8k-{r}")][:1])):
        rows = ["path,source"]
        for n in names:
            if kind == "rirs":
                x = rng.standard_normal(3000) * np.exp(-np.arange(3000) / 500.0)
                x[0] = 3.0
                name = f"{n}_Room.flac"
            else:
                x = rng.standard_normal(16000) * 0.1
                name = f"{n}-0-0-0.flac"
            (root / kind).mkdir(parents=True, exist_ok=True)
            soundfile.write(str(root / kind / name), x.astype(np.float32) / 4, 16000)
            rows.append(f"{name},test")
        (root / kind / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.slow
def test_rescore_adds_the_far_field_over_every_corpus_to_a_dev_row_from_its_saved_model(tmp_path):
    """Three draws per development clip of every corpus, each its own cache entry; the rest of the row is kept."""
    from converter.protocol import DEV_FARFIELD_DRAWS, LOCO_CORPORA
    from converter.train import Recipe

    datasets = _dev_corpora(tmp_path / "datasets")
    items = read_corpora([datasets / c for c in LOCO_CORPORA])
    plan = plan_run("dev", items, LOCO_CORPORA)
    assert {i.speaker for i in plan.test} == {"01", "11", "nemo-EB0", "ased-01"}
    model = tmp_path / "dev.keras"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    build = subprocess.run([PY, "-c", (
        "from converter.model import build_model\n"
        f"build_model(300, 64, 8, (4, 8, 8), output='logits').save({str(model)!r})\n")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    row = {"run": "dev", "recipe_name": "tiny", "recipe": Recipe(masked=True).to_dict(), "corpora": list(LOCO_CORPORA),
           "test_speakers": sorted({i.speaker for i in plan.test}),
           "float": {"clean": {"ua": 0.5}, "farfield": {"ua": 0.4}}}
    path = tmp_path / "results" / "tiny" / "dev.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(row))
    from converter.run_outputs import ScoredSet, load_outputs, outputs_path, save_outputs

    clean = ScoredSet.of(plan.test, [np.zeros((1, 8), np.float32)] * len(plan.test))  # what the run kept
    save_outputs(outputs_path(path), {"float": {"clean": clean}})
    cache = tmp_path / "cache"
    proc = subprocess.run([PY, "-m", "converter", "rescore", str(path), str(model), "--datasets", str(datasets),
                           "--cache", str(cache)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "far-field UA every corpus" in proc.stdout
    after = json.loads(path.read_text())
    far = after["float"]["farfield_all"]
    assert far["draws"] == DEV_FARFIELD_DRAWS and far["clips"] == DEV_FARFIELD_DRAWS * len(plan.test)
    assert set(far["by_corpus"]) == set(LOCO_CORPORA)
    assert after["float"]["clean"] == row["float"]["clean"] and after["farfield_all_from"] == [str(model)]
    arousal = after["float"]["unseen_arousal"]  # the BAVED stand-in: a language the model never heard
    assert arousal["clips"] == 3 and arousal["corpora"] == ["baved"] and len(arousal["answered"]["confusion"]) == 3
    assert after["unseen_arousal_from"] == [str(model)]
    stored = load_outputs(outputs_path(path))["float"]  # the kept outputs gain the new sets
    assert set(stored) == {"clean", "farfield_all", "unseen_arousal"} and stored["clean"].digest == clean.digest
    stored["unseen_arousal"].check(plan_run("dev", read_corpora([datasets / c for c in (*LOCO_CORPORA, "baved")]),
                                            LOCO_CORPORA).unseen_arousal)
    # every far-field draw its own entry, and the unseen words clean
    assert len(list(cache.rglob("*.npy"))) == DEV_FARFIELD_DRAWS * len(plan.test) + 3
    wrong = dict(row, test_speakers=["01"])
    path.write_text(json.dumps(wrong))
    refused = subprocess.run([PY, "-m", "converter", "rescore", str(path), str(model), "--datasets", str(datasets),
                              "--cache", str(cache)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "dev speakers differ" in refused.stderr



@pytest.mark.slow
def test_score_runs_a_model_file_on_the_features_and_output_its_metadata_names(tmp_path):
    """converter score on the shipped ensemble (log-mel + PCEN, logits): it hears edge-db-pcen, as
    the device does; a file that is no model is refused in one line naming it."""
    datasets = _dev_corpora(tmp_path / "datasets")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    shipped = ROOT / "models" / "edge-ser-int8.tflite"
    common = ["--label", "shipped", "--results", str(tmp_path / "results"), "--datasets", str(datasets),
              "--cache", str(tmp_path / "cache")]
    proc = subprocess.run([PY, "-m", "converter", "score", f"loco-nemo={shipped}", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    row = json.loads((tmp_path / "results" / "shipped" / "loco-nemo.json").read_text())
    clean = row["int8"]["clean"]
    assert clean["clips"] == 6 and row["test_speakers"] == ["nemo-EB0", "nemo-XX1"]
    assert 0.0 <= clean["ua"] <= 1.0 and row["note"] == str(shipped)
    from converter.run_outputs import load_outputs
    kept = load_outputs(tmp_path / "results" / "shipped" / row["outputs"])["int8"]["clean"]
    assert len(kept.outputs) == 6 and all(o.shape[1] == len(EMOTIONS) for o in kept.outputs)
    # both views, log-mel and PCEN, were computed (a cache entry per block and clip), as the device does
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2 * clean["clips"]
    assert "conditions" not in row["int8"]
    # the other listening conditions: each clip heard through each, cached beside the clean copies
    proc = subprocess.run([PY, "-m", "converter", "score", f"loco-nemo={shipped}", "--conditions", "telephone,reverb",
                           *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    scored = json.loads((tmp_path / "results" / "shipped" / "loco-nemo.json").read_text())["int8"]
    assert sorted(scored["conditions"]) == ["reverb", "telephone"]
    assert all(c["clips"] == 6 and 0.0 <= c["ua"] <= 1.0 for c in scored["conditions"].values())
    assert scored["clean"] == clean
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3 * 2 * clean["clips"]
    # the unseen language alone (no test speakers), whole and cut short; never under a background
    # made of its own words
    proc = subprocess.run([PY, "-m", "converter", "score", f"unseen={shipped}", "--conditions", "short-0.5s,babble",
                           *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    unseen = json.loads((tmp_path / "results" / "shipped" / "unseen.json").read_text())["int8"]
    assert "conditions" not in unseen and "clean" not in unseen
    assert list(unseen["unseen_arousal_conditions"]) == ["short-0.5s"]
    assert unseen["unseen_arousal"]["clips"] == unseen["unseen_arousal_conditions"]["short-0.5s"]["clips"] == 3
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 3 * 2 * clean["clips"] + 2 * 2 * 3
    # the backgrounds, their voices from the datasets folder's unseen-language corpus
    proc = subprocess.run([PY, "-m", "converter", "score", f"loco-nemo={shipped}", "--conditions", "noise,babble",
                           *common], cwd=ROOT, env=dict(env, EDGE_SER_DATASETS=str(datasets)), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    behind = json.loads((tmp_path / "results" / "shipped" / "loco-nemo.json").read_text())["int8"]["conditions"]
    assert sorted(behind) == ["babble", "noise"] and all(c["clips"] == 6 for c in behind.values())
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 5 * 2 * clean["clips"] + 2 * 2 * 3
    unknown = subprocess.run([PY, "-m", "converter", "score", f"loco-nemo={shipped}", "--conditions", "underwater",
                              *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert unknown.returncode != 0 and "unknown condition 'underwater'" in unknown.stderr
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"RIFF" + bytes(100))
    bad = subprocess.run([PY, "-m", "converter", "score", f"loco-nemo={junk}", *common],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and str(junk) in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

@pytest.mark.slow
def test_a_protocol_run_keeps_its_training_checkpoint_only_until_its_results_exist(tmp_path):
    """converter protocol: the run trains with a checkpoint beside its model (a damaged one is not
    resumed), writes its results and model, removes the checkpoint, and is not run twice."""
    datasets = _dev_corpora(tmp_path / "datasets")
    # the room bank too comes from the stand-ins, never from ../shared (a clean clone has none)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    models, results = tmp_path / "models", tmp_path / "results"
    stale = models / "rooms-pcen-long" / "dev.checkpoint.npz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"not a checkpoint")
    args = [PY, "-m", "converter", "protocol", "--recipe", "rooms-pcen-long", "--runs", "dev", "--steps", "2",
            "--models", str(models), "--results", str(results), "--datasets", str(datasets),
            "--cache", str(tmp_path / "cache")]
    first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert f"checkpoint {stale} unreadable" in first.stdout
    row = json.loads((results / "rooms-pcen-long" / "dev.json").read_text())
    assert row["recipe"]["features"] == "edge-pcen" and "farfield_all" in row["float"]
    assert (models / "rooms-pcen-long" / "dev.keras").exists() and not stale.exists()
    again = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "rooms-pcen-long/dev: done already" in again.stdout
    # the kept float model scored again as its row says (converter score): the same clean score, and
    # a listening condition beside it
    kept = models / "rooms-pcen-long" / "dev.keras"
    common = ["--datasets", str(datasets), "--cache", str(tmp_path / "cache"), "--rows", str(results),
              "--results", str(tmp_path / "conditions")]
    score = subprocess.run([PY, "-m", "converter", "score", f"dev={kept}", "--label", "again", "--recipe-from",
                            "rooms-pcen-long", "--conditions", "telephone", *common],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert score.returncode == 0, score.stdout[-2000:] + score.stderr[-3000:]
    scored = json.loads((tmp_path / "conditions" / "again" / "dev.json").read_text())
    assert "int8" not in scored and scored["float"]["clean"] == row["float"]["clean"]
    assert scored["float"]["conditions"]["telephone"]["clips"] == row["float"]["clean"]["clips"]
    # the same model as one member of an ensemble's row (LABEL:MEMBER)
    pair_row = results / "pair" / "dev.json"
    pair_row.parent.mkdir()
    pair_row.write_text(json.dumps({"recipe": {"ensemble": ["rooms-long", "rooms-pcen-long"], "features": "x",
                                               "members": {"rooms-long": dict(row["recipe"], features="edge"),
                                                           "rooms-pcen-long": row["recipe"]}}}))
    member = subprocess.run([PY, "-m", "converter", "score", f"dev={kept}", "--label", "member", "--recipe-from",
                             "pair:rooms-pcen-long", *common], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert member.returncode == 0, member.stdout[-2000:] + member.stderr[-3000:]
    assert json.loads((tmp_path / "conditions" / "member" / "dev.json").read_text())["float"]["clean"] \
        == row["float"]["clean"]
    unknown = subprocess.run([PY, "-m", "converter", "score", f"dev={kept}", "--label", "member", "--recipe-from",
                              "rooms-pcen-long:rooms-long", *common], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=600)
    assert unknown.returncode != 0 and "rooms-pcen-long/dev has no member 'rooms-long'" in unknown.stderr
    missing = subprocess.run([PY, "-m", "converter", "score", f"dev={kept}", "--label", "member", "--recipe-from",
                              "never-run", *common], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert missing.returncode != 0 and "never-run/dev.json: no protocol row with a recipe" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    bare = subprocess.run([PY, "-m", "converter", "score", f"dev={kept}", "--label", "bare", *common],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert bare.returncode == 2 and str(kept) in bare.stderr and "--recipe-from" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1


def test_stored_outputs_read_back_as_written_and_belong_to_their_clips(tmp_path):
    """One .npz per run: every model's window outputs per set, clip by clip, with the clips' digest;
    combining members checks clips, windows and weights."""
    from converter.run_outputs import ScoredSet, combine, items_digest, load_outputs, outputs_path, save_outputs

    items = _fake_items()[:5]
    rng = np.random.default_rng(0)
    windows = [rng.standard_normal((n, 8)).astype(np.float32) for n in (1, 3, 2, 1, 4)]
    other = [w + 1.0 for w in windows]
    path = outputs_path(tmp_path / "label" / "cv1.json")
    assert path.name == "cv1.outputs.npz"
    save_outputs(path, {"member:a": {"clean": ScoredSet.of(items, windows)},
                        "member:b": {"clean": ScoredSet.of(items, other)}})
    back = load_outputs(path)
    assert set(back) == {"member:a", "member:b"} and set(back["member:a"]) == {"clean"}
    a, b = back["member:a"]["clean"], back["member:b"]["clean"]
    assert all(np.array_equal(x, y) for x, y in zip(a.outputs, windows)) and len(a.outputs) == 5
    a.check(items)
    with pytest.raises(ValueError, match="other clips"):
        a.check(items[::-1])
    assert items_digest([Item("/elsewhere/" + Path(i.path).name, i.label, i.speaker, i.corpus) for i in items]) \
        == a.digest  # a corpus moved to another folder keeps its digest
    mixed = combine([a, b], [0.25, 0.75])
    assert all(np.allclose(m, w + 0.75) for m, w in zip(mixed.outputs, windows))
    assert all(np.allclose(m, w + 0.5) for m, w in zip(combine([a, b]).outputs, windows))
    with pytest.raises(ValueError, match="different clips"):
        combine([a, ScoredSet.of(items[::-1], windows[::-1])])
    with pytest.raises(ValueError, match="different windows"):
        combine([a, ScoredSet(a.digest, [w[:1] for w in windows])])
    with pytest.raises(ValueError, match="summing to one"):
        combine([a, b], [0.5, 0.6])
    with pytest.raises(ValueError, match="5 clips but 4 outputs"):
        ScoredSet.of(items, windows[:4])


@pytest.mark.slow
def test_a_run_keeps_its_window_outputs_and_its_members_combine_to_the_ensemble(tmp_path):
    """converter protocol on a log-mel + PCEN ensemble: beside its results file, the window
    outputs of the ensemble and of each member (on its own features) rescore to the row's
    figures exactly, and the members' stored logits averaged score as the ensemble does, so a
    later candidate can be paired with these members without their model files."""
    from converter.protocol import LOCO_CORPORA, clip_probabilities, score
    from converter.run_outputs import combine, load_outputs, member_key
    from converter.unseen_arousal import score_arousal

    datasets = _dev_corpora(tmp_path / "datasets")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2", EDGE_SER_DATASETS=str(datasets))
    results = tmp_path / "results"
    proc = subprocess.run([PY, "-m", "converter", "protocol", "--recipe", "rooms-half-pcen", "--runs", "dev",
                           "--steps", "2", "--models", str(tmp_path / "models"), "--results", str(results),
                           "--datasets", str(datasets), "--cache", str(tmp_path / "cache")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    row = json.loads((results / "rooms-half-pcen" / "dev.json").read_text())
    assert row["outputs"] == "dev.outputs.npz"
    stored = load_outputs(results / "rooms-half-pcen" / row["outputs"])
    members = [member_key(m) for m in row["recipe"]["ensemble"]]
    assert set(stored) == {"float", *members}
    plan = plan_run("dev", read_corpora([datasets / c for c in (*LOCO_CORPORA, "baved")]), LOCO_CORPORA)
    far_items = [i for i in plan.test if i.corpus == "ravdess"]
    sets = {"clean": plan.test, "farfield": far_items, "farfield_all": list(plan.test) * 3,
            "unseen_arousal": plan.unseen_arousal}
    assert len(plan.unseen_arousal) == 3

    def confusions(scores: dict) -> list:
        readings = [scores[k] for k in ("answered", "summed") if k in scores] or [scores]
        return [r["confusion"] for r in readings]

    def rescored(name: str, outputs: list, items: list) -> dict:
        if name == "unseen_arousal":
            return score_arousal(clip_probabilities(outputs, logits=True), items)
        classes = plan.classes if name != "farfield" else {"ravdess": plan.classes["ravdess"]}
        return score(outputs, items, classes, logits=True)

    for key, scores in [("float", row["float"])] + [(member_key(m), row["members"][m]["float"])
                                                      for m in row["recipe"]["ensemble"]]:
        assert set(stored[key]) == set(sets)
        for name, items in sets.items():
            stored[key][name].check(items, key)
            again = rescored(name, stored[key][name].outputs, items)
            assert confusions(again) == confusions(scores[name]) and again["ua"] == scores[name]["ua"], (key, name)
    for name, items in sets.items():
        mixed = combine([stored[m][name] for m in members])
        ensemble = stored["float"][name]
        assert all(np.allclose(x, y, atol=1e-4) for x, y in zip(mixed.outputs, ensemble.outputs)), name
        assert confusions(rescored(name, mixed.outputs, items)) == confusions(row["float"][name])

    def pair(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-m", "converter", "pair", *args, "--runs", "dev", "--results", str(results),
                               "--datasets", str(datasets)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)

    # the members averaged in one saved Keras model score as the row did (converter score on an ensemble's row)
    whole = tmp_path / "whole.keras"
    build = ("import keras, sys\n"
             "from converter.protocol import _make_recipe, ensemble_model\n"
             "names = ['rooms-ravdess-half', 'rooms-pcen']\n"
             "models = [keras.models.load_model(f'{sys.argv[1]}/{n}/dev.keras', compile=False) for n in names]\n"
             "ensemble_model(models, [_make_recipe(n, 2) for n in names]).save(sys.argv[2])\n")
    built = subprocess.run([PY, "-c", build, str(tmp_path / "models"), str(whole)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    scored = subprocess.run([PY, "-m", "converter", "score", f"dev={whole}", "--label", "whole", "--recipe-from",
                             "rooms-half-pcen", "--rows", str(results), "--results", str(tmp_path / "conditions"),
                             "--datasets", str(datasets), "--cache", str(tmp_path / "cache")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stdout[-2000:] + scored.stderr[-3000:]
    again = json.loads((tmp_path / "conditions" / "whole" / "dev.json").read_text())["float"]
    assert again["clean"] == row["float"]["clean"] and again["unseen_arousal"]["ua"] == row["float"]["unseen_arousal"]["ua"]

    paired = pair(*(f"rooms-half-pcen:{m}" for m in row["recipe"]["ensemble"]), "--label", "paired")
    assert paired.returncode == 0, paired.stdout[-2000:] + paired.stderr[-3000:]
    prow = json.loads((results / "paired" / "dev.json").read_text())
    assert [o["member"] for o in prow["paired_from"]] == row["recipe"]["ensemble"]
    for name in sets:  # the stored members, paired again, score as the ensemble they came from
        assert confusions(prow["float"][name]) == confusions(row["float"][name]), name
    assert set(load_outputs(results / "paired" / prow["outputs"])) == {"float"}
    missing = pair("rooms-half-pcen:rooms-pcen", "elsewhere:rooms-long", "--label", "nothing")
    assert missing.returncode != 0 and "no stored outputs" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (results / "nothing").exists()


# -- report -----------------------------------------------------------------------------------------


def _scores(clean: float, far=None, by_corpus=None) -> dict:
    block = {"clean": {"ua": clean, "ece": 0.1}}
    if by_corpus:
        block["clean"]["by_corpus"] = {c: {"ua": v} for c, v in by_corpus.items()}
    if far is not None:
        block["farfield"] = {"ua": far, "ece": 0.1}
    return block


def test_report_tables_and_the_same_recipe_trained_again():
    from converter.report import CV_RUNS, cv_summary, markdown

    dev = {"ravdess": 0.633, "nemo": 0.387, "ased": 0.793}
    results = {
        "rooms-ravdess-half": {
            "dev": {"float": _scores(0.579, 0.539, dev)},
            "cv1": {"float": _scores(0.66, 0.55), "int8": _scores(0.660, 0.562)},
            "cv2": {"float": _scores(0.64, 0.48), "int8": _scores(0.638, 0.480)},
        },
        "rooms-ravdess-half-again": {
            "dev": {"again_of": "rooms-ravdess-half", "note": "trained twice",
                    "float": dict(_scores(0.577, 0.590, dict(dev, ravdess=0.637)), farfield_all={"ua": 0.512})},
        },
        "rooms-wide": {"cv1": {"float": _scores(0.641, 0.559), "int8": _scores(0.641, 0.559)}},
        "rooms-ravdess-half-seed2": {"cv1": {"seed_of": "rooms-ravdess-half", "int8": _scores(0.620, 0.500)},
                                     "cv3": {"seed_of": "rooms-ravdess-half", "int8": _scores(0.600, 0.500)}},
        "rooms-pair": {
            "cv1": {"int8": _scores(0.70, 0.60),
                    "members": {"rooms-ravdess-half": {"source": "trained", "float": _scores(0.68, 0.57)},
                                "rooms-wide": {"source": "runs/protocol-models/rooms-wide/cv1.keras",
                                               "float": _scores(0.641, 0.559)}}},
        },
    }
    assert cv_summary(results["rooms-ravdess-half"])["folds"] == 2
    text = markdown(results)
    assert "| rooms-ravdess-half | 66.0 % / 56.2 % | 63.8 % / 48.0 % | - | - | - | 64.9 % | 52.1 % | 12.8 points |" in text
    assert "| rooms-ravdess-half-again | 63.7 % | 38.7 % | 79.3 % | 57.7 % | 59.0 % | 51.2 % |" in text
    assert "| rooms-ravdess-half | 63.3 % | 38.7 % | 79.3 % | 57.9 % | 53.9 % | - |" in text  # model not kept
    assert "two seeds" in text
    section = text.split("## The same recipe trained again")[1].split("## Calibration")[0]
    assert "| rooms-ravdess-half | dev | 63.3 % / 53.9 % | 63.7 % / 59.0 % | +0.4 / +5.1 points |" in section
    # a member the ensemble trained itself is a second training; a member loaded from disk is not
    assert "| rooms-ravdess-half | cv1 (in rooms-pair) | 66.0 % / 55.0 % | 68.0 % / 57.0 % | +2.0 / +2.0 points |" in section
    assert "rooms-wide | cv1" not in section
    assert "- rooms-ravdess-half-again/dev: trained twice" in text
    # two pairs, clean +0.4 and +2.0, far-field +5.1 and +2.0: standard deviations 1.1 and 2.2 points
    assert "Over these 2 pairs the change has a standard deviation of 1.1 points clean and 2.2 far-field" in section
    assert "a five-fold mean of one training by about 0.4 clean and 0.7 far-field" in section
    seeds = text.split("## Another seed on the folds")[1].split("## Calibration")[0]
    # only the folds both trainings have (cv3 has no row of the recipe's own)
    assert "| rooms-ravdess-half | rooms-ravdess-half-seed2 | cv1 | 66.0 % / 56.2 % | 62.0 % / 50.0 % | " \
           "-4.0 / -6.2 points |" in seeds
    assert "cv3" not in seeds and "| mean of these 1 |" in seeds
    assert "both seeds on all five folds" not in seeds  # one fold in common only
    # a second seed on every fold: the two five-fold means and their mean
    for k, run in enumerate(CV_RUNS):
        own, other = _scores(0.60 + 0.02 * k, 0.50), _scores(0.58 + 0.02 * k, 0.52)
        results["rooms-ravdess-half"][run] = {"float": own, "int8": own}
        results["rooms-ravdess-half-seed2"][run] = {"seed_of": "rooms-ravdess-half", "float": other, "int8": other}
    seeds = markdown(results).split("## Another seed on the folds")[1].split("## Calibration")[0]
    assert "| mean of these 5 | 64.0 % / 50.0 % | 62.0 % / 52.0 % | -2.0 / +2.0 points |" in seeds
    assert ("rooms-ravdess-half with both seeds on all five folds (int8, clean / far-field): 63.0 % / 51.0 %, "
            "the mean of two trainings per fold; one seed alone gave 64.0 % / 50.0 %, the other 62.0 % / 52.0 %.") in seeds
    assert " against baseline" not in seeds  # the first recipe has no second seed yet
    # the first recipe with both seeds too: the two compared fold by fold on their two-seed means
    for k, run in enumerate(CV_RUNS):
        own, other = _scores(0.60 + 0.01 * k, 0.40), _scores(0.60 - 0.01 * k, 0.42)
        results.setdefault("baseline", {})[run] = {"float": own, "int8": own}
        results.setdefault("baseline-seed2", {})[run] = {"seed_of": "baseline", "float": other, "int8": other}
    seeds = markdown(results).split("## Another seed on the folds")[1].split("## Calibration")[0]
    # rooms-ravdess-half per fold (0.59 + 0.02 k), baseline 0.60: -1, +1, +3, +5, +7; spread 3.16 / sqrt 5
    assert ("rooms-ravdess-half against baseline, both with both seeds on the same five folds: clean +3.0 points "
            "(fold by fold -1.0, +1.0, +3.0, +5.0, +7.0; standard error of the mean 1.4), far-field +10.0 points.") in seeds


def test_report_lists_the_unseen_language_scores_of_dev_rows_and_their_members():
    from converter.report import markdown

    def arousal(ua, low, mid, high, first):
        return {"clips": 1908, "speakers": 59, "corpora": ["baved"], "ua": ua, "first_emotion": first,
                "answered": {"ua": ua, "recall": {"low": low, "mid": mid, "high": high}}, "summed": {"ua": 0.35}}

    first = {"low": {"neutral": 30, "sad": 10}, "mid": {"neutral": 9, "angry": 1}, "high": {"angry": 3, "happy": 1}}
    results = {
        "rooms-long-pcen-seed4": {"dev": {
            "float": dict(_scores(0.6, 0.5, {"ravdess": 0.7}), unseen_arousal=arousal(0.45, 0.1, 0.8, 0.45, first)),
            "members": {"rooms-pcen": {"float": {"unseen_arousal": arousal(0.4, 0.05, 0.7, 0.45, first)}},
                        "rooms-long": {"float": {}}}}},
        "rooms-long": {"dev": {"float": _scores(0.6, 0.5, {"ravdess": 0.7})}},
        "shipped": {"unseen": {"note": "models/edge-ser-int8.tflite",  # a model file scored on that alone
                               "int8": {"unseen_arousal": arousal(0.42, 0.02, 0.9, 0.34, first)}}},
    }
    section = markdown(results).split("### An unseen language: BAVED arousal")[1].split("\n## ")[0]
    assert "| shipped/unseen (int8; see the notes on rows) | 1908 (59) | 42.0 % | 2.0 % | 90.0 % | 34.0 % |" in section
    assert "low: sad; mid: neutral and calm" in section and "after the shipped model's row was read" in section
    assert ("| rooms-long-pcen-seed4 | 1908 (59) | 45.0 % | 10.0 % | 80.0 % | 45.0 % | 35.0 % "
            "| neutral 75 % / neutral 90 % / angry 75 % |") in section
    assert "| rooms-long-pcen-seed4: member rooms-pcen | 1908 (59) | 40.0 % | 5.0 % |" in section
    assert "member rooms-long" not in section and "| rooms-long |" not in section  # nothing scored, no row
    assert "### An unseen language" not in markdown({"rooms-long": results["rooms-long"]})


def _dev_row(ravdess: float, pooled: float, far_all: float, unseen=None, **extra) -> dict:
    """A dev results entry with the scores the short-utterance rules read (``extra``: row fields)."""
    scores = _scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7})
    scores["farfield_all"] = {"ua": far_all}
    if unseen:
        scores["unseen_arousal"] = unseen
    return {"dev": dict(extra, float=scores)}


def test_report_judges_a_short_utterance_member_by_the_usual_means_and_each_training_on_the_unseen_language():
    from converter.report import SELECTION_RULE_SHORT, SELECTION_RULE_SHORT_PCEN, markdown, short_input_candidates

    def judged(results: dict, label: str = "rooms-long-short") -> dict:
        (entry,) = [e for e in short_input_candidates(results) if e["label"] == label]
        return entry

    def arousal(ua: float, mid: float) -> dict:
        return {"clips": 1908, "speakers": 59, "corpora": ["baved"], "ua": ua, "first_emotion": {},
                "answered": {"ua": ua, "recall": {"low": 0.3, "mid": mid, "high": 0.9}}, "summed": {"ua": 0.35}}

    dev = _dev_row
    reference = {"rooms-long": dev(0.66, 0.58, 0.52), "rooms-long-seed2": dev(0.68, 0.58, 0.54, seed_of="rooms-long"),
                 "rooms-long-seed4": dev(0.61, 0.56, 0.51, arousal(0.441, 0.308), seed_of="rooms-long",
                                         outside_seed_means="the unseen language's reference")}
    one = dict(reference, **{"rooms-long-short-seed4": dev(0.66, 0.58, 0.53, arousal(0.50, 0.40),
                                                           seed_of="rooms-long-short")})
    entry = judged(one)
    assert entry["verdict"] == "-" and entry["trainings"] == ["rooms-long-short-seed4"]  # one training: no verdict
    assert entry["unseen"] == [("rooms-long-short-seed4", 5.9, 9.2)]
    good = dict(one, **{"rooms-long-short": dev(0.67, 0.575, 0.52, arousal(0.462, 0.31))})
    entry = judged(good)
    assert entry["member_change"] == {"ravdess": -0.5, "pooled": -0.3, "farfield": -0.5}
    assert entry["verdict"] == "its PCEN member follows"
    flat = dict(one, **{"rooms-long-short": dev(0.67, 0.58, 0.52, arousal(0.455, 0.31))})  # +1.4 points: too little
    assert judged(flat)["verdict"] == "stops here"
    costly = dict(good, **{"rooms-long-short": dev(0.64, 0.58, 0.52, arousal(0.50, 0.40))})  # RAVDESS -1.5 points
    assert judged(costly)["verdict"] == "stops here"
    unscored = dict(good, **{"rooms-long-short": dev(0.67, 0.58, 0.52)})  # no unseen-language score yet
    assert judged(unscored)["verdict"] == "-"
    section = markdown(good).split("### Short utterances")[1]
    assert SELECTION_RULE_SHORT in section
    assert ("| rooms-long-short (against rooms-long, rooms-long-seed4) | rooms-long-short, rooms-long-short-seed4 | "
            "-0.5 / -0.3 / -0.5 | rooms-long-short: +2.1 / +0.2; rooms-long-short-seed4: +5.9 / +9.2 | "
            "its PCEN member follows |") in section
    assert "### Short utterances" not in markdown(reference)
    assert SELECTION_RULE_SHORT_PCEN not in section  # its rule shows with its rows

    # the PCEN member's candidate: the same means, a margin of 1 point on the unseen language
    pcen = {"rooms-pcen": dev(0.61, 0.58, 0.51), "rooms-pcen-again": dev(0.63, 0.58, 0.50, seed_of="rooms-pcen"),
            "rooms-pcen-seed4": dev(0.60, 0.57, 0.52, arousal(0.487, 0.048), seed_of="rooms-pcen",
                                    outside_seed_means="the unseen language's reference"),
            "rooms-pcen-short": dev(0.62, 0.575, 0.505, arousal(0.499, 0.10)),
            "rooms-pcen-short-seed4": dev(0.61, 0.58, 0.50, arousal(0.498, 0.06), seed_of="rooms-pcen-short")}
    entry = judged(pcen, "rooms-pcen-short")
    assert entry["unseen"] == [("rooms-pcen-short", 1.2, 5.2), ("rooms-pcen-short-seed4", 1.1, 1.2)]
    assert entry["verdict"] == "rooms-long-pcen-short goes to the folds"
    assert judged(dict(pcen, **{"rooms-pcen-short-seed4": dev(0.61, 0.58, 0.50, arousal(0.495, 0.06),
                                                               seed_of="rooms-pcen-short")}),
                  "rooms-pcen-short")["verdict"] == "stops here"  # +0.8 points
    assert judged(dict(pcen, **{"rooms-pcen-short": dev(0.62, 0.575, 0.505, arousal(0.499, 0.04))}),
                  "rooms-pcen-short")["verdict"] == "stops here"  # normal voices less often mid
    section = markdown(dict(good, **pcen)).split("### Short utterances")[1].split("\n### ")[0]
    assert SELECTION_RULE_SHORT in section and SELECTION_RULE_SHORT_PCEN in section
    assert ("| rooms-pcen-short (against rooms-pcen, rooms-pcen-seed4) | rooms-pcen-short, rooms-pcen-short-seed4 | "
            "-0.5 / -0.3 / -0.3 | rooms-pcen-short: +1.2 / +5.2; rooms-pcen-short-seed4: +1.1 / +1.2 | "
            "rooms-long-pcen-short goes to the folds |") in section


def test_report_judges_both_short_members_as_one_ensemble_on_fresh_pairs_only():
    """rooms-long-short-pcen-short: the pairs of seeds 5 and 6 (not the seed-4 pair read before the
    rule) against the means of the shipped recipe's four dev ensembles, and each pair on the unseen
    language against rooms-long-pcen-seed4: UA +1 point or more and fewer normal voices answered angry."""
    from converter.report import SELECTION_RULE_SHORT_BOTH, both_short_candidate, markdown

    def arousal(ua: float, angry: int) -> dict:
        return {"clips": 1908, "speakers": 59, "corpora": ["baved"], "ua": ua, "summed": {"ua": 0.35},
                "answered": {"ua": ua, "recall": {"low": 0.3, "mid": 0.2, "high": 0.9}},
                "first_emotion": {"mid": {"neutral": 100 - angry, "angry": angry}}}

    dev = _dev_row
    results = {"rooms-long-pcen": dev(0.66, 0.60, 0.56), "rooms-long-pcen-seed2": dev(0.71, 0.62, 0.56),
               "rooms-long-pcen-w50": dev(0.72, 0.62, 0.55),
               "rooms-long-pcen-seed4": dev(0.67, 0.60, 0.55, arousal(0.472, 31)),
               "rooms-long": dev(0.66, 0.58, 0.52),  # a short member and its reference: the section shows
               "rooms-long-short": dev(0.64, 0.585, 0.52),
               "rooms-long-short-pcen-short-seed4": dev(0.80, 0.70, 0.70, arousal(0.60, 0))}  # read before: ignored
    assert both_short_candidate(results)["verdict"] == "-" and both_short_candidate(results)["pairs"] == []
    one = dict(results, **{"rooms-long-short-pcen-short-seed5": dev(0.68, 0.60, 0.555, arousal(0.49, 22))})
    entry = both_short_candidate(one)
    assert entry["pairs"] == ["rooms-long-short-pcen-short-seed5"] and entry["verdict"] == "-"  # one pair: pending
    missed = dict(results, **{"rooms-long-short-pcen-short-seed5": dev(0.68, 0.60, 0.555, arousal(0.476, 25))})
    early = both_short_candidate(missed)  # +0.4 points: what each pair must meet is missed, whatever seed 6 gives
    assert early["verdict"] == "stops here" and early["settled_early"]
    assert "rooms-long-short-pcen-short-seed6 was not trained" in markdown(missed).split("#### Both members")[1]
    assert entry["change"] == {"ravdess": -1.0, "pooled": -1.0, "farfield": 0.0}
    assert entry["unseen"] == [("rooms-long-short-pcen-short-seed5", 1.8, -9.0)]
    two = dict(one, **{"rooms-long-short-pcen-short-seed6": dev(0.69, 0.61, 0.56, arousal(0.484, 25))})
    assert both_short_candidate(two)["verdict"] == "goes to the folds"
    flat = dict(two, **{"rooms-long-short-pcen-short-seed6": dev(0.69, 0.61, 0.56, arousal(0.48, 25))})
    assert both_short_candidate(flat)["verdict"] == "stops here"  # +0.8 points on the unseen language
    angrier = dict(two, **{"rooms-long-short-pcen-short-seed6": dev(0.69, 0.61, 0.56, arousal(0.49, 31))})
    assert both_short_candidate(angrier)["verdict"] == "stops here"  # as often angry as the reference
    costly = dict(two, **{"rooms-long-short-pcen-short-seed6": dev(0.66, 0.61, 0.56, arousal(0.49, 20))})
    assert both_short_candidate(costly)["change"]["ravdess"] < -1
    assert both_short_candidate(costly)["verdict"] == "stops here"
    section = markdown(two).split("#### Both members")[1].split("\n### ")[0]
    assert SELECTION_RULE_SHORT_BOTH in section
    assert ("| rooms-long-short-pcen-short | rooms-long-short-pcen-short-seed5, rooms-long-short-pcen-short-seed6 | "
            "-0.5 / -0.5 / +0.3 | rooms-long-short-pcen-short-seed5: +1.8 / -9.0; "
            "rooms-long-short-pcen-short-seed6: +1.2 / -6.0 | goes to the folds |") in section
    pending = markdown(results).split("#### Both members")[1]
    assert "| rooms-long-short-pcen-short | - | - | - | - |" in pending


def test_report_judges_a_corpus_adversary_by_its_member_means_the_unseen_language_and_its_paired_ensemble():
    """rooms-pcen-adv: both trainings' means within 1 point of rooms-pcen's; on the unseen language each
    training +1 point and their mean +2 against rooms-pcen-seed4; the ensemble paired from the same
    log-mel outputs within 1 point of rooms-long-pcen-seed4 and higher on the unseen language."""
    from converter.report import SELECTION_RULE_ADVERSARY, SELECTION_RULE_ADVERSARY_SPEAKER, markdown

    def arousal(ua: float) -> dict:
        return {"clips": 1908, "speakers": 59, "corpora": ["baved"], "ua": ua, "first_emotion": {},
                "answered": {"ua": ua, "recall": {"low": 0.4, "mid": 0.1, "high": 0.9}}, "summed": {"ua": 0.35}}

    def paired(pcen_sha: str, log_mel_sha: str = "e9ad") -> dict:
        return {"paired_from": [{"label": "rooms-long-seed4", "sha256": log_mel_sha},
                                {"label": "pcen", "sha256": pcen_sha}]}

    dev = _dev_row
    results = {"rooms-pcen": dev(0.61, 0.58, 0.51), "rooms-pcen-again": dev(0.63, 0.58, 0.50, seed_of="rooms-pcen"),
               "rooms-pcen-seed4": dev(0.60, 0.57, 0.52, arousal(0.487), seed_of="rooms-pcen",
                                       outside_seed_means="the unseen language's reference"),
               "rooms-long-pcen-seed4": dev(0.676, 0.60, 0.551, arousal(0.472), **paired("0354"))}
    assert "### Adversaries" not in markdown(results)  # no row of the candidate: no section
    results.update({"rooms-pcen-adv": dev(0.62, 0.575, 0.505, arousal(0.50)),
                    "rooms-pcen-adv-seed4": dev(0.61, 0.58, 0.50, arousal(0.52), seed_of="rooms-pcen-adv")})
    entry = _adversary(results)
    assert entry["member_change"] == {"ravdess": -0.5, "pooled": -0.3, "farfield": -0.3}
    assert [(t, ua) for t, ua, _ in entry["unseen"]] == [("rooms-pcen-adv", 1.3), ("rooms-pcen-adv-seed4", 3.3)]
    assert entry["verdict"] == "-" and entry["ensemble_change"] is None  # the ensemble not paired yet: pending
    good = dict(results, **{"rooms-long-pcen-adv-seed4": dev(0.67, 0.60, 0.555, arousal(0.48), **paired("ab12"))})
    entry = _adversary(good)
    assert entry["ensemble_change"] == {"ravdess": -0.6, "pooled": 0.0, "farfield": 0.4}
    assert entry["ensemble_unseen"] == 0.8 and entry["verdict"] == "its log-mel member follows"

    def verdict(**rows) -> str:
        return _adversary(dict(good, **rows))["verdict"]

    assert verdict(**{"rooms-pcen-adv": dev(0.62, 0.575, 0.505, arousal(0.492))}) == "stops here"  # +0.5: each needs 1
    assert verdict(**{"rooms-pcen-adv-seed4": dev(0.61, 0.58, 0.50, arousal(0.505),  # +1.3 and +1.8: mean under 2
                                                  seed_of="rooms-pcen-adv")}) == "stops here"
    assert verdict(**{"rooms-pcen-adv": dev(0.58, 0.575, 0.505, arousal(0.50))}) == "stops here"  # RAVDESS -2.5
    assert verdict(**{"rooms-long-pcen-adv-seed4": dev(0.65, 0.60, 0.555, arousal(0.48), **paired("ab12"))}) \
        == "stops here"  # the ensemble's RAVDESS -2.6
    assert verdict(**{"rooms-long-pcen-adv-seed4": dev(0.67, 0.60, 0.555, arousal(0.47), **paired("ab12"))}) \
        == "stops here"  # the ensemble no better on the unseen language
    other_log_mel = {"rooms-long-pcen-adv-seed4": dev(0.67, 0.60, 0.555, arousal(0.48), **paired("ab12", "ffff"))}
    assert verdict(**other_log_mel) == "-"  # not the same log-mel outputs: not paired, no verdict
    one = {k: v for k, v in results.items() if k != "rooms-pcen-adv-seed4"}
    one["rooms-pcen-adv"] = dev(0.62, 0.575, 0.505, arousal(0.488))  # +0.1: what each training must meet is missed
    early = _adversary(one)
    assert early["verdict"] == "stops here" and early["settled_early"]
    assert "rooms-pcen-adv: a training read misses what each training must meet on the unseen language" in markdown(one)
    assert not _adversary(dict(one, **{"rooms-pcen-adv": dev(0.62, 0.575, 0.505, arousal(0.50))})).get(
        "settled_early")  # +1.3 alone: the other training and the ensemble still decide
    section = markdown(good).split("### Adversaries: hiding the corpus or the speaker")[1].split("\n### ")[0]
    assert SELECTION_RULE_ADVERSARY in section
    assert ("| rooms-pcen-adv (against rooms-pcen, rooms-pcen-seed4) | rooms-pcen-adv, rooms-pcen-adv-seed4 | "
            "-0.5 / -0.3 / -0.3 | rooms-pcen-adv: +1.3 / +0.0; rooms-pcen-adv-seed4: +3.3 / +0.0 | "
            "rooms-long-pcen-adv-seed4 against rooms-long-pcen-seed4: -0.6 / +0.0 / +0.4; +0.8 | "
            "its log-mel member follows |") in section
    assert SELECTION_RULE_ADVERSARY_SPEAKER not in section  # its rule shows with its rows

    # the speaker adversary: pooled clean +1 point on the means, the unseen language at most 1 point lower
    speaker = dict(results, **{
        "rooms-pcen-spk": dev(0.61, 0.595, 0.505, arousal(0.48)),
        "rooms-pcen-spk-seed4": dev(0.61, 0.59, 0.50, arousal(0.478), seed_of="rooms-pcen-spk"),
        "rooms-long-pcen-spk-seed4": dev(0.67, 0.605, 0.545, arousal(0.465), **paired("cd34"))})
    entry = _adversary(speaker, "rooms-pcen-spk")
    assert entry["member_change"] == {"ravdess": -1.0, "pooled": 1.3, "farfield": -0.3}  # -1.0: still within
    assert entry["ensemble_change"] == {"ravdess": -0.6, "pooled": 0.5, "farfield": -0.6}
    assert entry["verdict"] == "its log-mel member follows"
    flat = dict(speaker, **{"rooms-pcen-spk": dev(0.61, 0.58, 0.505, arousal(0.48))})  # pooled +0.5 only
    assert _adversary(flat, "rooms-pcen-spk")["verdict"] == "stops here"
    level = dict(speaker, **{"rooms-long-pcen-spk-seed4": dev(0.67, 0.60, 0.545, arousal(0.465), **paired("cd34"))})
    assert _adversary(level, "rooms-pcen-spk")["verdict"] == "stops here"  # the ensemble's pooled not higher
    lost = dict(speaker, **{"rooms-pcen-spk": dev(0.61, 0.595, 0.505, arousal(0.47))})  # -1.7 on the unseen language
    assert _adversary(lost, "rooms-pcen-spk")["verdict"] == "stops here"
    early = {k: v for k, v in lost.items() if k != "rooms-pcen-spk-seed4"}
    assert _adversary(early, "rooms-pcen-spk")["settled_early"]
    section = markdown(speaker).split("### Adversaries: hiding the corpus or the speaker")[1].split("\n### ")[0]
    assert SELECTION_RULE_ADVERSARY in section and SELECTION_RULE_ADVERSARY_SPEAKER in section
    assert ("| rooms-pcen-spk (against rooms-pcen, rooms-pcen-seed4) | rooms-pcen-spk, rooms-pcen-spk-seed4 | "
            in section)


def test_report_gives_how_far_each_dev_score_moves_between_trainings_of_one_recipe():
    """Pooled over recipes with two or more trainings: squared deviations from each recipe's own mean
    over the trainings beyond each recipe's first; a recipe trained once adds nothing."""
    from converter.report import dev_training_spread, markdown

    arousal = {"clips": 1908, "speakers": 59, "corpora": ["baved"], "ua": 0.5, "first_emotion": {},
               "answered": {"ua": 0.5, "recall": {"low": 0.3, "mid": 0.3, "high": 0.9}}, "summed": {"ua": 0.35}}
    dev = _dev_row
    results = {"a": dev(0.60, 0.58, 0.50), "a-seed2": dev(0.64, 0.58, 0.52, seed_of="a"),
               "b": dev(0.90, 0.10, 0.10, arousal),  # one training: no spread
               "c": dev(0.50, 0.55, 0.50), "c-again": dev(0.52, 0.55, 0.50, again_of="c"),
               "c-seed4": dev(0.54, 0.55, 0.53, seed_of="c", outside_seed_means="counted here all the same")}
    spread = dev_training_spread(results)
    assert set(spread) == {"RAVDESS clean", "pooled clean", "far-field, every corpus"}  # the unseen language: once
    assert abs(spread["RAVDESS clean"]["sd"] - 100 * np.sqrt((2 * 0.02 ** 2 + 2 * 0.02 ** 2) / 3)) < 1e-9
    assert spread["pooled clean"]["sd"] == 0 and spread["RAVDESS clean"]["trainings"] == 5
    assert spread["RAVDESS clean"]["recipes"] == 2
    far = ((0.01 ** 2) * 2 + (0.01 ** 2) * 2 + 0.02 ** 2) / 3  # a: 0.50, 0.52; c: 0.50, 0.50, 0.53
    assert abs(spread["far-field, every corpus"]["sd"] - 100 * np.sqrt(far)) < 1e-9
    section = markdown(results).split("## How far a development score moves between trainings")[1].split("\n## ")[0]
    assert "| RAVDESS clean | 2.3 | 5 (2) | 2.1 | 3.3 |" in section
    assert "## How far a development score" not in markdown({"b": results["b"]})


def _adversary(results: dict, label: str = "rooms-pcen-adv") -> dict:
    from converter.report import adversary_candidates

    (entry,) = [e for e in adversary_candidates(results) if e["label"] == label]
    return entry


def test_report_gives_the_unseen_language_cut_short_under_the_listening_conditions():
    from converter.report import markdown

    def arousal(ua: float, mid: float, mid_answers: dict) -> dict:
        return {"ua": ua, "answered": {"ua": ua, "recall": {"low": 0.3, "mid": mid, "high": 0.9}},
                "first_emotion": {"mid": mid_answers}, "summed": {"ua": 0.3}}

    shipped = {"int8": {"unseen_arousal": arousal(0.48, 0.18, {"neutral": 18, "angry": 35, "happy": 47}),
                        "unseen_arousal_conditions": {
                            "short-1s": arousal(0.45, 0.12, {"neutral": 12, "angry": 44, "happy": 44}),
                            "short-0.5s": arousal(0.40, 0.05, {"neutral": 5, "angry": 60, "happy": 35})}}}
    section = markdown({}, conditions={"rooms-long-pcen": {"unseen": shipped}}).split(
        "## Other listening conditions")[1].split("\n## ")[0]
    assert "| model | run | condition | UA | mid recall | normal voices answered angry |" in section
    assert "| rooms-long-pcen | unseen (int8) | whole clips | 48.0 % | 18.0 % | 35.0 % |" in section
    assert "| rooms-long-pcen | unseen (int8) | short-0.5s | 40.0 % | 5.0 % | 60.0 % |" in section
    rows = [line for line in section.splitlines() if line.startswith("| rooms-long-pcen | unseen")]
    assert [row.split(" | ")[2] for row in rows] == ["whole clips", "short-1s", "short-0.5s"]


def test_report_compares_recipes_by_the_mean_of_two_seeds_on_the_far_field_over_every_corpus():
    from converter.report import markdown, seed_groups

    def dev(ravdess: float, pooled: float, far_all, **extra) -> dict:
        scores = _scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7})
        if far_all is not None:
            scores["farfield_all"] = {"ua": far_all}
        return {"dev": dict(extra, float=scores)}

    results = {
        "rooms-ravdess-half": dev(0.63, 0.58, None),  # its model was not kept: not in the means
        "rooms-ravdess-half-again": dev(0.64, 0.58, 0.52, again_of="rooms-ravdess-half"),
        "rooms-ravdess-half-seed2": dev(0.62, 0.56, 0.50, seed_of="rooms-ravdess-half"),
        "rooms-good": dev(0.63, 0.57, 0.54),
        "rooms-good-seed2": dev(0.63, 0.57, 0.52, seed_of="rooms-good"),
        "rooms-lonely": dev(0.70, 0.60, 0.60),
        "rooms-good-seed4": dev(0.2, 0.2, 0.2, seed_of="rooms-good", outside_seed_means="a later reference"),
    }
    groups = seed_groups(results)
    assert groups["rooms-ravdess-half"]["labels"] == ["rooms-ravdess-half-again", "rooms-ravdess-half-seed2"]
    assert groups["rooms-good"]["labels"] == ["rooms-good", "rooms-good-seed2"] and "rooms-good-seed4" not in groups
    assert abs(groups["rooms-ravdess-half"]["farfield"] - 0.51) < 1e-9
    text = markdown(results)
    assert "| rooms-good | rooms-good, rooms-good-seed2 | 63.0 % | 57.0 % | 53.0 % | +2.0 / +0.0 / +0.0 | passes |" in text
    assert "| rooms-lonely | rooms-lonely | 70.0 % | 60.0 % | 60.0 % | +9.0 / +7.0 / +3.0 | - |" in text  # one seed: no verdict


def test_report_judges_members_weights_against_the_equal_weights_on_the_same_member_files():
    from converter.report import markdown, weight_grid

    def dev(ravdess: float, pooled: float, far_all: float, sources=("long/dev.keras", "pcen/dev.keras")) -> dict:
        scores = dict(_scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7}), farfield_all={"ua": far_all})
        members = {"rooms-long": {"source": sources[0]}, "rooms-pcen": {"source": sources[1]}}
        return {"dev": {"float": scores, "members": members}}

    results = {
        "rooms-long-pcen-w50": dev(0.60, 0.58, 0.55),
        "rooms-long-pcen-w60": dev(0.61, 0.58, 0.55),  # +1.0 clean: qualifies
        "rooms-long-pcen-w70": dev(0.63, 0.565, 0.54),  # +3.0 clean but pooled -1.5: does not
        "rooms-long-pcen-w80": dev(0.64, 0.58, 0.55, sources=("other.keras", "pcen/dev.keras")),  # other members
    }
    grid = {e["label"]: e for e in weight_grid(results)}
    assert grid["rooms-long-pcen-w60"]["qualifies"] and grid["rooms-long-pcen-w60"]["change"]["ravdess"] == 1.0
    assert not grid["rooms-long-pcen-w70"]["qualifies"] and grid["rooms-long-pcen-w70"]["change"]["pooled"] == -1.5
    assert "change" not in grid["rooms-long-pcen-w80"] and "change" not in grid["rooms-long-pcen-w50"]
    text = markdown(results)
    assert "| rooms-long-pcen-w60 | 0.6 / 0.4 | 61.0 % | 58.0 % | 55.0 % | 50.0 % | +1.0 / +0.0 / +0.0 | qualifies |" in text
    assert "| rooms-long-pcen-w70 | 0.7 / 0.3 |" in text and "does not qualify" in text
    assert "| rooms-long-pcen-w50 | 0.5 / 0.5 | 60.0 % | 58.0 % | 55.0 % | 50.0 % | (reference) | - |" in text


def test_report_judges_a_new_member_by_its_seed_means_and_the_ensemble_on_the_kept_member_file():
    from converter.report import markdown, member_candidates

    def dev(ravdess: float, pooled: float, far_all: float, members=None, **extra) -> dict:
        scores = dict(_scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7}), farfield_all={"ua": far_all})
        return {"dev": dict(extra, float=scores, **({"members": members} if members else {}))}

    def ensemble(ravdess, pooled, far_all, long_file):
        return dev(ravdess, pooled, far_all, members={"rooms-long": long_file, "rooms-pcen": {"source": "x"}})

    kept = {"source": "runs/rooms-long/dev.keras"}
    results = {
        "rooms-pcen": dev(0.61, 0.58, 0.51), "rooms-pcen-seed2": dev(0.60, 0.58, 0.51, seed_of="rooms-pcen"),
        "rooms-pcen-long": dev(0.62, 0.58, 0.505),
        "rooms-long-pcen-w50": ensemble(0.70, 0.62, 0.55, kept),
        "rooms-long-pcen-long": ensemble(0.68, 0.615, 0.548, dict(kept, sha256="ab12")),
    }
    entry = _candidate(member_candidates(results))
    assert (entry["old"], entry["new"]) == ("rooms-pcen", "rooms-pcen-long")
    other = _candidate(member_candidates(results), "rooms-long-ravdess-more-pcen")
    assert (other["old"], other["new"], other["verdict"]) == ("rooms-long", "rooms-long-ravdess-more", "-")
    assert entry["member_change"] == {"ravdess": 1.5, "pooled": 0.0, "farfield": -0.5}
    assert entry["ensemble_change"] == {"ravdess": -2.0, "pooled": -0.5, "farfield": -0.2}
    assert entry["verdict"] == "-"  # one training of the new member: no verdict yet
    results["rooms-pcen-long-seed2"] = dev(0.62, 0.58, 0.505, seed_of="rooms-pcen-long")
    entry = _candidate(member_candidates(results))
    assert entry["member_change"]["ravdess"] == 1.5 and entry["verdict"] == "goes to the folds"
    text = markdown(results)
    assert ("| rooms-long-pcen-long (against rooms-long-pcen-w50) | rooms-pcen (2) -> rooms-pcen-long (2) | "
            "+1.5 / +0.0 / -0.5 | -2.0 / -0.5 / -0.2 | goes to the folds |") in text
    results["rooms-long-pcen-long"] = ensemble(0.72, 0.605, 0.55, dict(kept, sha256="ab12"))
    assert _candidate(member_candidates(results))["verdict"] == "stops here"  # pooled -1.5 on the ensemble
    # the shared member scored from another file (both digests known): the ensembles are not compared
    results["rooms-long-pcen-w50"] = ensemble(0.70, 0.62, 0.55, dict(kept, sha256="cd34"))
    entry = _candidate(member_candidates(results))
    assert "ensemble_change" not in entry and entry["verdict"] == "-"


def test_report_gates_a_member_whose_ensemble_is_judged_on_the_folds_by_the_member_means_alone():
    from converter.report import markdown, member_candidates

    def dev(ravdess: float, pooled: float, far_all: float, **extra) -> dict:
        scores = dict(_scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7}), farfield_all={"ua": far_all})
        return {"dev": dict(extra, float=scores)}

    results = {"rooms-long": dev(0.66, 0.60, 0.53), "rooms-long-again": dev(0.66, 0.60, 0.53, again_of="rooms-long"),
               "rooms-long-seed2": dev(0.69, 0.60, 0.53, seed_of="rooms-long"),
               "rooms-long-warp": dev(0.69, 0.595, 0.53)}
    entry = _candidate(member_candidates(results), "rooms-long-warp-pcen")
    assert (entry["old"], entry["new"], entry["reference"]) == ("rooms-long", "rooms-long-warp", "rooms-long-pcen")
    assert entry["verdict"] == "-"  # one training of the new member
    results["rooms-long-warp-seed2"] = dev(0.69, 0.595, 0.52, seed_of="rooms-long-warp")
    entry = _candidate(member_candidates(results), "rooms-long-warp-pcen")
    assert entry["member_change"] == {"ravdess": 2.0, "pooled": -0.5, "farfield": -0.5}
    assert "ensemble_change" not in entry and entry["verdict"] == "goes to the folds"
    assert ("| rooms-long-warp-pcen (against rooms-long-pcen) | rooms-long (3) -> rooms-long-warp (2) | "
            "+2.0 / -0.5 / -0.5 | judged on the folds | goes to the folds |") in markdown(results)
    results["rooms-long-warp-seed2"] = dev(0.69, 0.575, 0.52, seed_of="rooms-long-warp")  # pooled -1.5
    assert _candidate(member_candidates(results), "rooms-long-warp-pcen")["verdict"] == "stops here"
    results["rooms-long-warp-seed2"] = dev(0.66, 0.595, 0.53, seed_of="rooms-long-warp")  # RAVDESS clean +0.5
    assert _candidate(member_candidates(results), "rooms-long-warp-pcen")["verdict"] == "stops here"


def test_report_judges_a_candidate_on_the_folds_paired_against_its_reference_then_on_the_corpora_left_out():
    from converter.report import fold_candidates, markdown

    def folds(clean: float, far: float, runs=("cv1", "cv2", "cv3", "cv4", "cv5")) -> dict:
        return {r: {"float": _scores(clean + 0.01 * i, far + 0.01 * i)} for i, r in enumerate(runs)}

    results = {"rooms-long-pcen-seed2": folds(0.66, 0.58),
               "rooms-long-ema-pcen-seed2": folds(0.67, 0.575, ("cv1", "cv2"))}
    entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
    assert entry["verdict"] == "-" and [r for r, _, _ in entry["folds"]] == ["cv1", "cv2"]
    assert "| rooms-long-ema-pcen (rooms-long-ema-pcen-seed2 against rooms-long-pcen-seed2) | cv2 | " \
           "67.0 % / 59.0 % | 68.0 % / 58.5 % | +1.0 / -0.5 points |" in markdown(results)
    results["rooms-long-ema-pcen-seed2"] = folds(0.67, 0.575)
    entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
    assert entry["change"] == {"clean": 1.0, "farfield": -0.5} and entry["drop"] == 9.5
    assert entry["verdict"] == "passes the folds; corpora left out next"
    loco = lambda ua: {r: {"int8": _scores(ua)} for r in ("loco-ravdess", "loco-nemo", "loco-ased")}  # noqa: E731
    results["rooms-long-pcen"], results["rooms-long-ema-pcen"] = loco(0.37), loco(0.355)
    entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
    assert entry["loco_change"] == -1.5 and entry["verdict"] == "stops on the corpora left out"
    results["rooms-long-ema-pcen"] = loco(0.365)
    entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
    assert entry["verdict"] == "replaces the shipped model"
    assert ("rooms-long-ema-pcen over the five paired folds: float clean +1.0 points, far-field -0.5 points, its drop "
            "9.5 points, leave-one-corpus-out mean -0.5 points against rooms-long-pcen: replaces the shipped "
            "model.") in markdown(results)
    results["rooms-long-ema-pcen-seed2"] = folds(0.665, 0.575)  # clean +0.5: still enough
    assert next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")["change"]["clean"] == 0.5
    for clean, far in ((0.664, 0.575), (0.67, 0.568), (0.68, 0.575)):  # clean +0.4; far-field -1.2; drop 10.5
        results["rooms-long-ema-pcen-seed2"] = folds(clean, far)
        entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
        assert entry["verdict"] == "stops on the folds" and "loco_change" not in entry, (clean, far)
    # both rows also hold the int8 ensemble: the model that would ship must show the gain too
    def with_int8(rows: dict, clean: float, far: float) -> dict:
        return {r: dict(row, int8=_scores(clean, far)) for r, row in rows.items()}

    results["rooms-long-pcen-seed2"] = with_int8(folds(0.66, 0.58), 0.663, 0.584)
    results["rooms-long-ema-pcen-seed2"] = with_int8(folds(0.67, 0.575), 0.661, 0.581)
    entry = next(e for e in fold_candidates(results) if e["label"] == "rooms-long-ema-pcen")
    assert entry["change"]["clean"] == 1.0 and entry["int8_change"] == {"clean": -0.2, "farfield": -0.3}
    assert entry["verdict"] == "stops on the folds" and "loco_change" not in entry
    text = markdown(results)
    assert "| cv3 (int8) | 66.3 % / 58.4 % | 66.1 % / 58.1 % | -0.2 / -0.3 points |" in text
    assert "int8 ensembles clean -0.2 points, far-field -0.3 points, its drop 8.0 points: stops on the folds." in text
    results["rooms-long-ema-pcen-seed2"] = with_int8(folds(0.67, 0.575), 0.668, 0.581)
    assert next(e for e in fold_candidates(results)
                if e["label"] == "rooms-long-ema-pcen")["verdict"] == "replaces the shipped model"


def test_report_gives_kept_fold_and_development_models_scores_under_the_other_listening_conditions():
    from converter.report import markdown

    def fold(clean: float, far: float, phone: float, pitch: float, reverb: float) -> dict:
        scores = _scores(clean, far)
        scores["conditions"] = {"telephone": {"ua": phone}, "pitch+2": {"ua": pitch}, "reverb": {"ua": reverb}}
        return {"int8": scores}

    conditions = {"shipped-seed2": {"cv1": fold(0.70, 0.60, 0.62, 0.50, 0.68), "cv2": fold(0.60, 0.50, 0.58, 0.46, 0.57)},
                  "other": {"cv1": {"int8": _scores(0.5, 0.4)}}}  # scored without conditions: no line
    member = fold(0.68, 0.55, 0.60, 0.52, 0.66)
    conditions["member"] = {"cv1": {"float": member["int8"]}}  # a kept Keras member: float scores
    dev = _scores(0.61, None, {"ravdess": 0.66, "nemo": 0.40, "ased": 0.78})
    dev["farfield_all"] = {"ua": 0.53}
    dev["conditions"] = {"telephone": {"ua": 0.55}, "pitch+2": {"ua": 0.50}, "reverb": {"ua": 0.58}}
    conditions["rooms-long-seed3"] = {"dev": {"float": dev}}
    text = markdown({}, conditions=conditions)
    section = text.split("## Other listening conditions")[1].split("## Calibration")[0]
    assert "| fold models | model | folds | clean | far-field | telephone | pitch+2 | reverb |" in section
    assert "| shipped-seed2 | int8 | 2 | 65.0 % | 55.0 % | 60.0 % | 48.0 % | 62.5 % |" in section
    assert "| member | float | 1 | 68.0 % | 55.0 % | 60.0 % | 52.0 % | 66.0 % |" in section
    assert "| other |" not in section
    assert ("| development model | RAVDESS clean | pooled clean | far-field, every corpus | telephone | pitch+2 | "
            "reverb |") in section
    assert "| rooms-long-seed3 | 66.0 % | 61.0 % | 53.0 % | 55.0 % | 50.0 % | 58.0 % |" in section
    assert "## Other listening conditions" not in markdown({})


def test_the_listening_conditions_band_limit_raise_reverberate_or_shorten_one_clip_the_same_way_each_time():
    from converter.conditions import CONDITIONS, LISTENING, apply_condition

    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.3 * np.sin(2 * np.pi * 5000.0 * t)).astype(np.float32)

    def level(x: np.ndarray, hz: float) -> float:
        spectrum = np.abs(np.fft.rfft(x))
        return float(spectrum[int(hz)])  # one-second signal: bin k is k Hz

    phone = apply_condition("telephone", tone, sr, np.random.default_rng(0))
    assert phone.shape == tone.shape and level(phone, 5000) < 0.01 * level(tone, 5000)
    assert level(phone, 440) > 0.5 * level(tone, 440)
    high = apply_condition("pitch+2", tone, sr, np.random.default_rng(0))
    assert high.shape == tone.shape
    assert abs(np.argmax(np.abs(np.fft.rfft(high))[:1000]) - 440 * 2 ** (2 / 12)) <= 2  # 494 Hz
    wet = apply_condition("reverb", tone, sr, np.random.default_rng(5))
    assert wet.shape == tone.shape and np.array_equal(wet, apply_condition("reverb", tone, sr, np.random.default_rng(5)))
    assert np.isclose(np.abs(wet).max(), np.abs(tone).max(), rtol=1e-4) and not np.allclose(wet, tone)
    assert list(CONDITIONS)[:5] == list(LISTENING) == ["telephone", "pitch+2", "reverb", "short-1s", "short-0.5s"]
    # a short utterance of the same voice: the middle of the clip, a clip already shorter kept whole
    ramp = np.arange(3 * sr, dtype=np.float32) / (3 * sr)
    middle = apply_condition("short-1s", ramp, sr, np.random.default_rng(0))
    assert middle.shape == (sr,) and middle[0] == ramp[sr] and middle[-1] == ramp[2 * sr - 1]
    assert apply_condition("short-0.5s", ramp, sr, np.random.default_rng(0)).shape == (sr // 2,)
    np.testing.assert_array_equal(apply_condition("short-1s", ramp[:sr // 4], sr, np.random.default_rng(0)),
                                  ramp[:sr // 4])
    with pytest.raises(ValueError, match="unknown condition"):
        apply_condition("underwater", tone, sr, np.random.default_rng(0))


def test_the_voice_shifts_move_pitch_and_tempo_as_their_names_say():
    """pitch+2 taken apart: the WSOLA shift raises a tone and keeps the length, the resampling
    raises it and shortens the clip, each stretch alone keeps the tone and shortens the clip."""
    from converter.conditions import (BACKGROUNDS, CONDITIONS, CROWD, LISTENING, MICROPHONES, VOICE_SHIFTS,
                                      apply_condition)

    sr = 16000
    tone = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(2 * sr) / sr)).astype(np.float32)

    def peak_hz(x: np.ndarray) -> float:
        return float(np.argmax(np.abs(np.fft.rfft(x)))) * sr / x.size

    shorter = int(round(tone.size / 2 ** (2 / 12)))  # 12 % faster: 17820 samples of 32000 / 1.122
    expected = {"pitch+2": (494.0, tone.size), "pitch+2-wsola": (494.0, tone.size), "speed+2": (494.0, shorter),
                "tempo-vocoder": (440.0, shorter), "tempo-wsola": (440.0, shorter),
                "pitch-2-wsola": (392.0, tone.size)}
    assert list(VOICE_SHIFTS) == list(expected)
    assert set(VOICE_SHIFTS) | set(LISTENING) | set(BACKGROUNDS) | set(MICROPHONES) | set(CROWD) == set(CONDITIONS)
    for name, (hz, size) in expected.items():
        shifted = apply_condition(name, tone, sr, np.random.default_rng(0))
        assert shifted.dtype == np.float32 and abs(shifted.size - size) <= 2, name
        assert abs(peak_hz(shifted) - hz) <= 2.0, name
        assert 0.5 < np.sqrt(np.mean(shifted ** 2)) / np.sqrt(np.mean(tone ** 2)) < 1.5, name
        np.testing.assert_array_equal(shifted, apply_condition(name, tone, sr, np.random.default_rng(1)))


def test_a_cheap_microphone_rolls_off_the_low_end_keeps_a_few_db_of_ripple_and_applies_its_drawn_response():
    """mic: every drawn response falls below its corner and stays within the ripple in the speech
    band; the clip's length and peak are kept, the same generator gives the same copy, and the
    filtered clip's spectrum follows the drawn response."""
    from scipy.signal import welch

    from converter.conditions import MIC_RIPPLE_DB, apply_condition, microphone_response

    sr = 16000
    rng = np.random.default_rng(0)
    draws = [microphone_response(sr, rng) for _ in range(200)]
    hz = draws[0][0]

    def db(gain: np.ndarray, f: float) -> float:
        return float(20 * np.log10(gain[np.argmin(np.abs(hz - f))]))

    assert all(db(g, 30.0) <= -6.0 for _, g in draws)  # the corner is 80 Hz at the lowest
    # the ripple, and at 3 kHz a low-pass cornered at 4 kHz at the lowest (-1 dB)
    assert all(abs(db(g, f)) <= MIC_RIPPLE_DB + 1.1 for _, g in draws for f in (800.0, 1500.0, 3000.0))
    assert len({round(db(g, 1000.0), 3) for _, g in draws}) > 150  # drawn, not fixed
    noise = (0.1 * np.random.default_rng(1).standard_normal(4 * sr)).astype(np.float32)
    heard = apply_condition("mic", noise, sr, np.random.default_rng(5))
    assert heard.dtype == np.float32 and heard.size == noise.size
    assert abs(np.max(np.abs(heard)) - np.max(np.abs(noise))) < 1e-6
    np.testing.assert_array_equal(heard, apply_condition("mic", noise, sr, np.random.default_rng(5)))
    _, gain = microphone_response(sr, np.random.default_rng(5))
    f, p_in = welch(noise, sr, nperseg=1024)
    _, p_out = welch(heard, sr, nperseg=1024)
    measured = 10 * np.log10(p_out / p_in)
    for probe in (500.0, 1000.0, 2000.0, 4000.0):
        at = np.argmin(np.abs(f - probe))
        assert abs((measured[at] - measured[np.argmin(np.abs(f - 1000.0))]) - (db(gain, probe) - db(gain, 1000.0))) < 1.5


def _steady_voices(tmp_path: Path, monkeypatch) -> Tuple[Path, Tuple[float, ...]]:
    """The protocol's test corpora with an unseen-language corpus of five background speakers, each a
    steady tone (one "voice" per speaker, told apart by its frequency), made the datasets folder:
    the folder and the five frequencies."""
    root = _dev_corpora(tmp_path / "datasets")
    shutil.rmtree(root / "baved")
    (root / "baved").mkdir()
    rows = ["path,label,speaker,arousal"]
    voices = (170.0, 230.0, 290.0, 350.0, 410.0)
    t = np.arange(8000) / 16000
    for i, hz in enumerate(voices):
        soundfile.write(str(root / "baved" / f"v{i}.wav"), (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32),
                        16000)
        rows.append(f"v{i}.wav,,baved-{i},mid")
    (root / "baved" / "manifest.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("EDGE_SER_DATASETS", str(root))
    return root, voices


def test_the_backgrounds_put_one_or_four_unseen_voices_or_held_out_noise_behind_the_speaker(tmp_path, monkeypatch):
    """noise, talker and babble: the clip's length kept, the background 5-20 dB below the speech, the
    same copy from the same generator; one talker is one voice, babble several; a missing voice corpus
    is a clear error."""
    from converter import conditions, rooms
    from converter.conditions import BACKGROUNDS, BORROWS_FROM, apply_condition

    root, voices = _steady_voices(tmp_path, monkeypatch)
    conditions.background_voices.cache_clear()
    rooms.load_bank.cache_clear()
    sr = 16000
    speech = (0.3 * np.sin(2 * np.pi * 100.0 * np.arange(3 * sr) / sr)).astype(np.float32)

    def heard(residual: np.ndarray) -> set:
        spectrum = np.abs(np.fft.rfft(residual))
        floor = 0.05 * spectrum.max()
        return {hz for hz in voices if spectrum[int(hz * residual.size / sr)] > floor}

    try:
        assert BACKGROUNDS == ("noise", "talker", "babble") and set(BORROWS_FROM) == {"talker", "babble", "far-field-crowd"}
        for name in BACKGROUNDS:
            for seed in range(4):
                out = apply_condition(name, speech, sr, np.random.default_rng(seed))
                assert out.shape == speech.shape and out.dtype == np.float32, name
                np.testing.assert_array_equal(out, apply_condition(name, speech, sr, np.random.default_rng(seed)))
                residual = out - speech
                snr = 20 * np.log10(np.sqrt(np.mean(speech ** 2)) / np.sqrt(np.mean(residual.astype(np.float64) ** 2)))
                assert 5.0 - 1e-3 <= snr <= 20.0 + 1e-3, (name, snr)
                if name == "talker":
                    assert len(heard(residual)) == 1
                elif name == "babble":
                    assert len(heard(residual)) == 4
        shutil.rmtree(root / "baved")
        conditions.background_voices.cache_clear()
        with pytest.raises(RuntimeError, match="need the baved corpus"):
            apply_condition("babble", speech, sr, np.random.default_rng(0))
        with pytest.raises(ValueError, match="at least one word"):  # never an endless loop
            conditions.voice_stream([], 100, sr, np.random.default_rng(0))
    finally:
        conditions.background_voices.cache_clear()
        rooms.load_bank.cache_clear()


def test_far_field_crowd_is_the_far_field_condition_with_four_unseen_voices_in_place_of_its_noise(tmp_path, monkeypatch):
    """far-field is the protocol's far-field copy; far-field-crowd the same room, SNR range and
    attenuation with four background voices instead of a noise recording: the clip's length kept,
    the same copy from the same generator, four voices heard 5-20 dB below the speech."""
    from converter import conditions, rooms
    from converter.conditions import BORROWS_FROM, CROWD, apply_condition

    _, voices = _steady_voices(tmp_path, monkeypatch)
    rir = np.zeros(64, dtype=np.float32)
    rir[0] = 1.0  # a room that changes nothing, so the speech and the voices can be told apart
    noise = (0.1 * np.sin(2 * np.pi * 3000.0 * np.arange(4000) / 16000)).astype(np.float32)
    fake = rooms.RoomBank((rir, rir), (noise,))
    monkeypatch.setattr(rooms, "load_bank", lambda *a, **k: fake)
    conditions.background_voices.cache_clear()
    sr = 16000
    speech = (0.3 * np.sin(2 * np.pi * 100.0 * np.arange(3 * sr) / sr)).astype(np.float32)

    def line(x: np.ndarray, hz: float) -> float:
        """The amplitude around ``hz`` (+-20 Hz: words in random phases spread a voice's line)."""
        power = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
        at = np.fft.rfftfreq(x.size, 1 / sr)
        return float(np.sqrt(power[np.abs(at - hz) <= 20.0].sum()))

    try:
        assert CROWD == ("far-field", "far-field-crowd") and BORROWS_FROM["far-field-crowd"] == "baved"
        for seed in range(4):
            plain = apply_condition("far-field", speech, sr, np.random.default_rng(seed))
            np.testing.assert_array_equal(plain, rooms.far_field(speech, fake, np.random.default_rng(seed)))
            crowd = apply_condition("far-field-crowd", speech, sr, np.random.default_rng(seed))
            assert crowd.shape == speech.shape and crowd.dtype == np.float32
            np.testing.assert_array_equal(crowd, apply_condition("far-field-crowd", speech, sr,
                                                                 np.random.default_rng(seed)))
            assert line(plain, 3000.0) > 0.01 * line(plain, 100.0)  # the noise is behind the speech
            assert line(crowd, 3000.0) < 1e-3 * line(crowd, 100.0)  # and not behind the crowd's
            heard = [hz for hz in voices if line(crowd, hz) > 0.03 * line(crowd, 100.0)]
            assert len(heard) == 4
            snr = 20 * np.log10(line(crowd, 100.0) / np.sqrt(sum(line(crowd, hz) ** 2 for hz in voices)))
            assert 5.0 - 1.0 <= snr <= 20.0 + 1.0, snr  # line amplitudes, not the mixer's RMS: a little slack
    finally:
        conditions.background_voices.cache_clear()


def test_report_takes_pitch_shift_apart_for_models_scored_under_the_voice_shifts():
    from converter.report import markdown

    def shifted(ua: float, ravdess: float) -> dict:
        return {"ua": ua, "by_corpus": {"ravdess": {"ua": ravdess}}}

    dev = _scores(0.60, None, {"ravdess": 0.66, "nemo": 0.40, "ased": 0.80})
    dev["farfield_all"] = {"ua": 0.52}
    dev["conditions"] = {"telephone": {"ua": 0.50}, "pitch+2": shifted(0.53, 0.50),
                         "pitch+2-wsola": shifted(0.59, 0.63), "speed+2": shifted(0.56, 0.60),
                         "tempo-vocoder": shifted(0.52, 0.49), "tempo-wsola": shifted(0.55, 0.60),
                         "pitch-2-wsola": shifted(0.58, 0.62)}

    def arousal(ua: float) -> dict:
        return {"ua": ua, "answered": {"recall": {"mid": 0.2}}, "first_emotion": {"mid": {"angry": 1, "neutral": 4}}}

    dev["unseen_arousal"] = arousal(0.44)
    dev["unseen_arousal_conditions"] = {"pitch+2": arousal(0.39), "speed+2": arousal(0.42)}
    only_pitch = _scores(0.61, None, {"ravdess": 0.65})
    only_pitch["conditions"] = {"pitch+2": shifted(0.5, 0.5)}  # the old condition alone: no line here
    unseen = {"unseen_arousal": arousal(0.48), "unseen_arousal_conditions": {"tempo-wsola": arousal(0.47)}}
    fold = _scores(0.64, 0.55)  # a RAVDESS fold: no corpora, so its UA is RAVDESS's and nothing is pooled
    fold["conditions"] = {"pitch+2": {"ua": 0.51}, "pitch+2-wsola": {"ua": 0.62}}
    conditions = {"log-mel-seed5": {"dev": {"float": dev}}, "older": {"dev": {"float": only_pitch}},
                  "shipped": {"unseen": {"int8": unseen}}, "fold-model": {"cv1": {"int8": fold}}}
    text = markdown({}, conditions=conditions)
    section = text.split("### A higher voice, or the pitch shifter?")[1].split("## Calibration")[0]
    assert ("| model | run | scored on | clean | pitch+2 | pitch+2-wsola | speed+2 | tempo-vocoder | tempo-wsola | "
            "pitch-2-wsola |") in section and "12 % faster" in section
    assert ("| log-mel-seed5 | dev (float) | RAVDESS | 66.0 % | 50.0 % | 63.0 % | 60.0 % | 49.0 % | 60.0 % | "
            "62.0 % |") in section
    assert ("| log-mel-seed5 | dev (float) | every corpus, pooled | 60.0 % | 53.0 % | 59.0 % | 56.0 % | 52.0 % | "
            "55.0 % | 58.0 % |") in section
    assert "| log-mel-seed5 | dev (float) | unseen language | 44.0 % | 39.0 % | - | 42.0 % | - | - | - |" in section
    assert "| shipped | unseen (int8) | unseen language | 48.0 % | - | - | - | - | 47.0 % | - |" in section
    assert "| older |" not in section and "| shipped | unseen (int8) | RAVDESS" not in section
    assert "| fold-model | cv1 (int8) | RAVDESS | 64.0 % | 51.0 % | 62.0 % | - | - | - | - |" in section
    assert "| fold-model | cv1 (int8) | every corpus" not in section
    # the listening-conditions tables keep their columns: the voice shifts are not among them
    assert "| log-mel-seed5 | 66.0 % | 60.0 % | 52.0 % | 50.0 % | 53.0 % | - | - | - |" in text
    assert "| shipped | unseen (int8) | tempo-wsola |" not in text
    assert "### A higher voice" not in markdown({}, conditions={"older": {"dev": {"float": only_pitch}}})


def test_report_sets_other_voices_behind_the_speaker_against_noise_at_the_same_snr():
    from converter.report import markdown

    def behind(ua: float, ravdess: float, nemo: float) -> dict:
        return {"ua": ua, "by_corpus": {"ravdess": {"ua": ravdess}, "nemo": {"ua": nemo}}}

    dev = _scores(0.60, None, {"ravdess": 0.66, "nemo": 0.40})
    dev["conditions"] = {"pitch+2": behind(0.5, 0.5, 0.5), "noise": behind(0.55, 0.61, 0.35),
                         "talker": behind(0.50, 0.57, 0.30), "babble": behind(0.45, 0.52, 0.27)}
    dev["unseen_arousal"] = {"ua": 0.44, "answered": {"recall": {}}, "first_emotion": {}}
    dev["unseen_arousal_conditions"] = {"noise": {"ua": 0.41, "answered": {"recall": {}}, "first_emotion": {}}}
    shifted_only = _scores(0.61, None, {"ravdess": 0.65})
    shifted_only["conditions"] = {"pitch+2-wsola": behind(0.5, 0.5, 0.5)}
    conditions = {"pcen-seed5": {"dev": {"float": dev}}, "shifted": {"dev": {"float": shifted_only}}}
    text = markdown({}, conditions=conditions)
    section = text.split("### Other voices behind the speaker")[1].split("## Calibration")[0]
    assert "| model | run | scored on | clean | noise | talker | babble |" in section and "5-20 dB" in section
    assert "| pcen-seed5 | dev (float) | RAVDESS | 66.0 % | 61.0 % | 57.0 % | 52.0 % |" in section
    assert "| pcen-seed5 | dev (float) | nEMO | 40.0 % | 35.0 % | 30.0 % | 27.0 % |" in section
    assert "| pcen-seed5 | dev (float) | every corpus, pooled | 60.0 % | 55.0 % | 50.0 % | 45.0 % |" in section
    assert "| pcen-seed5 | dev (float) | unseen language | 44.0 % | 41.0 % | - | - |" in section
    assert "| pcen-seed5 | dev (float) | ASED" not in section and "| shifted |" not in section
    assert "### Other voices" not in markdown({}, conditions={"shifted": {"dev": {"float": shifted_only}}})


def test_report_sets_a_cheap_microphone_beside_the_telephone_band_for_models_scored_under_it():
    from converter.report import markdown

    def heard(ua: float) -> dict:
        return {"ua": ua, "by_corpus": {"ravdess": {"ua": ua + 0.05}}}

    shipped = {"unseen_arousal": {"ua": 0.483, "answered": {"recall": {}}, "first_emotion": {}},
               "unseen_arousal_conditions": {k: {"ua": v, "answered": {"recall": {}}, "first_emotion": {}}
                                             for k, v in (("mic", 0.48), ("telephone", 0.476))}}
    phone_only = _scores(0.61, None, {"ravdess": 0.65})
    phone_only["conditions"] = {"telephone": heard(0.5)}
    dev = _scores(0.60, None, {"ravdess": 0.66})
    dev["conditions"] = {"mic": heard(0.58)}
    conditions = {"shipped": {"unseen": {"int8": shipped}}, "phone": {"dev": {"float": phone_only}},
                  "member": {"dev": {"float": dev}}}
    section = markdown({}, conditions=conditions).split("### A cheap microphone")[1]
    assert "| model | run | scored on | clean | telephone | mic |" in section and "80-300 Hz" in section
    assert "| shipped | unseen (int8) | unseen language | 48.3 % | 47.6 % | 48.0 % |" in section
    assert "| member | dev (float) | RAVDESS | 66.0 % | - | 63.0 % |" in section
    assert "| phone |" not in section  # a telephone score alone is the listening table's
    assert "### A cheap microphone" not in markdown({}, conditions={"phone": {"dev": {"float": phone_only}}})


def test_report_judges_the_distilled_network_against_its_own_teacher_and_the_network_untaught():
    from converter.report import distilled_candidate, markdown

    def dev(ravdess: float, pooled: float, far_all: float, **extra) -> dict:
        scores = dict(_scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7}), farfield_all={"ua": far_all},
                      unseen_arousal={"ua": 0.47, "clips": 9, "speakers": 3, "answered": {"ua": 0.47, "recall": {}},
                                      "summed": {"ua": 0.4}, "first_emotion": {}})
        return {"dev": dict({"float": scores}, **extra)}

    files = {"rooms-long": {"source": "long/dev.keras", "sha256": "aa"},
             "rooms-pcen": {"source": "pcen/dev.keras", "sha256": "bb"}}
    spec = {"ensemble": ["rooms-long", "rooms-pcen"]}
    results = {"rooms-pcen-db": dev(0.68, 0.604, 0.541), "rooms-pcen-db-seed2": dev(0.63, 0.603, 0.545,
                                                                                     seed_of="rooms-pcen-db"),
               # the same members from other files, and the same files weighted: neither is its teacher
               "rooms-long-pcen": dev(0.70, 0.64, 0.60, recipe=spec,
                                      members={m: dict(f, sha256="zz") for m, f in files.items()}),
               "rooms-long-pcen-w60": dev(0.70, 0.64, 0.60, recipe=dict(spec, weights=[0.6, 0.4]), members=files),
               "rooms-long-pcen-seed5-again": dev(0.69, 0.610, 0.561, recipe=spec, members=files,
                                                  again_of="rooms-long-pcen-seed5", outside_seed_means="teacher")}
    results["rooms-db-distilled-seed5"] = dev(0.66, 0.602, 0.555, seed_of="rooms-db-distilled",
                                              teacher={"ensemble": "rooms-long-pcen",
                                                       "members": {m: dict(f) for m, f in files.items()}})
    entry = distilled_candidate(results)
    (training,) = entry["trainings"]
    assert training["teacher_row"] == "rooms-long-pcen-seed5-again"
    assert training["against_teacher"] == {"ravdess": -3.0, "pooled": -0.8, "farfield": -0.6}
    assert training["against_untaught"] == {"ravdess": 0.5, "pooled": -0.1, "farfield": 1.2}
    assert entry["verdict"] == "a second training follows"
    text = markdown(results)
    assert "### One network taught by the ensemble" in text
    assert ("| rooms-db-distilled-seed5 | rooms-long-pcen-seed5-again | -3.0 / -0.8 / -0.6 | +0.5 / -0.1 / +1.2 | "
            "47.0 % | a second training follows |") in text
    results["rooms-db-distilled-seed5"]["dev"]["float"]["farfield_all"]["ua"] = 0.549  # +0.6 on the untaught
    assert distilled_candidate(results)["verdict"] == "stops here"
    results["rooms-db-distilled-seed5"]["dev"]["teacher"]["members"]["rooms-pcen"]["sha256"] = "cc"
    assert distilled_candidate(results)["trainings"][0]["teacher_row"] is None
    assert distilled_candidate(results)["verdict"] == "-"  # no teacher scored: nothing to read
    assert "### One network taught" not in markdown({k: v for k, v in results.items() if "distilled" not in k})


def test_report_judges_a_third_member_against_both_pairs_it_contains_on_the_same_files():
    from converter.report import markdown, third_member_candidates

    files = {"rooms-long": {"source": "long/dev.keras"}, "rooms-pcen": {"source": "pcen/dev.keras"},
             "rooms-pcen-db": {"source": "db/dev.keras"}}

    def dev(ravdess: float, pooled: float, far_all: float, *members: str) -> dict:
        scores = dict(_scores(pooled, 0.5, {"ravdess": ravdess, "nemo": 0.4, "ased": 0.7}), farfield_all={"ua": far_all})
        return {"dev": {"float": scores, "members": {m: dict(files[m]) for m in members}}}

    trio = ("rooms-long", "rooms-pcen", "rooms-pcen-db")
    results = {"rooms-long-pcen-w50": dev(0.71, 0.62, 0.55, "rooms-long", "rooms-pcen"),
               "rooms-long-pcen-db": dev(0.67, 0.61, 0.56, "rooms-long", "rooms-pcen-db")}
    assert third_member_candidates(results)[0]["verdict"] == "-"  # no row of its own yet
    results["rooms-long-pcen-trio"] = dev(0.68, 0.63, 0.57, *trio)
    entry = third_member_candidates(results)[0]
    assert entry["changes"]["rooms-long-pcen-w50"] == {"ravdess": -3.0, "pooled": 1.0, "farfield": 2.0}
    assert entry["changes"]["rooms-long-pcen-db"] == {"ravdess": 1.0, "pooled": 2.0, "farfield": 1.0}
    assert entry["verdict"] == "goes to the folds"  # RAVDESS clean above the lower pair's
    assert "| rooms-long-pcen-trio | rooms-long-pcen-db | +1.0 / +2.0 / +1.0 | goes to the folds |" in markdown(results)
    results["rooms-long-pcen-trio"] = dev(0.66, 0.63, 0.57, *trio)  # below both pairs on RAVDESS clean
    assert third_member_candidates(results)[0]["verdict"] == "stops here"
    results["rooms-long-pcen-trio"] = dev(0.68, 0.63, 0.564, *trio)  # far-field +0.4 against one pair
    assert third_member_candidates(results)[0]["verdict"] == "stops here"
    # a member scored from another file than the pair's: that pair is not compared, so no verdict
    results["rooms-long-pcen-trio"] = dev(0.68, 0.63, 0.57, *trio)
    results["rooms-long-pcen-trio"]["dev"]["members"]["rooms-pcen"]["source"] = "pcen/other.keras"
    entry = third_member_candidates(results)[0]
    assert list(entry["changes"]) == ["rooms-long-pcen-db"] and entry["verdict"] == "-"


def _candidate(entries: list, label: str = "rooms-long-pcen-long") -> dict:
    return next(e for e in entries if e["label"] == label)


_RESUMABLE_TRAINING = """
import json, sys
from pathlib import Path
import numpy as np
import converter.train as T
from converter.corpora import Item
from converter.train import ClipSet, Recipe, train_model

T.ROUND_STEPS = 3  # four rounds of three batches: the checkpoint is written after each
rng = np.random.default_rng(0)
items = [Item(f"e{i}", ("sad", "angry", "happy")[i % 3], f"s{i % 4}", "emo") for i in range(12)]
data = ClipSet(items, [[f, f + rng.normal(0, 0.5, f.shape).astype(np.float32)]
                       for f in (rng.standard_normal((120, 16)).astype(np.float32) for _ in items)])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1234
recipe = Recipe(window_frames=100, min_frames=50, batch_size=8, sampling="balanced", masked=True, steps=12,
                warmup_epochs=1, channels=(4, 8, 8), aug_variants=1, ema=0.9, seed=seed)
lines = []

def log(line):
    lines.append(line)
    if sys.argv[1] == "cut" and "epoch   2/" in line:
        raise SystemExit(3)  # the process ends after round 2, as a session's end would end it

checkpoint = None if sys.argv[2] == "-" else Path(sys.argv[2])
result = train_model(data, None, recipe, log=log, checkpoint=checkpoint)
print(json.dumps({"weights": [w.tolist() for w in result.model.get_weights()], "epochs": result.epochs_run,
                  "history": len(result.history), "log": lines}))
"""


def test_a_training_stopped_midway_resumes_from_its_checkpoint_to_the_same_model(tmp_path):
    """Model and optimizer variables (EMA, dropout seeds) and the batch generator are restored, so the
    resumed training ends with the weights of an uninterrupted one; another training's checkpoint is
    not resumed."""
    script, checkpoint = tmp_path / "train.py", tmp_path / "run.checkpoint.npz"
    script.write_text(_RESUMABLE_TRAINING)

    def run(*args):
        return subprocess.run([PY, str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2"))

    whole = run("whole", "-")
    assert whole.returncode == 0, whole.stderr[-3000:]
    cut = run("cut", str(checkpoint))
    assert cut.returncode == 3 and checkpoint.exists(), cut.stderr[-3000:]
    resumed = run("whole", str(checkpoint))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (whole, resumed))
    assert any("resumed from" in line and "after epoch 2/4" in line for line in b["log"])
    assert sum("epoch " in line and "loss" in line for line in b["log"]) == 2  # rounds 3 and 4 only
    assert a["epochs"] == b["epochs"] == 4 and a["history"] == b["history"] == 4
    gaps = [float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a["weights"], b["weights"])]
    assert max(gaps) < 1e-6, gaps
    other = run("whole", str(checkpoint), "7")  # another seed: another training
    assert other.returncode == 0, other.stderr[-3000:]
    c = json.loads(other.stdout.strip().splitlines()[-1])
    assert any("belongs to another training" in line for line in c["log"]) and c["history"] == 4
    assert max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a["weights"], c["weights"])) > 1e-3


def test_a_checkpoint_or_finished_fold_from_before_a_new_recipe_field_is_still_the_same_training():
    """Adding a Recipe field must not throw away trainings written before it, as long as the recipe
    leaves the new field at its default; any other difference is another training."""
    from converter.train import Recipe, same_training

    recipe = Recipe(steps=12000, masked=True)
    current = {"recipe": recipe.to_dict(), "epochs": 48, "train": "abc", "val": "def"}
    assert same_training(current, current)
    older = dict(current, recipe={k: v for k, v in recipe.to_dict().items() if k != "band_warp"})
    assert same_training(older, current)  # written before band_warp existed; band_warp left at 0
    warped = dict(current, recipe=Recipe(steps=12000, masked=True, band_warp=0.1).to_dict())
    assert not same_training(older, warped)  # the new knob used: another training
    assert not same_training(dict(older, recipe=dict(older["recipe"], retired=1)), current)  # a field since removed
    assert not same_training(dict(current, recipe=dict(current["recipe"], steps=8000)), current)
    assert not same_training(dict(current, train="abd"), current)
    assert not same_training(None, current) and not same_training({"recipe": "x"}, current)
