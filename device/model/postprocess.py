"""From a model's outputs to what the user sees: for classification, top-k labels
above a threshold, optionally smoothed over time so a live label does not flicker
frame to frame; for detection (tasks.py), the `Detection`s a result carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


SCORE_DECIMALS = 3  # every score a person reads (classify, run, the overlay, the page) shows this many


def scored(label: str, score: float) -> str:
    """"daisy 0.996": a label and its score as every command prints them."""
    return f"{label} {score:.{SCORE_DECIMALS}f}"


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    score: float

    def to_json(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies every field, a cost on every frame of `run --json`.
        return {"index": self.index, "label": self.label, "score": round(self.score, 6)}


@dataclass(frozen=True)
class Detection:
    """One object found in a frame: which class (`index`, as in `Prediction`), how sure, and
    where, as a box in the frame's own pixels (x0, y0 inclusive; x1, y1 exclusive).
    `track_id` follows one object from frame to frame when a tracker has assigned one."""

    index: int
    label: str
    score: float
    box: tuple[int, int, int, int]
    track_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"index": self.index, "label": self.label, "score": round(self.score, 6),
                                "box": list(self.box)}
        if self.track_id is not None:
            data["track_id"] = self.track_id
        return data


def top_k(scores: np.ndarray, labels: list[str], k: int = 5, threshold: float = 0.0) -> list[Prediction]:
    """The k best classes, best first, dropping those scoring below `threshold`.

    Equal scores rank by class index, lower first, as np.argmax ranks them: evaluate, verify, the
    golden set and convert's accuracies all take argmax, so run and classify must name the same
    class on a tie. Ties are common: a uint8 model's scores and the IMX500 sensor's are 8-bit
    levels. (argpartition's order among equal scores follows its internal selection, not the
    class index, and changed with k: a tie between the last two of 4 classes went to the higher.)

    np.partition finds the k-th best score in O(classes) for the 1001-class ImageNet models; only
    the classes scoring at least that are sorted, taken in index order so the stable sort keeps
    the lower index first among equals.
    """
    k = max(0, min(k, scores.size))
    if k == 0:
        return []
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    candidates = np.flatnonzero(scores >= kth)
    best = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
    return [
        Prediction(int(i), labels[i], float(scores[i]))
        for i in best
        if scores[i] >= threshold
    ]


class ScoreSmoother:
    """Exponential moving average of score vectors: s = alpha * new + (1 - alpha) * s.

    alpha = 1 is no smoothing; small alpha trades reaction time for a steady label.
    """

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"smoothing alpha {alpha} must be in (0, 1]")
        self.alpha = np.float32(alpha)
        self._state: np.ndarray | None = None

    def update(self, scores: np.ndarray) -> np.ndarray:
        if self._state is None or self._state.shape != scores.shape:
            self._state = scores.astype(np.float32, copy=True)
        else:
            self._state += self.alpha * (scores - self._state)
        return self._state.copy()


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in `a` with every box in `b` (x0, y0, x1, y1 rows)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
