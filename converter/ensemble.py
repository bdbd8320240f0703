"""Small ensembles: several trained networks averaged inside one exported graph.

Why: two networks trained by different recipes (different widths, different draws) may
make partly different mistakes, and averaging their logits is the cheapest variance
reduction there is (whether it pays is measured in ``models/results/protocol.md``: the
rooms-pair rows). It costs the device nothing but multiply-adds: the members become branches of a
single Keras model (one input, one output), so the exported file is still one full-int8
TFLite graph that the device runs with one ``invoke`` per window, and nothing on the
device knows it is an ensemble.

Logits, not probabilities, are averaged: the masked multi-corpus recipes output logits
(the device applies the softmax in float), and the mean of logits is the geometric mean of
the members' probabilities, which keeps one over-confident member from swamping the other.
"""

from __future__ import annotations

from typing import Sequence

#: Name of the averaging layer (the ensemble's output).
OUTPUT_LAYER = "logits"


def average_logits(members: Sequence[object], name: str = "edge_ser_ensemble"):
    """One Keras model whose output is the mean of ``members``' outputs on the same input.

    Every member must map the same input shape to the same output shape (logits). Each is
    wrapped under its own name (``member0``, ``member1``, ...): members trained by the same
    code carry the same layer names, which one model could not hold side by side.
    """
    import keras
    from keras import layers

    if len(members) < 2:
        raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
    shapes = {(tuple(m.input_shape[1:]), tuple(m.output_shape[1:])) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"ensemble members disagree on input/output shapes: {sorted(shapes)}")
    first = members[0]
    inputs = keras.Input(shape=first.input_shape[1:], name="features")
    branches = [keras.Model(m.inputs, m.outputs[0], name=f"member{i}")(inputs) for i, m in enumerate(members)]
    outputs = layers.Average(name=OUTPUT_LAYER)(branches)
    return keras.Model(inputs, outputs, name=name)
