"""The compact CNN that edge-ser ships, built only from ops that quantize fully to int8.

Input: one window of log-mel features, ``(window_frames, n_mels, 1)``. The network is a
VGG-style stack of 3x3 convolutions (bias-free, each followed by BatchNorm and ReLU,
which the converter folds into the convolution; the first strided, max pooling that
halves time and frequency between the others). The default head then takes the mean
and the maximum over time but keeps the frequency axis (where in the spectrum energy
sits matters for emotion: pitch, formants, spectral tilt), flattens, and ends with
dropout and a dense softmax layer; ``head="time_attention"`` replaces the maximum by a
learned weighted mean over time, ``head="gap"`` averages over time and frequency instead.
Every op (Conv2D, MaxPool, AveragePool, Concatenation, Reshape, FullyConnected, Softmax,
Mul, plus a fixed Conv2D for the time difference) has an int8 kernel in TFLite, so
the converted graph has no float islands.

Why a fixed time-difference filter: the feature config cannot carry delta features
(it is fixed for the device), but a Conv2D with frozen weights ``[-1, 0, 1]`` along
time (scaled by 1/2) computes them inside the graph. It is stacked with the plain features as a
second input channel.

Why blocks become channels: features of several blocks side by side (log-mel and PCEN of one
mel spectrogram, ``log="db+pcen"``) describe the same bands twice. A network that hears both
should see them aligned, band on band, as two channels of one image (what a colour image is
to a convolution), not as one image twice as tall whose upper half is another view: so the
blocks are cropped apart (a strided slice) and concatenated on the channel axis, and every
block gets its own time difference.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

#: Pooling heads: mean and max over time (frequency kept), mean and a learned weighted mean over
#: time (:func:`_attention_over_time`), or global average pooling.
HEADS = ("time_pool", "time_attention", "gap")
#: Name of the auxiliary arousal layer (:func:`build_model` with ``arousal_levels``).
AROUSAL_LAYER = "arousal"
#: Names of the adversarial head's layers (:func:`build_model` with ``adversary_classes``): the
#: gradient reversal, whose strength training sets, and the discriminator's logits.
REVERSAL_LAYER = "adversary_reversal"
ADVERSARY_LAYER = "adversary"
#: Hidden units of the discriminator: one hidden layer, so that it can find cues of a corpus or a
#: speaker that a straight line through the pooled features would miss.
ADVERSARY_HIDDEN_UNITS = 64


def build_model(
    window_frames: int = 300,
    n_features: int = 64,
    n_classes: int = 8,
    channels: Sequence[int] = (24, 32, 48, 64, 96),
    dropout: float = 0.3,
    deltas: bool = True,
    weight_decay: float = 0.0,
    head: str = "time_pool",
    name: str = "edge_ser_cnn",
    output: str = "probabilities",
    arousal_levels: int = 0,
    input_norm: str = "none",
    blocks: int = 1,
    adversary_classes: int = 0,
):
    """Return an uncompiled Keras model mapping a feature window to class probabilities.

    ``output="logits"`` leaves the softmax out: the masked multi-corpus loss needs the
    logits, and a logits model exported as such spares the device's probabilities the
    int8 softmax's 1/256 steps (the device applies the softmax in float).

    ``arousal_levels > 0`` (logits only) adds an auxiliary head beside the emotion layer, on
    the same pooled features, and the model outputs ``[emotion logits | arousal logits]``:
    arousal-only corpora (BAVED) then shape the shared layers. :func:`emotion_only` cuts it
    off again for evaluation and export.

    ``adversary_classes > 0`` (logits only, not with ``arousal_levels``) adds a discriminator of that
    many classes (the training corpora, or the training speakers) on the same pooled features
    behind a gradient-reversal layer (:func:`gradient_reversal_class`), and the model outputs
    ``[emotion logits | discriminator logits]``. Training minimizes the discriminator's
    cross-entropy; the reversal hands the shared layers the opposite gradient, so they learn
    features from which the corpus (language, studio) or the speaker is hard to tell, while the
    emotion stays easy to tell (domain-adversarial training). :func:`emotion_only` cuts the head
    off again.

    ``input_norm="band_mean"`` subtracts each mel band's mean over the window from the
    features before anything else (cepstral mean normalisation, done on log-mel): a fixed
    colouring of the spectrum (a room's and a microphone's frequency response, the level)
    adds a constant per band in the log domain, and the subtraction removes it. What it
    costs: the window's average spectral shape, which carries some vocal effort; the time
    differences and every within-window contrast stay.

    ``blocks > 1``: ``n_features`` holds that many blocks of columns (views of the same bands,
    :meth:`edge_ser.features.FeatureConfig.blocks`), which the network stacks as channels
    (``(frames, n_features / blocks, blocks)``) before anything else; the model's input stays
    the features as the device computes them.
    """
    import keras
    from keras import layers

    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    inputs = keras.Input(shape=(window_frames, n_features, 1), name="features")
    x = _blocks_as_channels(inputs, n_features, blocks, layers) if blocks > 1 else inputs
    if input_norm == "band_mean":
        # the mean over time per band, broadcast back over the frames: two int8 ops, AveragePool2D and Sub
        band_mean = layers.AveragePooling2D((window_frames, 1), name="band_mean")(x)
        x = layers.Subtract(name="band_normalized")([x, band_mean])
    elif input_norm != "none":
        raise ValueError(f"input_norm must be 'none' or 'band_mean', got {input_norm!r}")
    if deltas:
        # one output channel per input channel, each the time difference of its own channel only
        # (a diagonal kernel: still a plain CONV_2D in the int8 graph)
        depth = int(x.shape[-1])
        delta = layers.Conv2D(depth, (3, 1), padding="same", use_bias=False, trainable=False, name="time_delta")
        d = delta(x)
        kernel = np.zeros((3, 1, depth, depth), dtype=np.float32)
        for c in range(depth):
            kernel[:, 0, c, c] = (-0.5, 0.0, 0.5)
        delta.set_weights([kernel])
        x = layers.Concatenate(axis=-1, name="with_delta")([x, d])

    def conv_bn_relu(x, filters: int, label: str, strides=(1, 1), kernel=(3, 3)):
        x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                          kernel_regularizer=reg, name=f"{label}_conv")(x)
        # momentum 0.9: with ~30 steps per epoch the default 0.99 lags the weights by
        # several epochs and validation scores swing wildly
        x = layers.BatchNormalization(momentum=0.9, name=f"{label}_bn")(x)
        return layers.ReLU(name=f"{label}_relu")(x)

    c = list(channels)
    # stem: stride 2 in both axes -> (T/2, F/2)
    x = conv_bn_relu(x, c[0], "stem", strides=(2, 2))
    for i, filters in enumerate(c[1:], start=1):
        x = conv_bn_relu(x, filters, f"block{i}")
        if i < len(c) - 1:
            x = layers.MaxPooling2D((2, 2), name=f"pool{i}")(x)
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if head == "gap":
        x = layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        # pool over time only, keep where in frequency things happened:
        # pitch and formant positions carry much of the emotion signal
        frames = int(x.shape[1])
        mean_t = layers.AveragePooling2D((frames, 1), name="time_mean")(x)
        if head == "time_attention":
            second = _attention_over_time(x, layers)
        else:
            second = layers.MaxPooling2D((frames, 1), name="time_max")(x)
        x = layers.Concatenate(axis=-1, name="time_stats")([mean_t, second])
        x = layers.Flatten(name="flatten")(x)
    pooled = x
    x = layers.Dropout(dropout, name="dropout")(x)
    if output not in ("probabilities", "logits"):
        raise ValueError(f"output must be 'probabilities' or 'logits', got {output!r}")
    activation = "softmax" if output == "probabilities" else None
    outputs = layers.Dense(n_classes, activation=activation, kernel_regularizer=reg, name=output)(x)
    if arousal_levels:
        if output != "logits":
            raise ValueError("an arousal head needs output='logits'")
        arousal = layers.Dense(arousal_levels, kernel_regularizer=reg, name=AROUSAL_LAYER)(x)
        outputs = layers.Concatenate(axis=-1, name="emotion_and_arousal")([outputs, arousal])
    if adversary_classes:
        if output != "logits" or arousal_levels:
            raise ValueError("an adversarial head needs output='logits' and no arousal head")
        hidden = gradient_reversal(REVERSAL_LAYER)(pooled)
        hidden = layers.Dense(ADVERSARY_HIDDEN_UNITS, activation="relu", name="adversary_hidden")(hidden)
        adversary = layers.Dense(adversary_classes, name=ADVERSARY_LAYER)(hidden)
        outputs = layers.Concatenate(axis=-1, name="emotion_and_adversary")([outputs, adversary])
    return keras.Model(inputs, outputs, name=name)


@functools.lru_cache(maxsize=None)
def gradient_reversal_class():
    """The gradient-reversal layer class, defined on first use: this module imports no Keras until
    a model is built."""
    import keras
    from keras import ops

    class GradientReversalLayer(keras.layers.Layer):
        """Identity on the way forward; on the way back, the gradient times ``-strength``.

        Why: the discriminator behind it learns to tell corpora (or speakers) apart, while the
        layers in front of it receive the reversed gradient and learn to make that harder
        (Ganin & Lempitsky's domain-adversarial training). ``strength`` is a non-trainable
        weight that training raises from 0, so the discriminator first learns what tells them
        apart before the shared layers are pushed away from it. Not in any exported
        graph: :func:`emotion_only` leaves the head out.
        """

        def build(self, input_shape) -> None:
            self.strength = self.add_weight(shape=(), initializer="zeros", trainable=False, name="strength")

        def call(self, x):
            @ops.custom_gradient
            def reverse(features, strength):
                def grad(*args, upstream=None):
                    if upstream is None:
                        (upstream,) = args
                    return -strength * upstream, ops.zeros_like(strength)
                return ops.multiply(features, 1.0), grad

            return reverse(x, ops.convert_to_tensor(self.strength))

    return GradientReversalLayer


def gradient_reversal(name: str):
    """A gradient-reversal layer named ``name`` (:func:`gradient_reversal_class`)."""
    return gradient_reversal_class()(name=name)


def _blocks_as_channels(inputs, n_features: int, blocks: int, layers):
    """``(T, blocks * F, 1) -> (T, F, blocks)``: each block of columns cropped out (a strided
    slice) and the blocks concatenated as channels, band aligned with band."""
    if n_features % blocks:
        raise ValueError(f"{n_features} feature columns do not split into {blocks} blocks")
    width = n_features // blocks
    views = [layers.Cropping2D(((0, 0), (i * width, n_features - (i + 1) * width)), name=f"feature_block{i}")(inputs)
             for i in range(blocks)]
    return layers.Concatenate(axis=-1, name="blocks_as_channels")(views)


def _attention_over_time(x, layers):
    """A learned weighted mean over time: ``(T, F, C) -> (1, F, C)``, one weight per frame.

    A dense score of every frame (a convolution spanning the frequency rows and channels) and a
    softmax over the frames make the weights; the weighted frames are then averaged. It takes
    the place of the maximum over time: a maximum follows the loudest frame, and in a room
    that may be a door, a dog or a dish rather than the voice; weights learned from the frames
    can follow the speech instead.

    int8 shapes the arithmetic. The weights are scaled by the frame count (they average one
    rather than summing to one), so the frames times their weights stay the size of the frames
    and the average pool, whose output keeps its input's scale, keeps its resolution. The
    softmax runs on the last axis (TFLite's). A batched matrix product would be the
    direct form, but TFLite's int8 BATCH_MATMUL returned zeros for it (a ReLU's frames have a
    nonzero zero point). Ops: CONV_2D, RESHAPE, SOFTMAX, MUL, AVERAGE_POOL_2D, all with int8 kernels.
    """
    frames, rows, channels = (int(d) for d in x.shape[1:])
    scores = layers.Conv2D(1, (1, rows), name="time_attention_score")(x)  # (T, 1, 1)
    scores = layers.Reshape((1, frames), name="time_attention_scores")(scores)
    weights = layers.Softmax(axis=-1, name="time_attention_softmax")(scores)  # (1, T), sums to 1 over T
    weights = layers.Rescaling(float(frames), name="time_attention_weights")(weights)  # averages 1
    weights = layers.Reshape((frames, 1, 1), name="time_attention_per_frame")(weights)
    weighted = layers.Multiply(name="time_attention_weighted")([x, weights])
    return layers.AveragePooling2D((frames, 1), name="time_attention_pool")(weighted)


def emotion_only(model):
    """The emotion part of a model with an arousal or adversarial head: same layers and weights, one output.

    A model without such a head is returned as it is.
    """
    import keras

    if not {AROUSAL_LAYER, ADVERSARY_LAYER} & {layer.name for layer in model.layers}:
        return model
    return keras.Model(model.inputs, model.get_layer("logits").output, name=model.name)


def count_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights if w.trainable) +
               sum(np.prod(w.shape) for w in model.non_trainable_weights if "time_delta" in w.path))
