"""Drawing a result on its frame, for the outputs that show frames."""

from __future__ import annotations

import cv2
import numpy as np

from .postprocess import Prediction


def annotate(bgr: np.ndarray, top: list[Prediction], fps: float, unknown: bool = False) -> np.ndarray:
    """A copy of the frame with the best label, its score and the FPS in the corner
    ("unknown (best ...)" when the run rejected the frame)."""
    out = bgr.copy()
    text = f"{top[0].label} {top[0].score:.2f}" if top else "-"
    if unknown:
        text = f"unknown (best {text})"
    scale = max(0.5, out.shape[1] / 800)
    thickness = max(1, round(scale * 2))
    for row, line in enumerate((text, f"{fps:.1f} fps")):
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = int((row + 1) * (h + base + 8))
        cv2.rectangle(out, (0, y - h - base - 4), (w + 12, y + 4), (0, 0, 0), -1)
        cv2.putText(out, line, (6, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
