"""The shapes detection data takes on its way in: what a format's parser
read (`RawBox`, `ImageRecord`, before anything is known about the image),
and what training and evaluation use (`BoxedImage`, `DetectionData`).

Parsers only check that a file is well-formed; whether a box fits its image
is checked once, in `checked_boxes`, against the size of the decoded image,
so every format gets the same rule and the same message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgepipe.core.errors import UserError

# How far a box may reach past the image's edge and still be clipped rather than refused:
# annotation tools write 1-based corners (xmax == width + 1) or round outwards by a pixel.
EDGE_TOLERANCE_PX = 2.0
EDGE_TOLERANCE_FRACTION = 0.01


@dataclass(frozen=True)
class RawBox:
    """One box as its file states it: corners in pixels, or fractions of the image when `normalised` (YOLO)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float
    where: str  # "FILE line N" or "FILE, annotation id N": what a message names
    normalised: bool = False


@dataclass(frozen=True)
class ImageRecord:
    """One image's annotation as a parser read it; `reference` names the image as the file does."""

    reference: str
    source: str  # the annotation file, for messages
    boxes: tuple[RawBox, ...]
    size: tuple[int, int] | None = None  # declared (width, height), when the format says


@dataclass(frozen=True, eq=False)
class BoxedImage:
    """An image and its boxes: x0, y0, x1, y1 in pixels of the decoded image (EXIF orientation applied)."""

    path: Path
    width: int
    height: int
    boxes: np.ndarray  # float32 [N, 4]
    classes: np.ndarray  # int32 [N], indices into DetectionData.classes


@dataclass(frozen=True)
class DetectionData:
    """A validated detection data set: class names (sorted), the two parts, and what the user should know."""

    classes: tuple[str, ...]
    train: tuple[BoxedImage, ...]
    test: tuple[BoxedImage, ...]
    notes: tuple[str, ...]


def _tolerance(side: int) -> float:
    return max(EDGE_TOLERANCE_PX, EDGE_TOLERANCE_FRACTION * side)


def checked_box(box: RawBox, width: int, height: int) -> tuple[float, float, float, float]:
    """The box in pixels, clipped to the image; a UserError naming `box.where` when it does not fit.

    Refused: a corner that is not a finite number, a box with no area, and a
    corner further outside the image than the tolerance (a box drawn on
    another image, or x and y swapped).
    """
    corners = (box.x0, box.y0, box.x1, box.y1)
    if not all(math.isfinite(v) for v in corners):
        raise UserError(f"{box.where}: box {_numbers(corners)} has a coordinate that is not a number; fix the box")
    if box.normalised:
        corners = (box.x0 * width, box.y0 * height, box.x1 * width, box.y1 * height)
    x0, y0, x1, y1 = corners
    if not (x1 > x0 and y1 > y0):
        raise UserError(f"{box.where}: box {_numbers(corners)} (x0, y0, x1, y1) has no area "
                        "(each max must be above its min); fix or delete the box")
    for name, value, side in (("x", x0, width), ("y", y0, height), ("x", x1, width), ("y", y1, height)):
        if not -_tolerance(side) <= value <= side + _tolerance(side):
            axis = "width" if name == "x" else "height"
            raise UserError(f"{box.where}: box {_numbers(corners)} (x0, y0, x1, y1) reaches {name}={value:g}, "
                            f"outside the {width}x{height} image ({axis} {side}); fix the box or the image")
    clipped = (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))
    if not (clipped[2] > clipped[0] and clipped[3] > clipped[1]):
        raise UserError(f"{box.where}: box {_numbers(corners)} lies on the edge of the {width}x{height} image "
                        "with no area inside it; fix or delete the box")
    return clipped


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def boxed_image(path: Path, width: int, height: int, record: ImageRecord, class_index: dict[str, int]) -> BoxedImage:
    """`record`'s boxes checked against the decoded image's size, classes as indices."""
    boxes = np.array([checked_box(b, width, height) for b in record.boxes], dtype=np.float32).reshape(-1, 4)
    classes = np.array([class_index[b.label] for b in record.boxes], dtype=np.int32)
    return BoxedImage(path, width, height, boxes, classes)
