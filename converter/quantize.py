"""Keras model -> TFLite (full-integer int8 by default), op checks and in-process inference.

Full-integer quantization needs a representative dataset: real feature windows that
show the converter the range of every activation. They come from real clips across
classes and speakers, cut exactly like the device cuts them.

The int8 graph is checked after conversion: every tensor that carries activations must
be int8 (int32 is allowed only for biases, as the int8 kernels define them), so the
model runs on integer kernels end to end with no float islands.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

VARIANTS = ("int8", "float16", "dynamic")


def _concrete_function(model):
    """A concrete function with a batch-1 signature: TFLite then has static shapes."""
    import tensorflow as tf

    shape = [1] + [int(d) for d in model.input_shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="features")])
    def serve(x):
        return model(x, training=False)

    concrete = serve.get_concrete_function()
    # Freeze the weights into constants: Keras 3 variables are not tracked the way the
    # TFLite converter expects, and leaving them as resources yields READ_VARIABLE ops.
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete)


def convert(model, representative: np.ndarray | None = None, variant: str = "int8") -> bytes:
    """Convert ``model``; ``representative`` windows shaped like the model input (no batch axis)."""
    import tensorflow as tf

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
    fn = _concrete_function(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if variant == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 conversion needs representative feature windows")
        reps = np.asarray(representative, dtype=np.float32)

        def gen():
            for window in reps:
                yield [window[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    else:  # dynamic range: int8 weights, float activations
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return bytes(converter.convert())


def graph_report(tflite_model: bytes) -> Dict[str, object]:
    """Ops and tensor types of a TFLite model, and whether it is integer-only.

    Integer-only: no float tensor and no QUANTIZE/DEQUANTIZE between float and int. An int8 -> int8
    QUANTIZE (requantizing to another scale: the converter puts one where an ensemble member's
    slice of the input feeds a concatenation at another scale) is integer arithmetic.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    schema = flatbuffer_utils.schema_fb
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite_model))
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops: List[str] = []
    float_ops: List[str] = []  # (DE)QUANTIZE between float and int; int8 -> int8 requantizing is integer
    float_tensors: List[str] = []
    tensor_types: Dict[str, int] = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            name = op_names.get(builtin, str(builtin))
            ops.append(name)
            if name in ("QUANTIZE", "DEQUANTIZE"):
                kinds = {type_names.get(graph.tensors[i].type) for i in list(op.inputs) + list(op.outputs)}
                if not kinds <= {"INT8", "INT32"}:
                    float_ops.append(name)
        for tensor in graph.tensors:
            tname = type_names.get(tensor.type, str(tensor.type))
            tensor_types[tname] = tensor_types.get(tname, 0) + 1
            if tname not in ("INT8", "INT32"):
                name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
                float_tensors.append(f"{name}:{tname}")
    return {
        "ops": sorted(set(ops)),
        "op_count": len(ops),
        "tensor_types": tensor_types,
        "non_int_tensors": float_tensors,
        "integer_only": not float_tensors and not float_ops,
        "size_bytes": len(tflite_model),
    }


class TFLiteRunner:
    """Run a .tflite model in-process (``tf.lite.Interpreter``) on float feature windows.

    Quantizes inputs and dequantizes outputs with the tensors' own parameters, as the
    device does, and returns probabilities.
    """

    def __init__(self, tflite_model: bytes) -> None:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
            self.interpreter = tf.lite.Interpreter(model_content=tflite_model, num_threads=2)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def predict(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float32)
        in_shape = tuple(self.input["shape"])
        out = []
        for window in windows:
            x = window.reshape(in_shape)
            if self.input["dtype"] == np.int8:
                scale, zero = self.input["quantization"]
                x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
            self.interpreter.set_tensor(self.input["index"], x)
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])[0]
            if self.output["dtype"] == np.int8:
                scale, zero = self.output["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            out.append(y.astype(np.float32))
        return np.stack(out) if out else np.zeros((0, int(self.output["shape"][-1])), np.float32)


def representative_windows(
    windows_by_clip: Sequence[np.ndarray], labels: Sequence[int], speakers: Sequence[str],
    count: int = 300, seed: int = 0,
) -> np.ndarray:
    """Pick about ``count`` windows spread over classes and speakers (round-robin)."""
    rng = np.random.default_rng(seed)
    groups: Dict[Tuple[int, str], List[np.ndarray]] = {}
    for wins, label, speaker in zip(windows_by_clip, labels, speakers):
        groups.setdefault((int(label), str(speaker)), []).extend(list(wins))
    keys = sorted(groups)
    for key in keys:
        order = rng.permutation(len(groups[key]))
        groups[key] = [groups[key][i] for i in order]
    chosen: List[np.ndarray] = []
    depth = 0
    while len(chosen) < count:
        added = False
        for key in keys:
            if depth < len(groups[key]) and len(chosen) < count:
                chosen.append(groups[key][depth])
                added = True
        if not added:
            break
        depth += 1
    return np.stack(chosen)[..., None].astype(np.float32)
