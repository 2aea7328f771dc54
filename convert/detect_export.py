"""A trained detector to a .tflite that ends in TFLite's standard postprocess op.

`TFLite_Detection_PostProcess` (anchor decoding + NMS) has no TensorFlow
kernel. The TF Model Garden's way to get it, used here: call an empty
`tf.function` whose `experimental_implements` attribute names the op and its
attributes; the MLIR converter replaces the call with the custom op. Its
inputs are the detector's box offsets, its sigmoid scores and the anchors
(a float constant); its outputs are float, so the int8 graph ends in two
DEQUANTIZE ops, exactly as Coral's compiled SSDs do, and everything before
them is int8 and maps to the Edge TPU.

The converter numbers the outputs by the serving signature's sorted names,
which is not the order the ecosystem reads. `arrange_outputs` rewrites the
flatbuffer so that:
- by index the outputs are boxes [1, N, 4] (ymin, xmin, ymax, xmax, normalised),
  classes [1, N], scores [1, N], count [1], as Coral's SSDs (Frigate reads by index);
- the serving signature names them as pycoral's detect adapter expects when a
  model has one: output_0 = count, output_1 = scores, output_2 = classes, output_3 = boxes;
- the DEQUANTIZE ops feeding the op come last before it (Coral's CPU tail), so
  no CPU op sits between Edge TPU ops in execution order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepipe.device.model.preprocess import InputSpec
from edgepipe.train.detect.anchors import BOX_SCALES
from edgepipe.train.detect.decode import PostprocessConfig

from .quantize import export_tflite

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
# pycoral's adapters/detect.py reads a model with a signature by these names.
SIGNATURE_OUTPUTS = {"output_0": "count", "output_1": "scores", "output_2": "classes", "output_3": "boxes"}
OUTPUT_ORDER = ("boxes", "classes", "scores", "count")  # the op's own output order = Coral's by index
OUTPUT_TENSOR_NAMES = (POSTPROCESS_OP, f"{POSTPROCESS_OP}:1", f"{POSTPROCESS_OP}:2", f"{POSTPROCESS_OP}:3")


def implements_signature(cfg: PostprocessConfig, num_classes: int) -> str:
    """The `experimental_implements` text the converter turns into the op and its attributes."""
    ys, xs, hs, ws = BOX_SCALES
    attrs: list[tuple[str, str, Any]] = [
        ("max_detections", "i", cfg.max_detections),
        ("max_classes_per_detection", "i", 1),
        ("detections_per_class", "i", cfg.max_detections),
        ("use_regular_nms", "b", "false"),
        ("nms_score_threshold", "f", cfg.score_threshold),
        ("nms_iou_threshold", "f", cfg.iou_threshold),
        ("y_scale", "f", ys), ("x_scale", "f", xs), ("h_scale", "f", hs), ("w_scale", "f", ws),
        ("num_classes", "i", num_classes),
    ]
    text = [f'name: "{POSTPROCESS_OP}"']
    for key, kind, value in attrs:
        shown = f"{value:f}" if kind == "f" else str(value)
        text.append(f'attr {{ key: "{key}" value {{ {kind}: {shown} }} }}')
    return " ".join(text)


def serving_function(model, spec: InputSpec, anchors: np.ndarray, cfg: PostprocessConfig):
    """The concrete function to convert: image -> the detector -> the postprocess stub."""
    import tensorflow as tf

    num_classes = int(model.outputs[1].shape[-1])
    n = cfg.max_detections

    @tf.function(experimental_implements=implements_signature(cfg, num_classes))
    def postprocess(box_encodings, class_scores, anchor_boxes):
        # Never run: the converter replaces this call. The shapes tell it the outputs' shapes.
        return tf.zeros([1, n, 4]), tf.zeros([1, n]), tf.zeros([1, n]), tf.zeros([1])

    @tf.function(input_signature=[tf.TensorSpec([1, spec.height, spec.width, 3], tf.float32, name="image")])
    def serve(image):
        box_encodings, class_scores = model(image, training=False)
        boxes, classes, scores, count = postprocess(box_encodings, class_scores, tf.constant(anchors))
        named = {"boxes": boxes, "classes": classes, "scores": scores, "count": count}
        return {key: named[value] for key, value in SIGNATURE_OUTPUTS.items()}

    return serve.get_concrete_function()


def arrange_outputs(model_bytes: bytes) -> bytes:
    """Outputs by index boxes, classes, scores, count; signature names for pycoral; DEQUANTIZE tail last."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils as fb

    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    graph = model.subgraphs[0]
    codes = model.operatorCodes

    def custom_code(op) -> str:
        code = codes[op.opcodeIndex].customCode
        return code.decode() if isinstance(code, bytes) else (code or "")

    index = next((i for i, op in enumerate(graph.operators) if custom_code(op) == POSTPROCESS_OP), None)
    if index is None:
        raise ValueError(f"the converted detector has no {POSTPROCESS_OP} op")
    post = graph.operators[index]
    outputs = [int(t) for t in post.outputs]
    graph.outputs = np.asarray(outputs, np.int32)
    for tensor_index, name in zip(outputs, OUTPUT_TENSOR_NAMES):
        graph.tensors[tensor_index].name = name.encode()

    dequantize = schema.BuiltinOperator.DEQUANTIZE
    feeding = set(int(t) for t in post.inputs)
    consumers: dict[int, int] = {}
    for op in graph.operators:
        for t in op.inputs:
            consumers[int(t)] = consumers.get(int(t), 0) + 1
    tail = [op for op in graph.operators[:index]
            if codes[op.opcodeIndex].builtinCode == dequantize and int(op.outputs[0]) in feeding
            and consumers.get(int(op.outputs[0]), 0) == 1]
    rest = [op for op in graph.operators[:index] if not any(op is t for t in tail)]
    graph.operators = rest + tail + [post] + graph.operators[index + 1:]

    by_role = dict(zip(OUTPUT_ORDER, outputs))
    for signature in model.signatureDefs or []:
        entries = []
        for key, role in SIGNATURE_OUTPUTS.items():
            entry = schema.TensorMapT()
            entry.name = key.encode()
            entry.tensorIndex = by_role[role]
            entries.append(entry)
        signature.outputs = entries
    return bytes(fb.convert_object_to_bytearray(model))


def export_detector(model, spec: InputSpec, anchors: np.ndarray, cfg: PostprocessConfig, pixels: np.ndarray | None,
                    io: str = "uint8", name: str = "conversion") -> bytes:
    """.tflite bytes: full-int8 (uint8 or int8 input) when representative `pixels` are given, else float;
    float outputs from the postprocess op either way."""
    serving = serving_function(model, spec, anchors, cfg)
    data = export_tflite(model, spec, pixels, io, name=name, serving=serving, output_io="float")
    return arrange_outputs(data)
