"""Detection metrics as the COCO evaluator computes them: mAP@0.5,
mAP@[.5:.95] and per-class AP, plus precision and recall at the score
threshold a device would use, and the precision-recall curves.

The numbers come from pycocotools itself (the reference implementation every
paper and leaderboard quotes), fed from memory, so "mAP" here means what it
means everywhere else. Only the thresholded precision/recall is counted here,
from the evaluator's own matches at IoU 0.5.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from edgepipe.device.model.detect_postprocess import DEFAULT_SCORE_THRESHOLD

from .boxes import BoxedImage

IOU_FOR_PR = 0.5  # precision/recall at the threshold and the curves use the PASCAL IoU


class PredictedBox(NamedTuple):
    """One detection: class index, score and corners x0, y0, x1, y1 in pixels of the image.

    A tuple, so a plain (class_id, score, x0, y0, x1, y1) is accepted where one is expected.
    """

    class_id: int
    score: float
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class DetectionMetrics:
    """COCO-style results. AP of a class without ground-truth boxes is None (not in the means)."""

    classes: tuple[str, ...]
    map50: float
    map50_95: float
    ap50: dict[str, float | None]
    ap50_95: dict[str, float | None]
    precision: float  # at `score_threshold`, IoU 0.5, every class pooled
    recall: float
    score_threshold: float
    n_images: int
    n_truth: dict[str, int]
    n_predictions: int
    recall_points: np.ndarray = field(repr=False)  # COCO's 101 recall points
    curves: dict[str, np.ndarray] = field(repr=False)  # class -> interpolated precision at each recall point, IoU 0.5

    def to_json(self) -> dict[str, Any]:
        return {
            "map50": round(self.map50, 6),
            "map50_95": round(self.map50_95, 6),
            "precision": round(self.precision, 6),
            "recall": round(self.recall, 6),
            "score_threshold": self.score_threshold,
            "per_class": {name: {"ap50": _rounded(self.ap50[name]), "ap50_95": _rounded(self.ap50_95[name]),
                                 "boxes": self.n_truth[name]} for name in self.classes},
            "n_images": self.n_images,
            "n_predictions": self.n_predictions,
            "evaluator": f"pycocotools {metadata.version('pycocotools')}",
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _check(truth: Sequence[BoxedImage], predictions: Sequence[Sequence[PredictedBox]], classes: Sequence[str]) -> None:
    if len(truth) != len(predictions):
        raise ValueError(f"{len(truth)} images but predictions for {len(predictions)}")
    for image, found in zip(truth, predictions):
        for class_id, *numbers in found:
            if not (0 <= class_id < len(classes) and int(class_id) == class_id):
                raise ValueError(f"{image.path}: predicted class {class_id} outside 0..{len(classes) - 1}")
            if not all(np.isfinite(numbers)):
                raise ValueError(f"{image.path}: a predicted box or score is not finite")


def _coco(images: list[dict], annotations: list[dict], classes: Sequence[str]):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations,
                    "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def _xywh(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _datasets(truth: Sequence[BoxedImage], predictions: Sequence[Sequence[PredictedBox]], classes: Sequence[str]):
    images = [{"id": i + 1, "width": t.width, "height": t.height} for i, t in enumerate(truth)]
    gt, dt = [], []
    for i, (image, found) in enumerate(zip(truth, predictions), start=1):
        for box, class_id in zip(image.boxes.tolist(), image.classes.tolist()):
            xywh = _xywh(*box)
            gt.append({"id": len(gt) + 1, "image_id": i, "category_id": int(class_id) + 1, "bbox": xywh,
                       "area": xywh[2] * xywh[3], "iscrowd": 0})
        for class_id, score, *corners in found:
            xywh = _xywh(*corners)
            dt.append({"id": len(dt) + 1, "image_id": i, "category_id": int(class_id) + 1, "bbox": xywh,
                       "area": xywh[2] * xywh[3], "score": float(score)})
    return _coco(images, gt, classes), _coco(images, dt, classes)


def _mean_ap(precision: np.ndarray) -> float | None:
    """COCO's mean over the valid entries (-1 marks a class without ground truth)."""
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else None


def _at_threshold(evaluation, score_threshold: float, n_truth: int) -> tuple[float, float]:
    """Pooled precision and recall of the detections scoring at least the threshold, from COCO's matches at IoU 0.5.

    COCO matches greedily from the highest score down, so dropping the
    detections below a threshold leaves every match above it unchanged.
    """
    params = evaluation.params
    t = int(np.argmin(np.abs(params.iouThrs - IOU_FOR_PR)))
    true_positives = false_positives = 0
    for result in evaluation.evalImgs:
        if result is None or result["aRng"] != params.areaRng[0] or result["maxDet"] != params.maxDets[-1]:
            continue
        scores = np.asarray(result["dtScores"])
        counted = (scores >= score_threshold) & ~np.asarray(result["dtIgnore"][t], bool)
        matched = np.asarray(result["dtMatches"][t]) > 0
        true_positives += int(np.sum(counted & matched))
        false_positives += int(np.sum(counted & ~matched))
    detections = true_positives + false_positives
    return (true_positives / detections if detections else 0.0), (true_positives / n_truth if n_truth else 0.0)


def evaluate_detections(truth: Sequence[BoxedImage], predictions: Sequence[Sequence[PredictedBox]],
                        classes: Sequence[str], score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> DetectionMetrics:
    """Score `predictions` (one list per image of `truth`, same order) with the COCO evaluator.

    Every detection counts towards AP (COCO's convention: pass them all, low
    scores included, up to the model's own maximum per image); precision and
    recall count only those scoring at least `score_threshold`.
    """
    from pycocotools.cocoeval import COCOeval

    classes = tuple(classes)
    _check(truth, predictions, classes)
    gt, dt = _datasets(truth, predictions, classes)
    evaluation = COCOeval(gt, dt, iouType="bbox")
    most = max([len(p) for p in predictions] + [100])
    evaluation.params.maxDets = [1, 10, most]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # [IoU, recall, class] for all areas, most detections
    t50 = int(np.argmin(np.abs(evaluation.params.iouThrs - IOU_FOR_PR)))
    counts = np.bincount(np.concatenate([t.classes for t in truth] + [np.zeros(0, np.int32)]).astype(np.int64),
                         minlength=len(classes))
    ap50 = {name: _mean_ap(precision[t50, :, k]) for k, name in enumerate(classes)}
    ap50_95 = {name: _mean_ap(precision[:, :, k]) for k, name in enumerate(classes)}
    curves = {name: np.clip(precision[t50, :, k], 0.0, 1.0) for k, name in enumerate(classes) if counts[k]}
    pooled_precision, pooled_recall = _at_threshold(evaluation, score_threshold, int(counts.sum()))
    return DetectionMetrics(
        classes=classes,
        map50=_mean_ap(precision[t50]) or 0.0,
        map50_95=_mean_ap(precision) or 0.0,
        ap50=ap50,
        ap50_95=ap50_95,
        precision=pooled_precision,
        recall=pooled_recall,
        score_threshold=float(score_threshold),
        n_images=len(truth),
        n_truth={name: int(counts[k]) for k, name in enumerate(classes)},
        n_predictions=sum(len(p) for p in predictions),
        recall_points=np.asarray(evaluation.params.recThrs),
        curves=curves,
    )


def format_detection_report(metrics: DetectionMetrics) -> str:
    """The human table: the means, precision/recall at the threshold, AP per class."""
    def ap(value: float | None) -> str:
        return "     -" if value is None else f"{value:6.4f}"

    lines = [f"mAP@0.5 {metrics.map50:.4f}  mAP@[.5:.95] {metrics.map50_95:.4f}  "
             f"(n={metrics.n_images} images, {sum(metrics.n_truth.values())} boxes)",
             f"at score >= {metrics.score_threshold:g}: precision {metrics.precision:.4f}  recall {metrics.recall:.4f}"]
    width = max([len("class")] + [len(name) for name in metrics.classes])
    lines += ["", f"{'class':<{width}}  AP@0.5  AP@[.5:.95]  boxes"]
    for name in metrics.classes:
        lines.append(f"{name:<{width}}  {ap(metrics.ap50[name])}  {ap(metrics.ap50_95[name])}       "
                     f"{metrics.n_truth[name]:5d}")
    return "\n".join(lines)


def save_detection_curves(metrics: DetectionMetrics, path: str | Path) -> Path:
    """The precision-recall curve of every class with boxes, as a PNG."""
    from ..plots import save_precision_recall_curves

    return save_precision_recall_curves(metrics.recall_points, metrics.curves, path,
                                        f"mAP@0.5 {metrics.map50:.3f} (n={metrics.n_images})")
