"""Agreement between two detectors' boxes on the same photos, paired by class and IoU, never by
exact floats: convert's tie-break between int8 candidates (which one stays closer to float).
How each model's detections and mAP are measured is train/detect/measure.py, shared with evaluate.
"""

from __future__ import annotations

import numpy as np

from edgepipe.train.detect.anchors import iou_matrix
from edgepipe.train.detect.measure import Detection

AGREEMENT_IOU = 0.5
AGREEMENT_SCORE = 0.3  # detections this confident must be found again by the other model


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
