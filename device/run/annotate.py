"""Drawing a result on its frame, for the outputs that show frames."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from edgepipe.device.model.postprocess import Detection, Prediction, scored

REGION_COLOUR = (0, 200, 255)  # BGR amber: visible on most scenes
DETECTION_COLOUR = (80, 220, 80)  # BGR green: told apart from the regions' amber


def _label(top: list[Prediction]) -> str:
    return scored(top[0].label, top[0].score) if top else "-"


def annotate(bgr: np.ndarray, top: list[Prediction], fps: float,
             regions: dict[str, tuple[tuple[int, int, int, int], list[Prediction]]] | None = None,
             unknown: bool = False, detections: Sequence[Detection] = (),
             zones: dict[str, tuple[tuple[int, int, int, int], str]] | None = None) -> np.ndarray:
    """A copy of the frame with the best label, its score and the FPS in the corner
    ("unknown (best ...)" when the run rejected the frame), each region (--roi)
    outlined with its own name and label, each detected object boxed with its label
    (and track id), and each zone of a detector outlined with what is in it."""
    out = bgr.copy()
    if zones is not None or detections:
        headline = f"{len(detections)} object" + ("" if len(detections) == 1 else "s")
    else:
        headline = f"unknown (best {_label(top)})" if unknown else _label(top)
    scale = max(0.5, out.shape[1] / 800)
    thickness = max(1, round(scale * 2))
    boxes = [(box, f"{name}: {_label(region_top)}", REGION_COLOUR) for name, (box, region_top) in (regions or {}).items()]
    boxes += [(box, f"{name}: {text}", REGION_COLOUR) for name, (box, text) in (zones or {}).items()]
    boxes += [(d.box, ("" if d.track_id is None else f"#{d.track_id} ") + scored(d.label, d.score), DETECTION_COLOUR)
              for d in detections]
    for (x0, y0, x1, y1), text, colour in boxes:
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, thickness)
        y = max(y1 - 6, h + base)
        cv2.rectangle(out, (x0, y - h - base), (x0 + w + 8, y + base), (0, 0, 0), -1)
        cv2.putText(out, text, (x0 + 4, y), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.8, colour, thickness, cv2.LINE_AA)
    for row, line in enumerate((headline, f"{fps:.1f} fps")):
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = int((row + 1) * (h + base + 8))
        cv2.rectangle(out, (0, y - h - base - 4), (w + 12, y + 4), (0, 0, 0), -1)
        cv2.putText(out, line, (6, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out
