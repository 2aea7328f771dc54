"""SSD anchors: where the detector looks, and how a box is written relative to an anchor.

The layout follows the TF Object Detection API's SSDLite-MobileNetV2 (the
model family Coral ships compiled): six feature maps at strides 16, 32, 64,
128, 256, 512; anchor scales spread linearly from 0.2 to 0.95 of the image;
three anchors per cell on the finest map (a small 0.1 box and two elongated
ones) and six elsewhere. Boxes are encoded exactly as the TFLite
`TFLite_Detection_PostProcess` op decodes them (centre-size offsets divided
by the anchor size, times y/x/h/w scales 10, 10, 5, 5), so the op can stand in
for the decoder on the device. Everything here is numpy: the same arrays feed
the loss, the export (as the op's constant anchor input) and the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# TFLite_Detection_PostProcess's y_scale, x_scale, h_scale, w_scale (the OD API's box coder defaults).
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)
STRIDES = (16, 32, 64, 128, 256, 512)
MIN_SCALE, MAX_SCALE = 0.2, 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)
FIRST_LEVEL_BOXES = ((0.1, 1.0), (MIN_SCALE, 2.0), (MIN_SCALE, 0.5))  # (scale, aspect) on the finest map


def feature_sizes(input_size: int) -> list[int]:
    """Side of each feature map for a square input: MobileNetV2 gives stride 16 and 32,
    each extra layer halves ('same' padding, so sides round up)."""
    sizes = [math.ceil(input_size / 16), math.ceil(input_size / 32)]
    while len(sizes) < len(STRIDES):
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def level_boxes(level: int) -> list[tuple[float, float]]:
    """(scale, aspect ratio) of the anchors in each cell of feature map `level`."""
    if level == 0:
        return list(FIRST_LEVEL_BOXES)
    scales = np.linspace(MIN_SCALE, MAX_SCALE, len(STRIDES))
    scale = float(scales[level])
    following = float(scales[level + 1]) if level + 1 < len(STRIDES) else 1.0
    return [(scale, a) for a in ASPECT_RATIOS] + [(math.sqrt(scale * following), 1.0)]


def anchors_per_cell() -> list[int]:
    return [len(level_boxes(level)) for level in range(len(STRIDES))]


def make_anchors(input_size: int) -> np.ndarray:
    """All anchors, [N, 4] float32 (ycenter, xcenter, h, w) normalised to [0, 1], in the order the
    model's heads emit them: level, then row, column, anchor in the cell."""
    rows = []
    for level, side in enumerate(feature_sizes(input_size)):
        shapes = level_boxes(level)
        centres = (np.arange(side, dtype=np.float64) + 0.5) / side
        cy, cx = np.meshgrid(centres, centres, indexing="ij")
        hw = np.array([(s / math.sqrt(a), s * math.sqrt(a)) for s, a in shapes])  # (h, w) per anchor
        grid = np.zeros((side, side, len(shapes), 4))
        grid[..., 0], grid[..., 1] = cy[..., None], cx[..., None]
        grid[..., 2], grid[..., 3] = hw[:, 0], hw[:, 1]
        rows.append(grid.reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def to_corners(centre_size: np.ndarray) -> np.ndarray:
    """(ycenter, xcenter, h, w) -> (ymin, xmin, ymax, xmax)."""
    c = np.asarray(centre_size, np.float32)
    half = c[..., 2:] / 2
    return np.concatenate([c[..., :2] - half, c[..., :2] + half], axis=-1)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every corner box in `a` [M, 4] with every one in `b` [K, 4] -> [M, K]."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=-1)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=-1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=-1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def encode(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Corner boxes [N, 4] (ymin, xmin, ymax, xmax) relative to their anchors, as the postprocess op decodes."""
    h = np.maximum(boxes[:, 2] - boxes[:, 0], 1e-6)
    w = np.maximum(boxes[:, 3] - boxes[:, 1], 1e-6)
    cy, cx = boxes[:, 0] + h / 2, boxes[:, 1] + w / 2
    ys, xs, hs, ws = BOX_SCALES
    return np.stack([(cy - anchors[:, 0]) / anchors[:, 2] * ys, (cx - anchors[:, 1]) / anchors[:, 3] * xs,
                     np.log(h / anchors[:, 2]) * hs, np.log(w / anchors[:, 3]) * ws], axis=-1).astype(np.float32)


def decode(encoded: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """The inverse of `encode`: offsets [..., N, 4] -> corner boxes (what TFLite_Detection_PostProcess computes)."""
    ys, xs, hs, ws = BOX_SCALES
    cy = encoded[..., 0] / ys * anchors[:, 2] + anchors[:, 0]
    cx = encoded[..., 1] / xs * anchors[:, 3] + anchors[:, 1]
    h = np.exp(encoded[..., 2] / hs) * anchors[:, 2]
    w = np.exp(encoded[..., 3] / ws) * anchors[:, 3]
    return np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1)


@dataclass(frozen=True)
class Matching:
    """RetinaNet's rule: IoU >= positive is an object, < negative is background, between is ignored;
    every ground-truth box also claims its best anchor, so no object goes unlearned."""

    positive: float = 0.5
    negative: float = 0.4


IGNORE = -1  # class target of an anchor the loss skips
BACKGROUND = 0  # class targets are 1 + class index for objects


def assign(boxes: np.ndarray, classes: np.ndarray, anchors: np.ndarray, matching: Matching = Matching()) -> np.ndarray:
    """Training targets for one image: [N, 5] float32, the encoded box (4) and the class target (1).

    `boxes` are normalised corner boxes (ymin, xmin, ymax, xmax), `classes` 0-based.
    """
    targets = np.zeros((len(anchors), 5), np.float32)
    if len(boxes) == 0:
        return targets
    iou = iou_matrix(to_corners(anchors), boxes)
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(anchors)), best]
    cls = np.where(best_iou >= matching.positive, classes[best] + 1, BACKGROUND)
    cls = np.where((best_iou >= matching.negative) & (best_iou < matching.positive), IGNORE, cls)
    forced = iou.argmax(axis=0)  # each box's best anchor
    cls[forced] = classes + 1
    best[forced] = np.arange(len(boxes))
    positive = cls > 0
    targets[positive, :4] = encode(boxes[best[positive]], anchors[positive])
    targets[:, 4] = cls
    return targets
