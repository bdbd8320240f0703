"""Corpus readers: turn a folder of labelled speech into a list of :class:`Item`.

Three layouts are understood, so a user can train on their own recordings without
renaming anything:

* **RAVDESS**: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``; the emotion and the actor come
  from the file-name code.
* **Folder per label**: ``ROOT/<label>/*.wav`` (optionally ``ROOT/<label>/<speaker>/*.wav``);
  the speaker is the sub-folder, or else the file name up to the first ``_`` or ``-``.
* **CSV manifest**: ``path,label[,speaker][,arousal]`` with a header line; relative paths
  are taken from the manifest's folder. A folder holding ``manifest.csv`` is read through
  it, and the corpus is named after the folder (``../shared/datasets/nemo`` -> ``nemo``).
  A row may leave ``label`` empty when it carries an ``arousal`` level instead (BAVED):
  such clips train an arousal target only, never an emotion.

Several corpora are read together with :func:`read_corpora`; each keeps its own name,
and :func:`corpus_classes` says which emotions a corpus has, because a class a corpus
lacks is *absent*, not *false*: a Polish "neutral" says nothing about whether calm exists.

Labels are mapped to the 8 classes of :data:`edge_ser.metadata.EMOTIONS`, accepting
common synonyms; anything else is a clear error (a typo must not become a class).
Speaker identity matters: evaluation is speaker-independent, so whole speakers are
held out, never single clips.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from edge_ser.errors import EdgeSerError
from edge_ser.metadata import EMOTIONS

__all__ = [
    "Item", "CorpusError", "normalize_label", "read_ravdess", "read_folders", "read_manifest",
    "read_corpus", "read_corpora", "corpus_classes", "default_data_dir", "datasets_dir", "EMOBOX_FOLDS",
    "cv_folds", "ravdess_code", "AROUSAL_LEVELS", "speaker_genders",
]

AUDIO_SUFFIXES = (".wav", ".wave")
#: Arousal levels of corpora labelled by arousal only (BAVED's 0/1/2).
AROUSAL_LEVELS: Tuple[str, ...] = ("low", "mid", "high")
_AROUSAL_SYNONYMS = {"low": "low", "0": "low", "mid": "mid", "medium": "mid", "1": "mid", "high": "high", "2": "high"}

#: Speaker-independent folds of EmoBox for RAVDESS (actor numbers).
EMOBOX_FOLDS: Tuple[Tuple[str, ...], ...] = (
    ("01", "11", "20", "21"),
    ("04", "10", "12", "14"),
    ("08", "09", "19", "23"),
    ("03", "05", "07", "24"),
    ("02", "15", "16", "18"),
    ("06", "13", "17", "22"),
)

_SYNONYMS: Dict[str, str] = {
    "neu": "neutral", "neutral": "neutral", "n": "neutral",
    "calm": "calm", "cal": "calm",
    "happy": "happy", "hap": "happy", "happiness": "happy", "joy": "happy", "h": "happy",
    "sad": "sad", "sadness": "sad", "s": "sad",
    "angry": "angry", "ang": "angry", "anger": "angry", "a": "angry",
    "fearful": "fearful", "fear": "fearful", "fea": "fearful", "afraid": "fearful", "f": "fearful",
    "disgust": "disgust", "dis": "disgust", "disgusted": "disgust", "d": "disgust",
    "surprised": "surprised", "surprise": "surprised", "sur": "surprised", "su": "surprised",
    "ps": "surprised",  # TESS's "pleasant surprise"
}


class CorpusError(EdgeSerError):
    """A corpus folder or manifest cannot be read as labelled speech."""


@dataclass(frozen=True)
class Item:
    """One labelled clip: ``label`` is one of :data:`EMOTIONS`, or None for an arousal-only clip."""

    path: str
    label: Optional[str]
    speaker: str
    corpus: str
    arousal: Optional[str] = None

    @property
    def label_index(self) -> int:
        """Index into :data:`EMOTIONS`, or -1 when the clip has no emotion label."""
        return EMOTIONS.index(self.label) if self.label is not None else -1


def normalize_label(name: str, source: str = "") -> str:
    """Map a label spelling to one of the 8 classes, or raise :class:`CorpusError`."""
    key = str(name).strip().lower().replace(" ", "_")
    key = {"pleasant_surprise": "surprised", "pleasant_surprised": "surprised"}.get(key, key)
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    where = f"{source}: " if source else ""
    raise CorpusError(
        f"{where}unknown emotion label {name!r}; expected one of {', '.join(EMOTIONS)} "
        "(or a common synonym such as fear, surprise, neu)"
    )


def datasets_dir() -> Path:
    """``$EDGE_SER_DATASETS``, else ``../shared/datasets`` beside the repository."""
    env = os.environ.get("EDGE_SER_DATASETS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"


def default_data_dir() -> Path:
    """``$EDGE_SER_DATA``, else ``../shared/datasets/ravdess`` beside the repository."""
    env = os.environ.get("EDGE_SER_DATA")
    if env:
        return Path(env)
    return datasets_dir() / "ravdess"


# -- RAVDESS -------------------------------------------------------------------------------

_RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def ravdess_code(path: str) -> Optional[Dict[str, str]]:
    """The fields of a RAVDESS file name, or None if the name is not one."""
    match = _RAVDESS_NAME.match(Path(path).stem)
    if not match:
        return None
    keys = ("modality", "channel", "emotion", "intensity", "statement", "repetition", "actor")
    return dict(zip(keys, match.groups()))


def read_ravdess(root: "str | os.PathLike[str]") -> List[Item]:
    """All speech clips under ``root/Actor_XX/`` with their emotion and actor."""
    root = Path(root)
    items: List[Item] = []
    for path in sorted(root.glob("Actor_*/*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        code = ravdess_code(path.name)
        if code is None:
            raise CorpusError(f"{path}: not a RAVDESS file name (MM-VV-EE-II-SS-RR-AA.wav)")
        emotion = int(code["emotion"])
        if not 1 <= emotion <= len(EMOTIONS):
            raise CorpusError(f"{path}: emotion code {code['emotion']} is not 01..08")
        if code["channel"] != "01":
            continue  # song clips (vocal channel 02) are a different task
        items.append(Item(str(path), EMOTIONS[emotion - 1], code["actor"], "ravdess"))
    if not items:
        raise CorpusError(f"{root}: no RAVDESS clips found (expected Actor_XX/*.wav)")
    return items


# -- folder per label ----------------------------------------------------------------------


def _speaker_from_name(path: Path) -> str:
    return re.split(r"[_\-]", path.stem, maxsplit=1)[0] or path.stem


def read_folders(root: "str | os.PathLike[str]", corpus: Optional[str] = None) -> List[Item]:
    """``root/<label>/[<speaker>/]*.wav``; every label folder name must be a known emotion."""
    root = Path(root)
    corpus = corpus or root.name
    items: List[Item] = []
    label_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for label_dir in label_dirs:
        label = normalize_label(label_dir.name, source=str(label_dir))
        for path in sorted(label_dir.rglob("*")):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            rel = path.relative_to(label_dir)
            speaker = rel.parts[0] if len(rel.parts) > 1 else _speaker_from_name(path)
            items.append(Item(str(path), label, speaker, corpus))
    if not items:
        raise CorpusError(f"{root}: no .wav files in label folders (expected ROOT/<label>/*.wav)")
    return items


# -- CSV manifest --------------------------------------------------------------------------


def read_manifest(manifest: "str | os.PathLike[str]", corpus: Optional[str] = None) -> List[Item]:
    """A CSV with a header naming ``path`` and ``label`` (``speaker``, ``arousal`` optional).

    Paths may be relative to the CSV. The corpus is named ``corpus``, else after the
    folder for a file called ``manifest.csv``, else after the file. An empty label is
    allowed only beside an arousal level (the clip then trains arousal alone).
    """
    manifest = Path(manifest)
    base = manifest.parent
    corpus = corpus or (base.resolve().name if manifest.name.lower() == "manifest.csv" else manifest.stem)
    try:
        with open(manifest, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise CorpusError(f"{manifest}: cannot read manifest ({exc.strerror or exc})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise CorpusError(f"{manifest}: empty manifest")
    header = [c.strip().lower() for c in rows[0]]
    if "path" not in header or "label" not in header:
        raise CorpusError(f"{manifest}: the first line must be a header naming 'path' and 'label' columns")
    i_path, i_label = header.index("path"), header.index("label")
    i_speaker = header.index("speaker") if "speaker" in header else None
    i_arousal = header.index("arousal") if "arousal" in header else None
    items: List[Item] = []
    for line_no, row in enumerate(rows[1:], start=2):
        where = f"{manifest}:{line_no}"
        if len(row) <= max(i_path, i_label):
            raise CorpusError(f"{where}: expected columns {','.join(header)}, got {row}")
        path = Path(row[i_path].strip())
        if not path.is_absolute():
            path = base / path
        if not path.is_file():
            raise CorpusError(f"{where}: audio file {path} does not exist")
        arousal = _cell(row, i_arousal)
        if arousal:
            if arousal.lower() not in _AROUSAL_SYNONYMS:
                raise CorpusError(f"{where}: unknown arousal level {arousal!r}; expected one of "
                                  f"{', '.join(AROUSAL_LEVELS)} (or 0/1/2)")
            arousal = _AROUSAL_SYNONYMS[arousal.lower()]
        raw_label = row[i_label].strip()
        if not raw_label and not arousal:
            raise CorpusError(f"{where}: empty label (a clip needs an emotion label or an arousal level)")
        label = normalize_label(raw_label, source=where) if raw_label else None
        speaker = _cell(row, i_speaker)
        items.append(Item(str(path), label, speaker or _speaker_from_name(path), corpus, arousal or None))
    if not items:
        raise CorpusError(f"{manifest}: no rows after the header")
    return items


def _cell(row: Sequence[str], index: Optional[int]) -> str:
    return row[index].strip() if index is not None and len(row) > index else ""


def read_corpus(location: "str | os.PathLike[str]") -> List[Item]:
    """Pick the reader from what is at ``location`` (a .csv, a RAVDESS tree, or label folders)."""
    location = Path(location)
    if location.is_file():
        if location.suffix.lower() == ".csv":
            return read_manifest(location)
        raise CorpusError(f"{location}: a corpus is a folder or a .csv manifest")
    if not location.is_dir():
        raise CorpusError(
            f"{location}: corpus not found (pass --data DIR or set EDGE_SER_DATA)"
        )
    if (location / "manifest.csv").is_file():
        return read_manifest(location / "manifest.csv")
    if any(location.glob("Actor_*")):
        return read_ravdess(location)
    return read_folders(location)


def read_corpora(locations: Sequence["str | os.PathLike[str]"]) -> List[Item]:
    """Several corpora in one list; two locations may not yield the same corpus name."""
    items: List[Item] = []
    seen: Dict[str, str] = {}
    for location in locations:
        part = read_corpus(location)
        for name in sorted({it.corpus for it in part}):
            if name in seen:
                raise CorpusError(f"{location}: corpus name {name!r} is also the name of {seen[name]}")
            seen[name] = str(location)
        items += part
    return items


def speaker_genders(location: "str | os.PathLike[str]") -> Dict[str, str]:
    """``{speaker: "f" or "m"}`` where the corpus says: RAVDESS by its actor number (odd actors are
    male, even ones female, as the corpus documents), a manifest by its ``gender`` column (the
    first letter of the cell). Speakers the corpus says nothing about, or whose rows disagree,
    are left out; a folder-per-label corpus says nothing."""
    location = Path(location)
    manifest = location if location.is_file() else location / "manifest.csv"
    if not manifest.is_file():
        if location.is_dir() and any(location.glob("Actor_*")):
            return {it.speaker: "m" if int(it.speaker) % 2 else "f" for it in read_ravdess(location)}
        return {}
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if "gender" not in header:
        return {}
    i_gender = header.index("gender")
    i_speaker = header.index("speaker") if "speaker" in header else None
    i_path = header.index("path") if "path" in header else None
    seen: Dict[str, set] = {}
    for row in rows[1:]:
        speaker = _cell(row, i_speaker) or (_speaker_from_name(Path(_cell(row, i_path))) if i_path is not None else "")
        gender = _cell(row, i_gender)[:1].lower()
        if speaker and gender in ("f", "m"):
            seen.setdefault(speaker, set()).add(gender)
    return {speaker: genders.pop() for speaker, genders in seen.items() if len(genders) == 1}


def corpus_classes(items: Iterable[Item]) -> Dict[str, Tuple[str, ...]]:
    """``{corpus: emotions it has}`` in :data:`EMOTIONS` order (arousal-only corpora: empty)."""
    found: Dict[str, set] = {}
    for it in items:
        labels = found.setdefault(it.corpus, set())
        if it.label is not None:
            labels.add(it.label)
    return {name: tuple(e for e in EMOTIONS if e in labels) for name, labels in sorted(found.items())}


def cv_folds(items: Sequence[Item], folds: Iterable[Sequence[str]] = EMOBOX_FOLDS) -> List[Tuple[int, List[str]]]:
    """The folds whose test speakers are present: ``[(fold_number, present_speakers)]``.

    A fold is kept if at least one of its speakers is in ``items``; its absent speakers
    are simply not evaluated (RAVDESS here lacks the actors of EmoBox fold 6).
    """
    present = {it.speaker for it in items}
    out = []
    for number, speakers in enumerate(folds, start=1):
        here = [s for s in speakers if s in present]
        if here:
            out.append((number, here))
    return out
