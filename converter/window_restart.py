"""Continuous mode and PCEN: what restarting the smoother in every window changes.

The daemon's continuous mode classifies the last ``window`` seconds every ``hop``, each
window on its own, so a PCEN smoother starts again at each window's first frame (from that
frame's energy, :func:`edge_ser.features._pcen`). Training cut its windows from clips whose
smoother ran from the clip's start, and a window in the middle of a conversation has no
such start. A log-mel frame depends only on the samples under it, so only the PCEN columns
can differ.

This builds streams from one fold's unseen RAVDESS actors (each actor's clips one after
another, in a seeded order, clean or each clip through the held-out far-field condition),
cuts them into the daemon's windows, and classifies every window twice with the same int8
model: features computed on the window alone (*restart*, what the daemon does), and frames
cut from the whole stream's frame stage (*carried*, the smoother running since the stream
began), both then normalized over the window as the daemon does. It reports how often the
two answers agree and the UA of each, a window labelled by the clip under its centre.

A diagnosis run now and then, not a training input: nothing is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import numpy as np

from edge_ser.features import FeatureConfig, frame_features, num_frames, utterance_stage

from .audio_io import load_clip
from .corpora import Item
from .protocol import clip_probabilities
from .rooms import RoomBank, clip_seed, far_field
from .train import confusion, ua_wa, window_outputs

#: The daemon's continuous-mode defaults (edge_ser/daemon/config.py, ``[continuous]``).
DAEMON_WINDOW_S = 3.0
DAEMON_HOP_S = 1.0
#: Far-field draws here are not the protocol's (seeds 0-2) nor farfield_parts' (101).
STREAM_SEED = 202


@dataclass
class Stream:
    """One actor's clips end to end, and which clip each sample belongs to."""

    speaker: str
    signal: np.ndarray
    clip_ends: np.ndarray  # cumulative sample count after each clip
    labels: np.ndarray  # EMOTIONS index of each clip

    def label_at(self, sample: int) -> int:
        return int(self.labels[int(np.searchsorted(self.clip_ends, sample, side="right"))])


def build_stream(items: Sequence[Item], config: FeatureConfig, farfield: RoomBank | None,
                 seed: int = STREAM_SEED) -> Stream:
    """``items`` (one speaker's clips) shuffled by ``seed`` and joined; far-field per clip if a bank is given."""
    from edge_ser.metadata import EMOTIONS

    order = np.random.default_rng(seed).permutation(len(items))
    parts, labels = [], []
    for i in order:
        signal = load_clip(items[i].path, config.sample_rate)
        if farfield is not None:
            signal = far_field(signal, farfield, np.random.default_rng(clip_seed(items[i].path, seed)))
        parts.append(signal.astype(np.float32))
        labels.append(EMOTIONS.index(items[i].label))
    return Stream(items[0].speaker, np.concatenate(parts), np.cumsum([p.size for p in parts]),
                  np.asarray(labels))


def window_features(stream: Stream, config: FeatureConfig, window_s: float = DAEMON_WINDOW_S,
                    hop_s: float = DAEMON_HOP_S):
    """(restart, carried, labels): per daemon window, its features both ways and its centre's label.

    The hop must be a whole number of frame hops, so a window's frames are exactly a run of
    the stream's frames; the log-mel block is then equal both ways (checked).
    """
    window, hop = int(round(window_s * config.sample_rate)), int(round(hop_s * config.sample_rate))
    if hop % config.hop_length or config.center:
        raise ValueError("the hop must be a multiple of the frame hop, and frames not centred")
    whole = frame_features(stream.signal, config)
    n = num_frames(window, config)
    restart, carried, labels = [], [], []
    for start in range(0, stream.signal.size - window + 1, hop):
        alone = frame_features(stream.signal[start:start + window], config)
        cut = whole[start // config.hop_length: start // config.hop_length + n]
        if config.n_blocks > 1:
            db = config.block_columns()[0]
            np.testing.assert_allclose(alone[:, db], cut[:, db], rtol=0, atol=1e-4)
        restart.append(utterance_stage(alone, config))
        carried.append(utterance_stage(cut, config))
        labels.append(stream.label_at(start + window // 2))
    return restart, carried, np.asarray(labels)


def answers(predict: Callable[[np.ndarray], np.ndarray], feats: List[np.ndarray], window_frames: int,
            hop_frames: int, blocks: int) -> np.ndarray:
    """Top class of each daemon window: the mean softmax of its model windows, as the device computes it."""
    return clip_probabilities(window_outputs(predict, feats, window_frames, hop_frames, blocks), logits=True).argmax(1)


def compare(labels: np.ndarray, restart: np.ndarray, carried: np.ndarray) -> Dict[str, object]:
    """Agreement of the two ways' answers and the UA of each."""
    return {"windows": int(labels.size), "agreement": float(np.mean(restart == carried)),
            "restart_ua": ua_wa(confusion(labels, restart))[0], "carried_ua": ua_wa(confusion(labels, carried))[0]}


def measure_run(predict: Callable[[np.ndarray], np.ndarray], test: Sequence[Item], config: FeatureConfig,
                bank: RoomBank, window_frames: int, hop_frames: int) -> Dict[str, Dict[str, object]]:
    """Both ways on one run's unseen actors, clean and through ``bank``'s rooms and noise.

    One actor's stream at a time: its windows' features are classified and dropped before
    the next stream is built, so memory holds one stream, not the run's every window.
    """
    rows = {}
    for condition in ("clean", "farfield"):
        restart, carried, labels = [], [], []
        for speaker in sorted({it.speaker for it in test}):
            stream = build_stream([it for it in test if it.speaker == speaker], config,
                                  bank if condition == "farfield" else None)
            alone, cut, y = window_features(stream, config)
            restart.append(answers(predict, alone, window_frames, hop_frames, config.n_blocks))
            carried.append(answers(predict, cut, window_frames, hop_frames, config.n_blocks))
            labels.append(y)
        rows[condition] = compare(np.concatenate(labels), np.concatenate(restart), np.concatenate(carried))
    return rows


def markdown(result: Dict[str, object]) -> str:
    """The results as a table: per run and condition, agreement and the UA both ways, then the means."""
    lines = [f"Continuous mode ({result['window_s']:g} s windows every {result['hop_s']:g} s) on "
             f"`{result['features']}` models: PCEN restarted in each window (the daemon) against carried along "
             "the stream. Streams: each unseen RAVDESS actor's clips end to end; a window is labelled by the clip "
             "under its centre. `python -m converter window-restart`.", "",
             "| run | condition | windows | agreement | UA restarted | UA carried |", "|---|---|---|---|---|---|"]
    sums: Dict[str, List[float]] = {}
    for run, rows in result["runs"].items():
        for condition in ("clean", "farfield"):
            r = rows[condition]
            lines.append(f"| {run} | {condition} | {r['windows']} | {100 * r['agreement']:.1f} % | "
                         f"{100 * r['restart_ua']:.1f} % | {100 * r['carried_ua']:.1f} % |")
            sums.setdefault(condition, []).append(r)
    for condition, rows in sums.items():
        mean = {k: 100 * float(np.mean([r[k] for r in rows])) for k in ("agreement", "restart_ua", "carried_ua")}
        lines.append(f"| mean | {condition} | | {mean['agreement']:.1f} % | {mean['restart_ua']:.1f} % | "
                     f"{mean['carried_ua']:.1f} % |")
    return "\n".join(lines) + "\n"
