"""mAP of a detector (Keras or .tflite) on photos with boxes, measured as the device sees them.

Photos are decoded and stretch-resized by the device's own preprocessing
(`resize_to_input`) once; the float model gets `normalize`d pixels and its raw
outputs are decoded by train/detect/decode.py (the op's algorithm in numpy);
a .tflite runs in the device runtime with its quantized input and its own
TFLite_Detection_PostProcess op, read by output index as Frigate reads it.
Agreement (for the ship rule's tie-break and the golden set) pairs detections
by class and IoU, never by exact floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.progress import Progress
from edgepipe.device.model.preprocess import ImageReadError, InputSpec, load_image, normalize, quantize, resize_to_input
from edgepipe.device.model.backends import find_backend
from edgepipe.train.detect.anchors import iou_matrix
from edgepipe.train.detect.decode import PostprocessConfig, detections, to_pixels
from edgepipe.train.detect.boxes import BoxedImage
from edgepipe.train.detect.metrics import evaluate_detections

Detection = tuple[int, float, np.ndarray]  # class, score, normalised (ymin, xmin, ymax, xmax)
AGREEMENT_IOU = 0.5
AGREEMENT_SCORE = 0.3  # detections this confident must be found again by the other model
RESAMPLES = 200  # of the test photos, for the standard error of a difference in mAP (about 30 ms each)


@dataclass
class Photos:
    """Photos with boxes and their pixels at the model's input size (uint8, as the device resizes them)."""

    images: list[BoxedImage]
    pixels: np.ndarray


def load_photos(images: Sequence[BoxedImage], spec: InputSpec, what: str) -> Photos:
    kept, pixels = [], []
    with Progress(len(images), f"loading {what}") as bar:
        for image in images:
            try:
                pixels.append(resize_to_input(load_image(image.path), spec))
                kept.append(image)
            except ImageReadError:
                pass
            bar.update()
    if not kept:
        raise UserError(f"none of the {len(images)} {what} is readable; is the data folder still there?")
    return Photos(kept, np.stack(pixels))


@dataclass
class DetectionEvaluation:
    name: str
    found: list[list[Detection]]  # per photo
    map50: float
    map50_95: float
    per_class: dict[str, Any]  # class -> AP@0.5, AP@[.5:.95] and boxes: a weak class hides in the mean

    def to_json(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class}


def _score(name: str, photos: Photos, found: list[list[Detection]], classes: Sequence[str]) -> DetectionEvaluation:
    predictions = [to_pixels(f, image.width, image.height) for f, image in zip(found, photos.images)]
    metrics = evaluate_detections(photos.images, predictions, classes)
    return DetectionEvaluation(name, found, metrics.map50, metrics.map50_95, metrics.to_json()["per_class"])


def evaluate_keras_detector(model, photos: Photos, spec: InputSpec, anchors: np.ndarray, cfg: PostprocessConfig,
                            classes: Sequence[str], batch: int = 8) -> DetectionEvaluation:
    found = []
    for start in range(0, len(photos.pixels), batch):
        boxes, scores = model(normalize(photos.pixels[start: start + batch], spec), training=False)
        found += [detections(b, s, anchors, cfg) for b, s in zip(boxes.numpy(), scores.numpy())]
    return _score("float", photos, found, classes)


def tflite_detections(model_bytes: bytes, pixels: np.ndarray) -> list[list[Detection]]:
    """Run a detector .tflite on uint8 pixels: outputs by index boxes, classes, scores, count."""
    interpreter = find_backend().interpreter_class(model_content=model_bytes, num_threads=2)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    scale, zero_point = detail["quantization"]
    dtype = np.dtype(detail["dtype"]).name
    spec = InputSpec(height=int(detail["shape"][1]), width=int(detail["shape"][2]))
    if dtype != "float32":
        spec = spec.with_tensor(dtype, scale, zero_point)
    outputs = [o["index"] for o in interpreter.get_output_details()]
    found = []
    for p in pixels:
        interpreter.set_tensor(detail["index"], quantize(normalize(p, spec), spec)[np.newaxis])
        interpreter.invoke()
        boxes, classes, scores, count = (interpreter.get_tensor(i)[0] for i in outputs)
        n = int(np.asarray(count).reshape(-1)[0]) if np.ndim(count) else int(count)
        found.append([(int(classes[i]), float(scores[i]), boxes[i].astype(np.float32)) for i in range(n)])
    return found


def evaluate_tflite_detector(name: str, model_bytes: bytes, photos: Photos, classes: Sequence[str]) -> DetectionEvaluation:
    return _score(name, photos, tflite_detections(model_bytes, photos.pixels), classes)


def map50_difference_error(images: Sequence[BoxedImage], reference: list[list[Detection]],
                           candidate: list[list[Detection]], classes: Sequence[str], seed: int = 0,
                           resamples: int = RESAMPLES) -> float:
    """The standard error of (reference - candidate) mAP@0.5 on these photos: its spread over the photos drawn
    again with replacement, both models scored on the same draw (a paired bootstrap).

    On a few dozen photos one box found or missed moves mAP@0.5 by a point or more, so a difference of
    a few points between two models can be chance; this says how much.
    """
    rng = np.random.default_rng(seed)
    ref = [to_pixels(f, image.width, image.height) for f, image in zip(reference, images)]
    cand = [to_pixels(f, image.width, image.height) for f, image in zip(candidate, images)]
    differences = []
    for _ in range(resamples):
        drawn = rng.integers(len(images), size=len(images))
        truth = [images[k] for k in drawn]
        differences.append(evaluate_detections(truth, [ref[k] for k in drawn], classes).map50
                           - evaluate_detections(truth, [cand[k] for k in drawn], classes).map50)
    return float(np.std(differences))


def agreement(reference: list[list[Detection]], candidate: list[list[Detection]],
              min_score: float = AGREEMENT_SCORE, min_iou: float = AGREEMENT_IOU) -> float:
    """Share of the reference's confident detections that the candidate finds too (same class, IoU >= min_iou)."""
    matched = total = 0
    for ref, cand in zip(reference, candidate):
        wanted = [d for d in ref if d[1] >= min_score]
        total += len(wanted)
        if not wanted or not cand:
            continue
        iou = iou_matrix(np.stack([d[2] for d in wanted]), np.stack([d[2] for d in cand]))
        same = np.array([[a[0] == b[0] for b in cand] for a in wanted])
        matched += int(((iou >= min_iou) & same).any(axis=1).sum())
    return matched / total if total else 1.0
