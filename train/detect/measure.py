"""mAP of a detector (Keras or .tflite) on photos with boxes, measured as the device sees them.

Shared by `edgepipe evaluate` and convert's choice between int8 candidates, so
"int8 mAP" means one thing everywhere. Photos are decoded and resized by the
device's own preprocessing (`resize_to_input`); the float model gets
`normalize`d pixels and its raw outputs are decoded by decode.py (the op's
algorithm in numpy); a .tflite runs in the device runtime (`Classifier`) with
its quantized input and its own TFLite_Detection_PostProcess op, its outputs
found and checked as the device finds and checks them. Boxes go back to each
photo's pixels by undoing the resize, as `edgepipe run` does, and pycocotools
scores them (metrics.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.progress import Progress
from edgepipe.device.model.classifier import Classifier, open_model_data
from edgepipe.device.model.detect_postprocess import DEFAULT_SCORE_THRESHOLD, raw_detections, to_frame
from edgepipe.device.model.preprocess import ImageReadError, InputSpec, load_image, normalize, quantize, resize_to_input

from .boxes import BoxedImage
from .decode import PostprocessConfig, detections
from .metrics import DetectionMetrics, PredictedBox, evaluate_detections

Detection = tuple[int, float, np.ndarray]  # class, score, normalised (ymin, xmin, ymax, xmax) of the model input
RESAMPLES = 200  # of the test photos, for the standard error of a difference in mAP (about 30 ms each)


@dataclass
class Photos:
    """Photos with boxes and their pixels at the model's input size (uint8, as the device resizes them by `spec`)."""

    images: list[BoxedImage]
    pixels: np.ndarray
    spec: InputSpec


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
    return Photos(kept, np.stack(pixels), spec)


@dataclass
class DetectionEvaluation:
    name: str
    found: list[list[Detection]]  # per photo
    map50: float
    map50_95: float
    per_class: dict[str, Any]  # class -> AP@0.5, AP@[.5:.95] and boxes: a weak class hides in the mean

    def to_json(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class}


def detections_in(detector: Classifier, pixels: np.ndarray) -> list[Detection]:
    """Every detection the model's postprocess op outputs for one photo's pixels (`resize_to_input`'s
    result): the device's pixel mapping, interpreter and output reading, no score floor of our own."""
    spec = detector.input_spec
    outputs = detector.invoke(quantize(normalize(pixels, spec), spec)[np.newaxis])
    boxes, classes, scores = raw_detections(outputs, detector.layout, detector.labels)
    return [(int(c), float(s), b.astype(np.float32)) for b, c, s in zip(boxes, classes, scores)]


def _in_photos(images: Sequence[BoxedImage], found: Sequence[list[Detection]],
               spec: InputSpec) -> list[list[PredictedBox]]:
    """`found` (per image of `images`) as boxes in each photo's pixels, by undoing `spec`'s resize."""
    predictions = []
    for image, objects in zip(images, found):
        boxes = np.array([box for _, _, box in objects], np.float64).reshape(-1, 4)
        corners = to_frame(boxes, (image.width, image.height), (spec.width, spec.height), spec.resize)
        predictions.append([PredictedBox(c, s, *map(float, xyxy)) for (c, s, _), xyxy in zip(objects, corners)])
    return predictions


def detection_metrics(images: Sequence[BoxedImage], found: Sequence[list[Detection]], classes: Sequence[str],
                      spec: InputSpec, score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> DetectionMetrics:
    """COCO metrics of `found` (per image of `images`), boxes mapped back to each photo by undoing `spec`'s resize."""
    return evaluate_detections(images, _in_photos(images, found, spec), classes, score_threshold)


def map50_difference_error(photos: Photos, reference: list[list[Detection]], candidate: list[list[Detection]],
                           classes: Sequence[str], seed: int = 0, resamples: int = RESAMPLES) -> float:
    """The standard error of (reference - candidate) mAP@0.5 on these photos: its spread over the photos drawn
    again with replacement, both models scored on the same draw (a paired bootstrap).

    On a few dozen photos one box found or missed moves mAP@0.5 by a point or more, so a difference of
    a few points between two models can be chance; this says how much.
    """
    rng = np.random.default_rng(seed)
    images = photos.images
    ref, cand = _in_photos(images, reference, photos.spec), _in_photos(images, candidate, photos.spec)
    differences = []
    for _ in range(resamples):
        drawn = rng.integers(len(images), size=len(images))
        truth = [images[k] for k in drawn]
        differences.append(evaluate_detections(truth, [ref[k] for k in drawn], classes).map50
                           - evaluate_detections(truth, [cand[k] for k in drawn], classes).map50)
    return float(np.std(differences))


def _score(name: str, photos: Photos, found: list[list[Detection]], classes: Sequence[str]) -> DetectionEvaluation:
    metrics = detection_metrics(photos.images, found, classes, photos.spec)
    return DetectionEvaluation(name, found, metrics.map50, metrics.map50_95, metrics.to_json()["per_class"])


def keras_detections(model, photos: Photos, spec: InputSpec, anchors: np.ndarray, cfg: PostprocessConfig,
                     batch: int = 8) -> list[list[Detection]]:
    """A float Keras detector's detections per photo, decoded as its postprocess op will decode them."""
    found = []
    for start in range(0, len(photos.pixels), batch):
        boxes, scores = model(normalize(photos.pixels[start: start + batch], spec), training=False)
        found += [detections(b, s, anchors, cfg) for b, s in zip(boxes.numpy(), scores.numpy())]
    return found


def evaluate_keras_detector(model, photos: Photos, spec: InputSpec, anchors: np.ndarray, cfg: PostprocessConfig,
                            classes: Sequence[str], batch: int = 8) -> DetectionEvaluation:
    return _score("float", photos, keras_detections(model, photos, spec, anchors, cfg, batch), classes)


def evaluate_tflite_detector(name: str, model_bytes: bytes, photos: Photos, classes: Sequence[str]) -> DetectionEvaluation:
    """A detector .tflite (not yet written anywhere) through the device runtime on `photos`."""
    detector = open_model_data(model_bytes, name, labels=list(classes), input_spec=photos.spec)
    return _score(name, photos, [detections_in(detector, p) for p in photos.pixels], classes)
