"""A detection bundle's golden set: the boxes the shipped model found on a few held-out photos
on the workstation, checked on the device by class and overlap, not exact floats (an Edge TPU
or another runtime may move a box by a pixel or a score by a step).

    bundle.json "golden": {
      "images": [{"file": "golden/000.jpg", "expected": [{"class": 0, "score": 0.97,
                   "box": [ymin, xmin, ymax, xmax]}]}, ...],        (the op's output: fractions of the input)
      "match": {"iou": 0.5, "same_class": true, "min_score": 0.3},
      "min_agreement": {"cpu": 1.0, "edgetpu": 0.9}, "expected_from": {...}
    }

An image agrees when every expected object scoring at least `min_score` is found again with the
same class and IoU >= `iou`, and every object found at that score was expected. A model's answers
travel as one row per image (`detection_rows`: class, score and box of each slot, class -1 when empty), the
shape the Edge TPU probe's child reports, so the same comparison judges both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .detect_postprocess import raw_detections
from .postprocess import iou_matrix

OBJECT_AGREEMENT = "objects agree (class and IoU) on"  # a detector's agreement: whole images, not top-1 labels
from .golden_files import MAX_LISTED, Comparison, min_agreement, plain_golden_path, read_listed
from .preprocess import ImageReadError, decode_image

SLOT = 6  # class, score, ymin, xmin, ymax, xmax


@dataclass(frozen=True)
class DetectGoldenImage:
    file: str
    expected: np.ndarray  # [N, SLOT]
    bgr: np.ndarray


@dataclass(frozen=True)
class DetectGoldenSet:
    images: list[DetectGoldenImage]
    labels: list[str]
    min_agreement: dict[str, float]
    iou: float
    min_score: float


def _expected(bundle: Bundle, entry: dict[str, Any]) -> np.ndarray:
    found = entry.get("expected")
    rows = []
    for item in found if isinstance(found, list) else [None]:
        ok = isinstance(item, dict) and isinstance(item.get("class"), int) and 0 <= item["class"] < len(bundle.labels)
        box = item.get("box") if ok else None
        ok = ok and isinstance(item.get("score"), (int, float)) and isinstance(box, list) and len(box) == 4 and all(
            isinstance(v, (int, float)) and math.isfinite(v) for v in [item["score"], *box])
        if not ok:
            raise BundleError(f"bundle {bundle.root}: golden entry {entry.get('file')} needs expected objects "
                              "{class, score, box: 4 numbers}; re-create the bundle")
        rows.append([item["class"], item["score"], *box])
    return np.asarray(rows, np.float32).reshape(-1, SLOT)


def read_detect_golden(bundle: Bundle) -> DetectGoldenSet:
    golden = bundle.manifest["golden"]
    match = golden.get("match", {})
    iou, floor = (match.get(k) if isinstance(match, dict) else None for k in ("iou", "min_score"))
    if not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in (iou, floor)):
        raise BundleError(f"bundle {bundle.root}: golden.match needs iou and min_score in (0, 1]; re-create the bundle")
    images = []
    for entry in golden["images"] if isinstance(golden["images"], list) else [None]:
        if not isinstance(entry, dict):
            raise BundleError(f"bundle {bundle.root}: a golden entry is not an object; re-create the bundle")
        name = entry.get("file")
        try:
            bgr = decode_image(read_listed(bundle, name, plain_golden_path(bundle, name)), name)
        except ImageReadError as exc:
            raise BundleError(f"bundle {bundle.root}: {exc}; re-create the bundle") from None
        images.append(DetectGoldenImage(name, _expected(bundle, entry), bgr))
    return DetectGoldenSet(images, bundle.labels, min_agreement(bundle, golden), float(iou), float(floor))


def detection_rows(classifier: Any, outputs: Any) -> np.ndarray:
    """A detector's outputs as one flat row of slots (class, score, box), padded with class -1."""
    boxes, classes, scores = raw_detections(outputs, classifier.layout, classifier.labels)
    size = len(np.asarray(outputs[classifier.layout.boxes]).reshape(-1, 4))
    row = np.zeros((size, SLOT), np.float32)
    row[:, 0] = -1
    row[:len(boxes)] = np.column_stack([classes, scores, boxes]) if len(boxes) else row[:0]
    return row.reshape(-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The tracker's IoU; boxes here are y, x first."""
    return iou_matrix(a[:, [1, 0, 3, 2]], b[:, [1, 0, 3, 2]])


def _unmatched(wanted: np.ndarray, among: np.ndarray, iou: float) -> np.ndarray:
    """Rows of `wanted` without a same-class row of `among` overlapping by `iou`."""
    overlap = _iou(wanted[:, 2:], among[:, 2:]) if len(among) else np.zeros((len(wanted), 0))
    same = wanted[:, None, 0] == among[None, :, 0] if len(among) else overlap.astype(bool)
    return ~np.any((overlap >= iou) & same, axis=1)


def compare_detections(golden: DetectGoldenSet, found_rows: np.ndarray) -> Comparison:
    agreed, diffs, disagreements = 0, [], []
    for image, row in zip(golden.images, np.asarray(found_rows, np.float32)):
        found = row.reshape(-1, SLOT)
        found = found[found[:, 0] >= 0]
        expected = image.expected
        sure_expected, sure_found = expected[expected[:, 1] >= golden.min_score], found[found[:, 1] >= golden.min_score]
        missed, extra = _unmatched(sure_expected, found, golden.iou), _unmatched(sure_found, expected, golden.iou)
        if len(expected) and len(found):
            best = _iou(expected[:, 2:], found[:, 2:]).argmax(axis=1)
            diffs += list(np.abs(expected[:, 1] - found[best, 1]))
        if not missed.any() and not extra.any():
            agreed += 1
        elif len(disagreements) < MAX_LISTED:
            def named(rows_: np.ndarray) -> str:
                return ", ".join(f"{golden.labels[int(r[0])]}" for r in rows_) or "nothing"

            disagreements.append({"file": image.file, "true": "-", "expected": named(sure_expected),
                                  "expected_score": float(sure_expected[:, 1].max()) if len(sure_expected) else 0.0,
                                  "got": named(sure_found),
                                  "got_score": float(sure_found[:, 1].max()) if len(sure_found) else 0.0})
    n = len(golden.images)
    return Comparison(n=n, agreed=agreed, max_abs_diff=float(max(diffs, default=0.0)),
                      mean_abs_diff=float(np.mean(diffs)) if diffs else 0.0, correct=agreed,
                      disagreements=disagreements, measure=OBJECT_AGREEMENT)
