"""What TFLite_Detection_PostProcess does, in numpy, for the float model during training.

Validation mAP is measured every epoch on the Keras model's raw outputs; the
shipped model does the same with the custom op on the device. Both use the
op's fast path (use_regular_nms=false, max_classes_per_detection=1): each
anchor keeps its best class, anchors below the score threshold are dropped,
and one greedy NMS runs over all classes together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anchors import decode, iou_matrix


@dataclass(frozen=True)
class PostprocessConfig:
    """The attributes of the exported TFLite_Detection_PostProcess op (Coral's SSDs use 20 detections)."""

    max_detections: int = 20
    score_threshold: float = 0.01
    iou_threshold: float = 0.6
    candidates: int = 200  # best-scoring anchors NMS looks at


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int) -> list[int]:
    """Greedy non-maximum suppression; indices of kept boxes, best first."""
    order = list(np.argsort(-scores, kind="stable"))
    kept: list[int] = []
    while order and len(kept) < limit:
        best = order.pop(0)
        kept.append(best)
        if order:
            overlap = iou_matrix(boxes[best][None], boxes[order])[0]
            order = [i for i, o in zip(order, overlap) if o <= iou_threshold]
    return kept


def detections(box_pred: np.ndarray, scores: np.ndarray, anchors: np.ndarray,
               cfg: PostprocessConfig = PostprocessConfig()) -> list[tuple[int, float, np.ndarray]]:
    """One image's detections: (class, score, normalised box (ymin, xmin, ymax, xmax)), best first."""
    best_class = scores.argmax(axis=-1)
    best_score = scores[np.arange(len(scores)), best_class]
    candidates = np.flatnonzero(best_score >= cfg.score_threshold)
    candidates = candidates[np.argsort(-best_score[candidates], kind="stable")][: cfg.candidates]
    boxes = decode(box_pred[candidates], anchors[candidates])
    kept = nms(boxes, best_score[candidates], cfg.iou_threshold, cfg.max_detections)
    return [(int(best_class[candidates[i]]), float(best_score[candidates[i]]), boxes[i]) for i in kept]


def to_pixels(found: list[tuple[int, float, np.ndarray]], width: int, height: int) -> list[tuple]:
    """Detections as the evaluator takes them: (class, score, x0, y0, x1, y1) in the photo's pixels."""
    out = []
    for cls, score, (ymin, xmin, ymax, xmax) in found:
        out.append((cls, score, float(np.clip(xmin, 0, 1) * width), float(np.clip(ymin, 0, 1) * height),
                    float(np.clip(xmax, 0, 1) * width), float(np.clip(ymax, 0, 1) * height)))
    return out
