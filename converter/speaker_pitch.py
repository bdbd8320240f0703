"""A speaker's own pitch: does it move the answers, and would normalizing it help?

The voice shifts (:mod:`converter.conditions`) showed the members answering as if a voice's
absolute pitch were the emotion: a voice moved 2 semitones lower loses happy and calm, one moved
higher loses sad. The remedy the literature names is speaker normalization, judging a voice
against its speaker's own normal voice. On the device that would be a new mechanism (a running
baseline per room) and a retraining to match, so before building it this measures, on the
unseen language (BAVED: words at low, mid and high arousal, from speakers no recipe hears), with
one model file as the device runs it (:class:`edge_ser.classify.Classifier`):

* **how the answers follow pitch** (:func:`pitch_reading`): a least-squares fit of "answered a
  high-arousal emotion" (and "answered sad") on the word's true level, the speaker's gender, the
  speaker's normal pitch against their gender's in training, and the word's pitch against its
  speaker's normal one, each per semitone. A model that heard pitch against the speaker would
  give the speaker's normal pitch no weight; one that hears absolute pitch gives both the same;
* **what normalizing would give, at best** (:func:`shift_plan`): every word classified as
  recorded, then with its speaker's voice moved (sox's WSOLA ``pitch``, as the ``pitch+2-wsola``
  condition) so that the speaker's normal pitch becomes the training speakers' of the same
  gender (*oracle*: it knows each speaker's gender and which of their words are their normal
  voice, which no device knows), and moved as far in a random direction (*control*: what the
  shifter gives or costs by itself, drawn :data:`CONTROL_DRAWS` times, because which speakers go
  up and which down moves the score by itself). The oracle helps only as far as it beats the
  controls.

Definitions (:func:`word_pitch`, :func:`normal_pitch`, :func:`training_targets`):

* a word's pitch: the median F0 of its voiced frames (librosa's pYIN, 60-600 Hz), in semitones
  above 100 Hz;
* a BAVED speaker's normal pitch: the median over their words of mid arousal, which BAVED labels
  as the speaker's normal voice;
* the training speakers' normal pitch, per gender: the median over the speakers the model
  trained on (for the shipped model, every speaker of the corpora it names) of the median pitch
  of their neutral and calm clips. Only corpora that say a speaker's gender count
  (:func:`converter.corpora.speaker_genders`: RAVDESS by actor number, ASED by its manifest; nEMO
  says nothing).

A diagnosis, run now and then, not a training input; nothing is chosen on it. Word pitches are
kept in a small file in the feature cache (pYIN takes about a fifth of a second per second of
audio), keyed by each file's content.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from edge_ser.atomic_write import write_bytes_atomically
from edge_ser.metadata import EMOTIONS

from .audio_io import load_clip
from .cache import content_digest
from .conditions import wsola_pitch_shift
from .corpora import Item
from .unseen_arousal import AROUSAL_OF, emotion_row, headline_cells, score_arousal

#: The pitch tracker's search range, in Hz: below a low male voice, above a high child's.
PITCH_FLOOR_HZ = 60.0
PITCH_CEILING_HZ = 600.0
#: Semitones are counted from this frequency.
REFERENCE_HZ = 100.0
#: The classes whose clips are a training speaker's normal voice.
NORMAL_CLASSES = ("neutral", "calm")
#: How many times the control's directions are drawn (seeds 0, 1, ...).
CONTROL_DRAWS = 5
#: Which answers the fit reads: an emotion of high arousal, and sad (the one low one).
ANSWERS = ("high", "low")
_TRACKER = f"pyin|{PITCH_FLOOR_HZ:g}|{PITCH_CEILING_HZ:g}|{REFERENCE_HZ:g}|16000|1024|160"


def semitones(hz: float) -> float:
    """``hz`` in semitones above :data:`REFERENCE_HZ`."""
    return 12.0 * math.log2(hz / REFERENCE_HZ)


def word_pitch(signal: np.ndarray, sample_rate: int = 16000) -> float:
    """Median F0 of the voiced frames of ``signal``, in semitones (NaN when no frame is voiced)."""
    import librosa  # workstation only

    if len(signal) < 1024:
        return float("nan")
    f0, voiced, _ = librosa.pyin(np.asarray(signal, dtype=np.float32), fmin=PITCH_FLOOR_HZ, fmax=PITCH_CEILING_HZ,
                                 sr=sample_rate, frame_length=1024, hop_length=160)
    heard = f0[voiced & np.isfinite(f0)]
    return semitones(float(np.median(heard))) if heard.size else float("nan")


def _pitch_of_file(path: str) -> float:
    return word_pitch(load_clip(path, 16000), 16000)


def pitches(paths: Sequence[str], cache_dir: Optional[Path], workers: Optional[int] = None) -> Dict[str, float]:
    """:func:`word_pitch` of each file, from ``cache_dir/pitch.json`` where known (by content), the
    rest computed on ``workers`` processes and added to it."""
    store = Path(cache_dir) / "pitch.json" if cache_dir else None
    known: Dict[str, float] = {}
    if store is not None and store.is_file():
        known = json.loads(store.read_text()).get(_TRACKER, {})
    keys = {path: content_digest(path) for path in paths}
    missing = sorted({path for path, key in keys.items() if key not in known})
    if missing:
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for path, value in zip(missing, pool.map(_pitch_of_file, missing, chunksize=8)):
                known[keys[path]] = value
        if store is not None:
            store.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomically(store, json.dumps({_TRACKER: known}, sort_keys=True) + "\n")
    return {path: float(known[key]) for path, key in keys.items()}


def normal_pitch(items: Sequence[Item], pitch: Mapping[str, float], normal: Sequence[str]) -> Dict[str, float]:
    """Per speaker, the median pitch of their clips whose label or arousal level is in ``normal``
    (speakers with no such clip, or none voiced, are left out)."""
    values: Dict[str, List[float]] = {}
    for it in items:
        if (it.label or it.arousal) in normal and np.isfinite(pitch[it.path]):
            values.setdefault(it.speaker, []).append(pitch[it.path])
    return {speaker: float(np.median(v)) for speaker, v in sorted(values.items())}


def training_targets(training: Sequence[Item], pitch: Mapping[str, float], genders: Mapping[str, str]
                     ) -> Dict[str, Dict[str, float]]:
    """Per gender, the median over training speakers of their normal pitch, and how many speakers."""
    normals = normal_pitch(training, pitch, NORMAL_CLASSES)
    by_gender: Dict[str, List[float]] = {}
    for speaker, value in normals.items():
        if speaker in genders:
            by_gender.setdefault(genders[speaker], []).append(value)
    return {g: {"semitones": float(np.median(v)), "speakers": len(v)} for g, v in sorted(by_gender.items())}


def control_name(draw: int) -> str:
    """The way of hearing of control draw ``draw`` (0, 1, ...)."""
    return f"control {draw + 1}"


def draw_up(draw: int, speaker: str) -> bool:
    """Whether control draw ``draw`` moves ``speaker`` up: a coin seeded by both. (Not the parity of
    a CRC of them: a CRC is linear, so two draws' parities can agree for every speaker.)"""
    return bool(np.random.default_rng([draw, zlib.crc32(speaker.encode("utf-8"))]).random() < 0.5)


def shift_plan(normals: Mapping[str, float], genders: Mapping[str, str], targets: Mapping[str, Mapping[str, float]],
               draws: int = CONTROL_DRAWS) -> Dict[str, Dict[str, float]]:
    """Per speaker, the semitones of each way of hearing: ``oracle`` (their normal pitch moved to
    their gender's target) and each control (:func:`control_name`: as far, in a direction drawn
    from the draw's number and the speaker's name, so it does not depend on who else is there).
    A speaker without a normal pitch, a gender or a target for it is not moved."""
    plan: Dict[str, Dict[str, float]] = {"oracle": {}, **{control_name(d): {} for d in range(draws)}}
    for speaker in sorted(normals):
        target = targets.get(genders.get(speaker, ""))
        shift = float(target["semitones"] - normals[speaker]) if target else 0.0
        plan["oracle"][speaker] = shift
        for draw in range(draws):
            up = draw_up(draw, speaker)
            plan[control_name(draw)][speaker] = abs(shift) if up else -abs(shift)
    return plan


def pitch_reading(items: Sequence[Item], probs: np.ndarray, pitch: Mapping[str, float],
                  normals: Mapping[str, float], genders: Mapping[str, str],
                  targets: Mapping[str, Mapping[str, float]]) -> Dict[str, object]:
    """How the answers follow pitch: per answer of :data:`ANSWERS`, the least-squares weights (in
    points of that answer per semitone) of the speaker's normal pitch against their gender's target
    and of the word's pitch against its speaker's normal, beside the word's true level and the
    speaker's gender. Words without a pitch, or of speakers without a normal pitch or a target,
    are left out."""
    rows, answered, speakers = [], [], set()
    top = [AROUSAL_OF[EMOTIONS[i]] for i in np.asarray(probs).argmax(axis=1)]
    for it, level in zip(items, top):
        gender = genders.get(it.speaker)
        if it.speaker not in normals or gender not in targets or not np.isfinite(pitch[it.path]):
            continue
        normal = normals[it.speaker]
        rows.append([1.0, it.arousal == "mid", it.arousal == "high", gender == "f",
                     normal - targets[gender]["semitones"], pitch[it.path] - normal])
        answered.append(level)
        speakers.add(it.speaker)
    out: Dict[str, object] = {"words": len(rows), "speakers": len(speakers)}
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), 6)
    if np.linalg.matrix_rank(x) < x.shape[1]:  # too few words, or no spread to fit: no weights
        return out
    for level in ANSWERS:
        y = np.array([a == level for a in answered], dtype=np.float64)
        weights = np.linalg.lstsq(x, y, rcond=None)[0]
        out[level] = {"speaker_normal": 100 * float(weights[4]), "word_against_speaker": 100 * float(weights[5]),
                      "female": 100 * float(weights[3]), "share": 100 * float(y.mean())}
    return out


def measure(classifier, words: Sequence[Item], training: Sequence[Item], genders: Mapping[str, str],
            cache_dir: Optional[Path]) -> Dict[str, object]:
    """The fit and the ways of hearing (as recorded, oracle, each control) of the unseen-language
    ``words``, the targets from the ``training`` clips; ``genders`` covers both."""
    rate = classifier.metadata.feature_config.sample_rate
    normal_training = [it for it in training if it.label in NORMAL_CLASSES and it.speaker in genders]
    pitch = pitches([it.path for it in list(words) + normal_training], cache_dir)
    targets = training_targets(normal_training, pitch, genders)
    normals = normal_pitch(words, pitch, ("mid",))
    plan = shift_plan(normals, genders, targets)
    probs: Dict[str, List[List[float]]] = {"as recorded": [], **{way: [] for way in plan}}
    for item in words:
        signal = load_clip(item.path, rate)
        probs["as recorded"].append(emotion_row(classifier.classify_signal(signal, rate)))
        for way in plan:
            moved = wsola_pitch_shift(signal, rate, plan[way].get(item.speaker, 0.0))
            probs[way].append(emotion_row(classifier.classify_signal(moved, rate)))
    moved_speakers = [s for s, v in plan["oracle"].items() if v != 0.0]
    moved = [k for k, it in enumerate(words) if it.speaker in moved_speakers]
    return {
        "words": len(words), "speakers": len({it.speaker for it in words}),
        "unvoiced_words": int(sum(not np.isfinite(pitch[it.path]) for it in words)),
        "targets": targets,
        "speaker_normal": {g: float(np.median([v for s, v in normals.items() if genders.get(s) == g]))
                           for g in sorted({genders[s] for s in normals if s in genders})},
        "moved_speakers": len(moved_speakers),
        "mean_shift": float(np.mean([abs(plan["oracle"][s]) for s in moved_speakers])) if moved_speakers else 0.0,
        "shifts": plan,
        "reading": pitch_reading(words, np.array(probs["as recorded"]), pitch, normals, genders, targets),
        "scores": {way: score_arousal(np.array(p), words) for way, p in probs.items()},
        "moved_scores": {way: score_arousal(np.array(p)[moved], [words[k] for k in moved])
                         for way, p in probs.items()} if moved else {},
    }


def markdown(result: Dict[str, object]) -> str:
    """The results as two tables: how the answers follow pitch, and the ways of hearing."""
    targets = ", ".join(f"{'female' if g == 'f' else 'male'} {t['semitones']:.1f} semitones above "
                        f"{REFERENCE_HZ:g} Hz ({t['speakers']} speakers)" for g, t in result["targets"].items())
    lines = [f"The unseen language (BAVED arousal, answered reading), {result['words']} words of "
             f"{result['speakers']} speakers, model `{result['model']}` on "
             f"{result.get('backend', 'its default interpreter')}. "
             "Training speakers' normal pitch "
             f"(median of their neutral and calm clips): {targets}. `python -m converter speaker-pitch`.", ""]
    reading = result["reading"]
    if "high" in reading:
        lines += [f"How the answers follow pitch ({reading['words']} words; least squares beside the word's "
                  "true level and the speaker's gender): points of each answer per semitone.", "",
                  "| answered | share | per semitone of the speaker's normal voice | per semitone of the word "
                  "against its speaker's normal | female speaker |", "|---|---|---|---|---|"]
        for level, name in (("high", "a high-arousal emotion"), ("low", "sad")):
            r = reading[level]
            lines.append(f"| {name} | {r['share']:.1f} % | {r['speaker_normal']:+.2f} | "
                         f"{r['word_against_speaker']:+.2f} | {r['female']:+.1f} |")
        lines.append("")
    controls = [way for way in result["scores"] if way.startswith("control")]
    lines += [f"Each speaker's voice moved (sox WSOLA `pitch`, tempo kept) so that their normal pitch (median of "
              f"their mid-arousal words) is their gender's in training (oracle), or as far in a random direction "
              f"(control, {len(controls)} draws of the directions): {result['moved_speakers']} speakers moved, "
              f"{result['mean_shift']:.1f} semitones on average. A speaker without a mid-arousal word or a gender "
              "is heard as recorded every way.", "",
              "| words heard | of | UA | low | mid | high | normal voices answered angry |",
              "|---|---|---|---|---|---|---|"]
    for key, which in (("scores", "every speaker"), ("moved_scores", "the speakers moved")):
        scores = result.get(key) or {}
        if not scores:
            continue
        clips = next(iter(scores.values()))["clips"]
        for way in ("as recorded", "oracle"):
            lines.append(f"| {way} | {which} ({clips} words) | " + " | ".join(
                f"{100 * v:.1f} %" for v in headline_cells(scores[way])) + " |")
        if controls:
            draws = np.array([headline_cells(scores[way]) for way in controls])
            ua = f"{100 * draws[:, 0].mean():.1f} % ({100 * draws[:, 0].min():.1f}-{100 * draws[:, 0].max():.1f})"
            lines.append(f"| control, mean of {len(controls)} (UA lowest-highest) | {which} ({clips} words) | {ua} | "
                         + " | ".join(f"{100 * v:.1f} %" for v in draws[:, 1:].mean(axis=0)) + " |")
    return "\n".join(lines) + "\n"
