"""Named regions of a frame (`run --roi NAME=x,y,w,h`), each classified on its own.

A region is given in pixels (`10,20,200,150`) or in fractions of the frame
(`0,0,0.5,1`: the left half), so the same flag works whatever the capture size.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # cli.py imports this module to parse --roi: it stays light
    import numpy as np

NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # also a topic level and a Home Assistant object id
MAX_PIXELS = 100_000  # a side of any frame; inf and nan fail this range test too


@dataclass(frozen=True)
class Region:
    name: str
    box: tuple[float, float, float, float]  # x, y, w, h: pixels, or fractions when `fractional`
    fractional: bool

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) in this frame, clipped to it; a region outside it is an error."""
        x, y, w, h = self.box
        if self.fractional:
            x, w = x * width, w * width
            y, h = y * height, h * height
        x0, y0 = max(0, round(x)), max(0, round(y))
        x1, y1 = min(width, round(x + w)), min(height, round(y + h))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise ValueError(f"region {self.name} ({self.spec()}) lies outside the {width}x{height} frame")
        return x0, y0, x1, y1

    def crop(self, image: "np.ndarray") -> "np.ndarray":
        x0, y0, x1, y1 = self.pixels(image.shape[1], image.shape[0])
        return image[y0:y1, x0:x1]

    def spec(self) -> str:
        return ",".join(f"{v:g}" for v in self.box)


def parse_region(text: str) -> Region:
    """argparse type for --roi: 'NAME=x,y,w,h' in pixels, or in fractions when all are <= 1 with a decimal point."""
    name, sep, rest = text.partition("=")
    if not sep or not NAME.fullmatch(name.strip()):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=x,y,w,h (NAME: letters, digits, _ or -, up to 32)")
    parts = [p.strip() for p in rest.split(",")]
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4 or not all(0 <= v <= MAX_PIXELS for v in box) or box[2] <= 0 or box[3] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give x,y,w,h as 4 finite numbers from 0 to {MAX_PIXELS}, "
                                         "w and h > 0")
    fractional = all(v <= 1 for v in box) and any("." in p for p in parts)
    if fractional and (box[0] + box[2] > 1.0001 or box[1] + box[3] > 1.0001):
        raise argparse.ArgumentTypeError(f"{text!r}: a region in fractions must lie within the frame (x+w, y+h <= 1)")
    if not fractional and any(v != int(v) for v in box):
        raise argparse.ArgumentTypeError(f"{text!r}: pixels are whole numbers; fractions are all <= 1")
    return Region(name.strip(), box, fractional)  # type: ignore[arg-type]


def region_boxes(regions: "Sequence[Region]", width: int, height: int) -> dict[str, tuple[int, int, int, int]]:
    """Each region's (x0, y0, x1, y1) in a width x height frame; one that lies outside it is the user's to fix."""
    from edgepipe.core.errors import UserError

    boxes = {}
    for region in regions:
        try:
            boxes[region.name] = region.pixels(width, height)
        except ValueError as exc:
            raise UserError(f"{exc}: fix --roi {region.name}=...") from None
    return boxes


def region_name_clash(names: "Sequence[str]") -> str | None:
    """Why these --roi names cannot all be used, or None. Names become MQTT topic levels and Home
    Assistant object ids, which fold case and treat - and _ alike: so must they."""
    folded: dict[str, list[str]] = {}
    for name in names:
        folded.setdefault(name.lower().replace("-", "_"), []).append(name)
    clashes = [group for group in folded.values() if len(group) > 1]
    if not clashes:
        return None
    said = "; ".join(f"{group[0]} given twice" if len(set(group)) == 1 else " and ".join(group) + " are one name"
                     for group in clashes)
    return f"--roi names must differ: {said} (topics and Home Assistant ids ignore case and - vs _)"
