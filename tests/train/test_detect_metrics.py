"""COCO-style detection metrics on cases small enough to work out by hand.

COCO interpolates precision at 101 recall points (0, 0.01, ..., 1): a class
whose best recall is 0.5 at precision 1 has AP = 51/101. pycocotools divides
by tp + fp + eps, so a perfect precision is 1 - 1e-16: compared approximately.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.train.detect.boxes import BoxedImage
from edgepipe.train.detect.metrics import (DetectionMetrics, PredictedBox, evaluate_detections,
                                           format_detection_report, save_detection_curves)

CLASSES = ("cat", "dog")
HALF = 51 / 101


def image(name: str, boxes: list[list[float]], classes: list[int], size: tuple[int, int] = (200, 100)) -> BoxedImage:
    return BoxedImage(Path(name), *size, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int32))


TRUTH = [image("a.jpg", [[10, 10, 50, 50], [100, 20, 180, 90]], [0, 1]),
         image("b.jpg", [[20, 30, 60, 80]], [0])]


def perfect() -> list[list[PredictedBox]]:
    return [[PredictedBox(int(c), 0.9, *b) for b, c in zip(t.boxes.tolist(), t.classes.tolist())] for t in TRUTH]


def evaluate(predictions, threshold: float = 0.5) -> DetectionMetrics:
    return evaluate_detections(TRUTH, predictions, CLASSES, threshold)


def test_perfect_predictions_score_one():
    m = evaluate(perfect())
    assert (m.map50, m.map50_95, m.precision, m.recall) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert m.ap50 == pytest.approx({"cat": 1.0, "dog": 1.0}) and m.n_truth == {"cat": 2, "dog": 1}
    assert m.to_json()["evaluator"].startswith("pycocotools ")


def test_one_missed_box_halves_recall():
    predictions = perfect()
    predictions[1] = []  # b.jpg's cat is missed: cat recall 1/2
    m = evaluate(predictions)
    assert m.ap50 == pytest.approx({"cat": HALF, "dog": 1.0})
    assert m.map50 == pytest.approx((HALF + 1) / 2)
    assert (m.precision, m.recall) == (1.0, pytest.approx(2 / 3))


def test_a_duplicate_is_a_false_positive_that_costs_no_ap_when_it_scores_lower():
    predictions = perfect()
    predictions[1].append(PredictedBox(0, 0.6, 21, 31, 61, 81))  # a second box on b.jpg's cat
    m = evaluate(predictions)
    assert m.map50 == pytest.approx(1.0)  # every true box is found before the duplicate in score order
    assert (m.precision, m.recall) == pytest.approx((3 / 4, 1.0))
    assert evaluate(predictions, threshold=0.7).precision == 1.0  # the duplicate (0.6) is below the threshold


def test_a_duplicate_that_outranks_a_true_match_costs_ap():
    # cat, by score: b.jpg duplicate 0.95 (match, recall 1/2), b.jpg box 0.9 (its truth is taken: false positive),
    # a.jpg box 0.3 (match, recall 1, precision 2/3). Interpolated: 1 up to recall 0.5, then 2/3.
    predictions = perfect()
    predictions[0][0] = PredictedBox(0, 0.3, 10, 10, 50, 50)
    predictions[1].append(PredictedBox(0, 0.95, 21, 31, 61, 81))
    m = evaluate(predictions, threshold=0.0)
    assert m.ap50["cat"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_a_wrong_class_is_a_miss_and_a_false_positive():
    predictions = perfect()
    predictions[0][1] = PredictedBox(0, 0.9, 100, 20, 180, 90)  # the dog called a cat
    m = evaluate(predictions)
    assert m.ap50["dog"] == 0.0 and m.ap50["cat"] < 1.0
    assert (m.precision, m.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))


def test_loose_boxes_count_at_0_5_but_not_at_strict_ious():
    # Each box shifted so that IoU with its truth is 0.72: a match at 0.5..0.7, not at 0.75..0.95.
    predictions = []
    for t in TRUTH:
        found = []
        for (x0, y0, x1, y1), c in zip(t.boxes.tolist(), t.classes.tolist()):
            width = x1 - x0
            shift = width * (1 - 0.72) / (1 + 0.72)  # IoU of a box slid by s: (w - s) / (w + s)
            found.append(PredictedBox(int(c), 0.9, x0 + shift, y0, x1 + shift, y1))
        predictions.append(found)
    m = evaluate(predictions)
    assert (m.map50, m.map50_95) == pytest.approx((1.0, 0.5))


def test_no_predictions_and_classes_without_truth():
    m = evaluate([[], []])
    assert (m.map50, m.precision, m.recall, m.n_predictions) == (0.0, 0.0, 0.0, 0)
    only_cats = [image("c.jpg", [[0, 0, 10, 10]], [0])]
    m = evaluate_detections(only_cats, [[PredictedBox(1, 0.8, 0, 0, 10, 10)]], CLASSES, 0.5)
    assert m.ap50 == {"cat": 0.0, "dog": None} and m.map50 == 0.0


def test_report_and_curves(tmp_path):
    predictions = perfect()
    predictions[1] = []
    m = evaluate(predictions)
    text = format_detection_report(m)
    assert "mAP@0.5 0.7525" in text and "recall 0.6667" in text
    assert m.curves["cat"][:51] == pytest.approx([1.0] * 51) and m.curves["cat"][51:].max() == 0.0
    path = save_detection_curves(m, tmp_path / "pr.png")
    assert cv2.imread(str(path)).shape[0] > 200


def test_plain_tuples_and_the_default_threshold():
    tuples = [[tuple(box) for box in image] for image in perfect()]
    m = evaluate_detections(TRUTH, tuples, CLASSES)
    assert m.score_threshold == 0.5 and m.map50 == pytest.approx(1.0)


def test_bad_predictions_are_refused():
    with pytest.raises(ValueError, match="2 images but predictions for 1"):
        evaluate([[]])
    with pytest.raises(ValueError, match="class 2 outside"):
        evaluate([[PredictedBox(2, 0.5, 0, 0, 1, 1)], []])
    with pytest.raises(ValueError, match="not finite"):
        evaluate([[PredictedBox(0, float("nan"), 0, 0, 1, 1)], []])


def test_the_device_decoding_and_the_evaluator_agree_on_a_real_model(postprocess_detector):
    """Truth placed where the model's anchors are, the model run, its outputs decoded on the
    device's path and scored: every object found where it is, whole-pixel boxes and all."""
    from edgepipe.device.model.detect_postprocess import DetectOptions, decode_detections, find_detection_outputs

    from detector_model import LABELS, RunDetector, anchor_corners

    run = RunDetector(postprocess_detector)
    layout = find_detection_outputs(postprocess_detector.read_bytes(), postprocess_detector.name)
    frames = [{0: (1, 0.9), 4: (3, 0.8)}, {8: (1, 0.7)}, {2: (0, 0.95), 6: (2, 0.6)}]
    truth, predictions = [], []
    for i, objects in enumerate(frames):
        corners = [anchor_corners(a) for a in objects]
        boxes = [[x0 * 640, y0 * 480, x1 * 640, y1 * 480] for y0, x0, y1, x1 in corners]
        truth.append(image(f"{i}.jpg", boxes, [c for c, _ in objects.values()], (640, 480)))
        found = decode_detections(run(objects), layout, LABELS, (640, 480), (320, 320), DetectOptions(score_threshold=0.1))
        predictions.append([PredictedBox(d.index, d.score, *d.box) for d in found])
    m = evaluate_detections(truth, predictions, LABELS, score_threshold=0.5)
    assert (m.map50, m.map50_95, m.precision, m.recall) == pytest.approx((1.0, 1.0, 1.0, 1.0))
    assert m.ap50["fish"] == pytest.approx(1.0) and m.n_predictions == 5
