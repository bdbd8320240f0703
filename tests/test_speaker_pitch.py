"""Tests of the speaker-pitch diagnosis (converter.speaker_pitch) and the pieces it stands on:
a word's pitch, the WSOLA shift by any number of semitones, which speakers a corpus says are
female or male, the oracle and control shifts, and the fit that tells absolute pitch from pitch
against the speaker. The whole command runs in tests/test_protocol.py on the shipped model."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

if importlib.util.find_spec("librosa") is None or importlib.util.find_spec("soundfile") is None:
    pytest.skip("the converter needs librosa and soundfile (requirements-dev.txt); make test installs it",
                allow_module_level=True)

from converter.corpora import Item, speaker_genders  # noqa: E402
from converter.speaker_pitch import (  # noqa: E402
    control_name, draw_up, normal_pitch, pitch_reading, semitones, shift_plan, training_targets, word_pitch,
)
from edge_ser.metadata import EMOTIONS  # noqa: E402

SR = 16000


def voice(hz: float, seconds: float = 1.0) -> np.ndarray:
    """A buzz with five harmonics at ``hz``, as a voiced vowel is."""
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.2 / k * np.sin(2 * np.pi * k * hz * t) for k in range(1, 6)).astype(np.float32)


def test_a_words_pitch_is_the_median_f0_of_its_voiced_frames_in_semitones_and_none_without_voice():
    assert semitones(100.0) == 0.0 and abs(semitones(200.0) - 12.0) < 1e-9
    assert abs(word_pitch(voice(220.0), SR) - semitones(220.0)) < 0.2  # 13.65 semitones
    half = np.concatenate([voice(150.0, 0.7), voice(300.0, 0.3)])
    assert abs(word_pitch(half, SR) - semitones(150.0)) < 0.2  # the median, not the mean
    noise = (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32)
    assert np.isnan(word_pitch(noise, SR)) and np.isnan(word_pitch(np.zeros(SR, np.float32), SR))
    assert np.isnan(word_pitch(voice(200.0, 0.05), SR))  # shorter than one frame


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is an apt package of the project; make test installs it")
def test_the_wsola_shift_moves_a_voice_by_any_number_of_semitones_and_zero_keeps_it():
    from converter.conditions import wsola_pitch_shift

    x = voice(200.0, 2.0)
    for steps in (3.0, -4.5):
        moved = wsola_pitch_shift(x, SR, steps)
        assert moved.dtype == np.float32 and abs(moved.size - x.size) <= 2
        assert abs(word_pitch(moved, SR) - (semitones(200.0) + steps)) < 0.25, steps
    np.testing.assert_array_equal(wsola_pitch_shift(x, SR, 0.004), x)  # under half a cent: untouched


def test_a_corpus_says_a_speakers_gender_by_ravdess_number_or_a_manifest_column_and_never_guesses(tmp_path):
    actors = tmp_path / "ravdess"
    for actor in ("01", "02"):
        (actors / f"Actor_{actor}").mkdir(parents=True)
        (actors / f"Actor_{actor}" / f"03-01-01-01-01-01-{actor}.wav").write_bytes(b"")
    assert speaker_genders(actors) == {"01": "m", "02": "f"}
    manifest = tmp_path / "corpus" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text("path,label,speaker,gender\na.opus,sad,s1,F\nb.opus,sad,s1,female\nc.opus,sad,s2,Male\n"
                        "d.opus,sad,s3,M\ne.opus,sad,s3,F\nf.opus,sad,s4,\ng.opus,sad,s5,x\n")
    assert speaker_genders(manifest.parent) == {"s1": "f", "s2": "m"}  # s3 disagrees, s4 and s5 say nothing
    manifest.write_text("path,label,speaker\na.opus,sad,s1\n")
    assert speaker_genders(manifest.parent) == {} and speaker_genders(tmp_path / "nowhere") == {}


def test_normal_pitch_and_targets_come_from_normal_voices_only_per_gender():
    clips = [Item("n1", "neutral", "a", "c"), Item("c1", "calm", "a", "c"), Item("x1", "angry", "a", "c"),
             Item("n2", "neutral", "b", "c"), Item("n3", "neutral", "d", "c"), Item("u3", "neutral", "d", "c"),
             Item("x4", "angry", "e", "c")]
    pitch = {"n1": 4.0, "c1": 6.0, "x1": 20.0, "n2": 14.0, "n3": 2.0, "u3": float("nan"), "x4": 9.0}
    assert normal_pitch(clips, pitch, ("neutral", "calm")) == {"a": 5.0, "b": 14.0, "d": 2.0}  # e has no normal clip
    targets = training_targets(clips, pitch, {"a": "m", "b": "f", "d": "m", "e": "m"})
    assert targets == {"f": {"semitones": 14.0, "speakers": 1}, "m": {"semitones": 3.5, "speakers": 2}}
    words = [Item("w1", None, "s", "baved", "mid"), Item("w2", None, "s", "baved", "high")]
    assert normal_pitch(words, {"w1": 7.0, "w2": 12.0}, ("mid",)) == {"s": 7.0}  # an arousal level names it too


def test_the_oracle_moves_each_speaker_to_their_gender_target_and_each_control_as_far_in_a_drawn_direction():
    targets = {"f": {"semitones": 14.0, "speakers": 3}, "m": {"semitones": 4.0, "speakers": 3}}
    normals = {f"s{i}": float(i) for i in range(12)}
    genders = {f"s{i}": "f" if i % 2 else "m" for i in range(11)}  # s11 has no gender: not moved
    plan = shift_plan(normals, genders, targets, draws=3)
    assert list(plan) == ["oracle", "control 1", "control 2", "control 3"]
    assert plan["oracle"]["s1"] == 13.0 and plan["oracle"]["s4"] == 0.0 and plan["oracle"]["s6"] == -2.0
    assert all(plan[way]["s11"] == 0.0 for way in plan)
    moved = [s for s in normals if plan["oracle"][s]]
    for draw in range(3):
        control = plan[control_name(draw)]
        assert all(abs(control[s]) == abs(plan["oracle"][s]) for s in normals)
        assert {np.sign(control[s] * plan["oracle"][s]) for s in moved} == {-1.0, 1.0}  # both ways
        for s in moved:  # the direction is the speaker's own draw, whoever else is there
            assert (control[s] > 0) == draw_up(draw, s)
    assert plan["control 1"] != plan["control 2"]  # the draws differ
    many = [f"speaker-{i}" for i in range(400)]  # and are independent: no two agree or disagree throughout
    ups = np.array([[draw_up(d, s) for s in many] for d in range(8)])
    agreement = np.array([[np.mean(a == b) for b in ups] for a in ups])[~np.eye(8, dtype=bool)]
    assert 0.4 < agreement.min() and agreement.max() < 0.6 and 0.4 < ups.mean() < 0.6
    alone = shift_plan({"s3": 3.0}, genders, targets, draws=3)
    assert alone["control 2"]["s3"] == plan["control 2"]["s3"]
    assert shift_plan(normals, genders, targets, draws=3) == plan


def _answers(items, pitch, normals, rule, rng) -> np.ndarray:
    """One-hot probabilities: high arousal (angry) when ``rule`` says so, else neutral."""
    probs = np.zeros((len(items), len(EMOTIONS)))
    for k, it in enumerate(items):
        high = rule(pitch[it.path], normals[it.speaker], it.speaker) + rng.normal(0, 2.0) > 0
        probs[k, EMOTIONS.index("angry" if high else "neutral")] = 1.0
    return probs


def test_the_fit_tells_a_model_that_hears_absolute_pitch_from_one_that_hears_pitch_against_the_speaker():
    rng = np.random.default_rng(0)
    targets = {"f": {"semitones": 14.0, "speakers": 9}, "m": {"semitones": 4.0, "speakers": 9}}
    genders = {f"s{i}": "f" if i % 2 else "m" for i in range(60)}
    normals = {s: targets[g]["semitones"] + rng.normal(0, 3.0) for s, g in genders.items()}
    items, pitch = [], {}
    for s in genders:
        for k, level in enumerate(("low", "mid", "high") * 10):
            path = f"{s}-{k}"
            items.append(Item(path, None, s, "baved", level))
            pitch[path] = normals[s] + {"low": -2.0, "mid": 0.0, "high": 4.0}[level] + rng.normal(0, 1.5)
    absolute = _answers(items, pitch, normals, lambda p, n, s: p - targets[genders[s]]["semitones"] - 1.0, rng)
    relative = _answers(items, pitch, normals, lambda p, n, s: p - n - 1.0, rng)
    fit_abs = pitch_reading(items, absolute, pitch, normals, genders, targets)
    fit_rel = pitch_reading(items, relative, pitch, normals, genders, targets)
    assert fit_abs["words"] == len(items) and fit_abs["speakers"] == 60
    a, r = fit_abs["high"], fit_rel["high"]
    assert a["speaker_normal"] > 4.0
    assert abs(a["speaker_normal"] - a["word_against_speaker"]) < 0.35 * a["speaker_normal"]
    assert r["word_against_speaker"] > 4.0 and abs(r["speaker_normal"]) < 0.2 * r["word_against_speaker"]
    assert fit_rel["low"]["share"] == 0.0  # sad never answered
    # words without a pitch, and speakers without a normal pitch or a target, are left out
    pitch[items[0].path] = float("nan")
    fewer = pitch_reading(items, absolute, pitch, {s: v for s, v in normals.items() if s != "s1"}, genders, targets)
    assert fewer["words"] == len(items) - 1 - 30 and fewer["speakers"] == 59
    assert pitch_reading(items[:3], absolute[:3], pitch, normals, genders, targets) == {"words": 2, "speakers": 1}
