"""A real TFLite model that ends in the `TFLite_Detection_PostProcess` op,
made the way the TF Model Garden exports detectors: a `tf.function` stub whose
`experimental_implements` names the op and its options, which the converter
replaces by the op. Its inputs are the box encodings and class scores (with
background at column 0), so a test decides exactly what the op sees; the
anchors are constants. Seconds to build, runs in any TFLite interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.device.model.backends import find_backend

# Grid anchors (ycenter, xcenter, height, width) far enough apart that NMS keeps each one's box.
ANCHORS = np.array([[y, x, 0.2, 0.25] for y in (0.15, 0.5, 0.85) for x in (0.15, 0.5, 0.85)], np.float32)
LABELS = ["cat", "dog", "bird", "fish"]
MAX_DETECTIONS = 5
SCALES = {"y_scale": 10.0, "x_scale": 10.0, "h_scale": 5.0, "w_scale": 5.0}


def implements_signature(num_classes: int, max_detections: int) -> str:
    attributes = [
        f'attr {{ key: "max_detections" value {{ i: {max_detections} }} }}',
        'attr { key: "max_classes_per_detection" value { i: 1 } }',
        'attr { key: "use_regular_nms" value { b: false } }',
        'attr { key: "nms_score_threshold" value { f: 0.1 } }',
        'attr { key: "nms_iou_threshold" value { f: 0.5 } }',
        *(f'attr {{ key: "{key}" value {{ f: {value} }} }}' for key, value in SCALES.items()),
        f'attr {{ key: "num_classes" value {{ i: {num_classes} }} }}',
    ]
    return " ".join(['name: "TFLite_Detection_PostProcess"', *attributes])


def build_postprocess_model(num_classes: int = len(LABELS), max_detections: int = MAX_DETECTIONS) -> bytes:
    import tensorflow as tf

    anchors = tf.constant(ANCHORS)

    @tf.function(experimental_implements=implements_signature(num_classes, max_detections))
    def postprocess(box_encodings, class_predictions, anchors):  # a stub: the converter puts the op here
        del box_encodings, class_predictions, anchors
        return (tf.constant(0.0, name="boxes"), tf.constant(0.0, name="classes"),
                tf.constant(0.0, name="scores"), tf.constant(0.0, name="num_detections"))

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, len(ANCHORS), 4], tf.float32, name="encodings"),
                                      tf.TensorSpec([1, len(ANCHORS), num_classes + 1], tf.float32, name="scores")])
        def serve(self, encodings, scores):
            return postprocess(encodings, scores, anchors)

    detector = Detector()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.serve.get_concrete_function()], detector)
    converter.allow_custom_ops = True
    return converter.convert()


def anchor_corners(index: int) -> np.ndarray:
    """The box (ymin, xmin, ymax, xmax) the op outputs for an anchor whose encoding is all zeros."""
    yc, xc, h, w = ANCHORS[index]
    return np.array([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], np.float32)


class RunDetector:
    """The detector in a real interpreter: scores per (anchor, class) in, the model's outputs (its order) out."""

    def __init__(self, path: Path) -> None:
        self.interpreter = find_backend().interpreter_class(model_content=path.read_bytes())
        self.interpreter.allocate_tensors()
        self.inputs = {d["shape"][-1]: d["index"] for d in self.interpreter.get_input_details()}

    def __call__(self, objects: dict[int, tuple[int, float]], encodings: np.ndarray | None = None) -> list[np.ndarray]:
        scores = np.zeros((1, len(ANCHORS), len(LABELS) + 1), np.float32)
        for anchor, (class_id, score) in objects.items():
            scores[0, anchor, class_id + 1] = score  # column 0 is the background
        self.interpreter.set_tensor(self.inputs[len(LABELS) + 1], scores)
        self.interpreter.set_tensor(self.inputs[4], np.zeros((1, len(ANCHORS), 4), np.float32)
                                    if encodings is None else encodings[None].astype(np.float32))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()]


# An image detector whose answers a test can predict: the photo is cut into a 3x3 grid, each cell is an
# anchor exactly its size, and a cell's score for class k is the mean of RGB channel k over it (0 for
# black, 1 for a full 255). So a photo with a pure red cell "contains" a `red` object there, found with
# score 1.0 and a box equal to the cell (IoU 1 with a box drawn on the cell).
CELL = 32
GRID = 3
CELL_LABELS = ["red", "green", "blue"]


def cell_box(row: int, col: int) -> tuple[int, int, int, int]:
    """A grid cell's box (x0, y0, x1, y1) in the photo's pixels."""
    return col * CELL, row * CELL, (col + 1) * CELL, (row + 1) * CELL


def build_cell_detector() -> bytes:
    """The .tflite: a float32 1x96x96x3 image in ([-1, 1], as the device normalises), the postprocess op out."""
    import tensorflow as tf

    size = CELL * GRID
    centres = [(k + 0.5) / GRID for k in range(GRID)]
    anchors = tf.constant([[y, x, 1 / GRID, 1 / GRID] for y in centres for x in centres], tf.float32)
    n = GRID * GRID

    @tf.function(experimental_implements=implements_signature(len(CELL_LABELS), MAX_DETECTIONS))
    def postprocess(box_encodings, class_predictions, anchors):  # a stub: the converter puts the op here
        del box_encodings, class_predictions, anchors
        return (tf.constant(0.0, name="boxes"), tf.constant(0.0, name="classes"),
                tf.constant(0.0, name="scores"), tf.constant(0.0, name="num_detections"))

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
        def serve(self, image):
            cells = tf.nn.avg_pool2d((image + 1.0) / 2.0, CELL, CELL, "VALID")
            scores = tf.reshape(cells, [1, n, len(CELL_LABELS)])
            background = tf.zeros([1, n, 1])
            encodings = tf.zeros([1, n, 4]) * tf.reduce_sum(scores)  # all zero: each box is its anchor
            return postprocess(encodings, tf.concat([background, scores], axis=-1), anchors)

    detector = Detector()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([detector.serve.get_concrete_function()], detector)
    converter.allow_custom_ops = True
    return converter.convert()
