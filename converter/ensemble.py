"""Small ensembles: several trained networks averaged inside one exported graph.

Why: two networks trained by different recipes (different widths, different draws) may
make partly different mistakes, and averaging their logits is the cheapest variance
reduction there is (whether it pays is measured in ``models/results/protocol.md``: the
rooms-pair rows). It costs the device nothing but multiply-adds: the members become branches of a
single Keras model (one input, one output), so the exported file is still one full-int8
TFLite graph that the device runs with one ``invoke`` per window, and nothing on the
device knows it is an ensemble. Members may hear different feature presets (log-mel and
PCEN fail differently in rooms): the device then computes one multi-block config, both
views side by side from one mel spectrogram, and each member reads its own block.

Logits, not probabilities, are averaged: the masked multi-corpus recipes output logits
(the device applies the softmax in float), and the mean of logits is the geometric mean of
the members' probabilities, which keeps one over-confident member from swamping the other.
A recipe may weight its members (``converter.protocol.ENSEMBLE_WEIGHTS``): a weighted mean of
logits, the weights chosen on the development split like any other recipe choice.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

#: Name of the averaging layer (the ensemble's output).
OUTPUT_LAYER = "logits"


def member_views(ensemble_config, member_configs: Sequence[object]) -> Optional[list]:
    """Which columns of the ensemble's features each member hears, or None when all hear all.

    Members that hear the same features share the ensemble's input. Members that hear
    different presets (log-mel and PCEN) each get the blocks of a multi-block config
    (:meth:`edge_ser.features.FeatureConfig.blocks`) their own config is made of: one block
    for a log-mel or PCEN member, a run of neighbouring blocks for a member that hears
    several views itself (``edge-db-pcen`` beside ``edge``).
    """
    if all(c == ensemble_config for c in member_configs):
        return None
    blocks, columns = ensemble_config.blocks(), ensemble_config.block_columns()
    views = []
    for config in member_configs:
        mine = config.blocks()
        first = next((i for i in range(len(blocks) - len(mine) + 1) if blocks[i:i + len(mine)] == mine), None)
        if first is None:
            raise ValueError(f"an ensemble member hears {config.kind} features ({config.hash()}), not a block "
                             f"or a run of blocks of the ensemble's {ensemble_config.kind} ({ensemble_config.hash()})")
        views.append((columns[first].start, columns[first + len(mine) - 1].stop))
    return views


def average_logits(members: Sequence[object], name: str = "edge_ser_ensemble",
                   views: Optional[Sequence[Tuple[int, int]]] = None,
                   weights: Optional[Sequence[float]] = None):
    """One Keras model whose output is the mean of ``members``' outputs on the same input.

    Every member must map its input to the same output shape (logits). Each is wrapped
    under its own name (``member0``, ``member1``, ...): members trained by the same code
    carry the same layer names, which one model could not hold side by side.

    ``views`` (from :func:`member_views`) gives each member a range of feature columns:
    the ensemble's input is then as wide as the ranges reach, and a crop (a strided slice
    in the int8 graph, no arithmetic) hands each member its block.

    ``weights`` (positive, summing to one) makes it a weighted mean: each branch is scaled by
    its weight and the branches are added (the converter folds the constant scale into the
    member's last layer, so the int8 graph gains an ADD, not a MUL). Equal
    weights, or none, keep the plain mean, so an equal-weight ensemble's graph is unchanged.
    """
    import keras
    from keras import layers

    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    if len({tuple(m.output_shape[1:]) for m in members}) != 1:
        raise ValueError(f"ensemble members disagree on output shapes: {[m.output_shape for m in members]}")
    first = members[0]
    if views is None:
        if len({tuple(m.input_shape[1:]) for m in members}) != 1:
            raise ValueError(f"ensemble members disagree on input shapes: {[m.input_shape for m in members]}")
        inputs = keras.Input(shape=first.input_shape[1:], name="features")
        heard = [inputs] * len(members)
    else:
        if len(views) != len(members):
            raise ValueError(f"{len(views)} views for {len(members)} members")
        frames, _, depth = first.input_shape[1:]
        width = max(stop for _, stop in views)
        for m, (start, stop) in zip(members, views):
            if tuple(m.input_shape[1:]) != (frames, stop - start, depth):
                raise ValueError(f"a member takes {m.input_shape[1:]}, its view is columns {start}..{stop}")
        inputs = keras.Input(shape=(frames, width, depth), name="features")
        heard = [layers.Cropping2D(((0, 0), (start, width - stop)), name=f"view{i}")(inputs)
                 for i, (start, stop) in enumerate(views)]
    branches = [keras.Model(m.inputs, m.outputs[0], name=f"member{i}")(x)
                for i, (m, x) in enumerate(zip(members, heard))]
    weights = check_weights(weights, len(members))
    if weights is None:
        outputs = layers.Average(name=OUTPUT_LAYER)(branches)
    else:
        scaled = [layers.Rescaling(w, name=f"weight{i}")(b) for i, (w, b) in enumerate(zip(weights, branches))]
        outputs = layers.Add(name=OUTPUT_LAYER)(scaled)
    return keras.Model(inputs, outputs, name=name)


def check_weights(weights: Optional[Sequence[float]], members: int) -> Optional[Tuple[float, ...]]:
    """``weights`` as a tuple, or None when they are absent or all equal (the plain mean).

    Why refuse rather than normalize: a weight is part of a recipe's name and record, and a
    record that says 0.7 must be the weight the graph applies.
    """
    if weights is None:
        return None
    weights = tuple(float(w) for w in weights)
    if len(weights) != members:
        raise ValueError(f"{len(weights)} weights for {members} ensemble members")
    if min(weights) <= 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise ValueError(f"ensemble weights must be positive and sum to 1, got {weights}")
    if max(weights) - min(weights) < 1e-9:
        return None
    return weights
