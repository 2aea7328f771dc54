"""Box-aware augmentation: every geometric change moves the boxes with the pixels.

Numpy and OpenCV on one decoded photo at a time, before the frozen backbone
sees it (its output is cached, see trainer.py), so each augmented copy costs
one backbone pass however it was made. The clean path is exactly the device's
preprocessing (`resize_to_input`, a stretch to the model's square input), so
boxes scale by the same factors the device later scales them back by.

- crop jitter (SSD's random crop): a window of 30-100% of each side; a box
  stays when its centre is inside the window and is clipped to it; a window
  that would keep no box is redrawn (and after a few tries, no crop);
- zoom out: the photo on a larger canvas (up to `zoom_out` times each side)
  filled with the photo's mean colour, so objects are also seen small;
- horizontal flip; brightness, contrast, saturation and hue jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edgepipe.device.model.preprocess import InputSpec, resize_to_input

CROP_TRIES = 20


@dataclass(frozen=True)
class BoxAugmentation:
    flip: bool = True
    crop: float = 0.7  # probability of a crop window
    min_crop: float = 0.3  # smallest window side, as a fraction of the photo's side
    zoom_out: float = 1.6  # largest canvas side, as a multiple of the photo's (1 = never)
    zoom_out_probability: float = 0.3
    brightness: float = 0.15  # shift, as a fraction of the pixel range
    contrast: float = 0.25
    saturation: float = 0.3
    hue: float = 8.0  # degrees


@dataclass(frozen=True)
class Sample:
    """One training example ready for the backbone: uint8 pixels at the model's input size
    and its boxes, normalised (ymin, xmin, ymax, xmax), with 0-based classes."""

    pixels: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray


def _normalised(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Pixel (x0, y0, x1, y1) -> normalised (ymin, xmin, ymax, xmax), clipped to the image."""
    out = np.stack([boxes[:, 1] / height, boxes[:, 0] / width, boxes[:, 3] / height, boxes[:, 2] / width], axis=-1)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def clean_sample(bgr: np.ndarray, boxes: np.ndarray, classes: np.ndarray, spec: InputSpec) -> Sample:
    """The photo as the device will see it, and its boxes."""
    height, width = bgr.shape[:2]
    return Sample(resize_to_input(bgr, spec), _normalised(boxes, width, height), classes.astype(np.int32))


def _crop(bgr, boxes, classes, aug: BoxAugmentation, rng: np.random.Generator):
    height, width = bgr.shape[:2]
    for _ in range(CROP_TRIES):
        w = rng.uniform(aug.min_crop, 1.0) * width
        h = rng.uniform(aug.min_crop, 1.0) * height
        if not 0.5 <= (w / width) / (h / height) <= 2.0:
            continue
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = ((centres[:, 0] > x0) & (centres[:, 0] < x0 + w) & (centres[:, 1] > y0) & (centres[:, 1] < y0 + h))
        if not keep.any():
            continue
        window = np.array([x0, y0, x0, y0], np.float32)
        kept = np.clip(boxes[keep] - window, 0, [w, h, w, h]).astype(np.float32)
        ix0, iy0 = int(x0), int(y0)
        return bgr[iy0: iy0 + max(1, int(h)), ix0: ix0 + max(1, int(w))], kept - [ix0 - x0, iy0 - y0] * 2, classes[keep]
    return bgr, boxes, classes


def _zoom_out(bgr, boxes, aug: BoxAugmentation, rng: np.random.Generator):
    height, width = bgr.shape[:2]
    factor = rng.uniform(1.0, aug.zoom_out)
    canvas_h, canvas_w = int(height * factor), int(width * factor)
    y0, x0 = int(rng.uniform(0, canvas_h - height)), int(rng.uniform(0, canvas_w - width))
    canvas = np.empty((canvas_h, canvas_w, 3), np.uint8)
    canvas[:] = bgr.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    canvas[y0: y0 + height, x0: x0 + width] = bgr
    return canvas, boxes + np.array([x0, y0, x0, y0], np.float32)


def _colour(rgb: np.ndarray, aug: BoxAugmentation, rng: np.random.Generator) -> np.ndarray:
    if aug.saturation > 0 or aug.hue > 0:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-aug.hue, aug.hue) / 2) % 180  # OpenCV hue is degrees / 2
        hsv[..., 1] *= rng.uniform(1 - aug.saturation, 1 + aug.saturation)
        rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    image = rgb.astype(np.float32)
    mean = image.mean()
    image = (image - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
    image += rng.uniform(-aug.brightness, aug.brightness) * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def augmented_sample(bgr: np.ndarray, boxes: np.ndarray, classes: np.ndarray, spec: InputSpec,
                     aug: BoxAugmentation, rng: np.random.Generator) -> Sample:
    """One random variant of the photo and its boxes (pixel x0, y0, x1, y1 in, normalised out)."""
    boxes = np.asarray(boxes, np.float32)
    if len(boxes) and aug.zoom_out > 1 and rng.random() < aug.zoom_out_probability:
        bgr, boxes = _zoom_out(bgr, boxes, aug, rng)
    elif len(boxes) and rng.random() < aug.crop:
        bgr, boxes, classes = _crop(bgr, boxes, classes, aug, rng)
    sample = clean_sample(bgr, boxes, classes, spec)
    pixels, boxes = sample.pixels, sample.boxes
    if aug.flip and rng.random() < 0.5:
        pixels = np.ascontiguousarray(pixels[:, ::-1])
        boxes = np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=-1)
    return Sample(_colour(pixels, aug, rng), boxes.astype(np.float32), sample.classes)
