"""Box-aware augmentation: the boxes must still frame the object after every change."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.device.model.preprocess import InputSpec
from edgepipe.train.detect.augment import BoxAugmentation, augmented_sample, clean_sample

SPEC = InputSpec(height=160, width=160)


def _photo(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, noisy 480x320 photo with one bright, textured object and its pixel box."""
    photo = rng.integers(0, 40, (320, 480, 3), dtype=np.uint8)
    x0, y0, x1, y1 = 150, 60, 330, 250
    photo[y0:y1, x0:x1] = rng.integers(215, 256, (y1 - y0, x1 - x0, 3), dtype=np.uint8)
    return photo, np.array([[x0, y0, x1, y1]], np.float32)


def _inside_and_outside(pixels: np.ndarray, box: np.ndarray) -> tuple[float, float]:
    """Mean brightness inside the box (shrunk a little) and of the whole image outside it."""
    h, w = pixels.shape[:2]
    y0, x0, y1, x1 = (box * [h, w, h, w]).round().astype(int)
    margin_y, margin_x = max(1, (y1 - y0) // 8), max(1, (x1 - x0) // 8)
    inside = pixels[y0 + margin_y: y1 - margin_y, x0 + margin_x: x1 - margin_x].mean()
    mask = np.ones((h, w), bool)
    mask[max(0, y0 - 2): y1 + 2, max(0, x0 - 2): x1 + 2] = False
    return float(inside), float(pixels[mask].mean()) if mask.any() else 0.0


def test_clean_sample_scales_boxes_as_the_device_resizes():
    photo, box = _photo(np.random.default_rng(0))
    sample = clean_sample(photo, box, np.array([0]), SPEC)
    assert sample.pixels.shape == (160, 160, 3)
    np.testing.assert_allclose(sample.boxes, [[60 / 320, 150 / 480, 250 / 320, 330 / 480]], atol=1e-6)


@pytest.mark.parametrize("seed", range(12))
def test_augmented_boxes_still_frame_the_object(seed):
    rng = np.random.default_rng(seed)
    photo, box = _photo(rng)
    aug = BoxAugmentation(crop=0.5, zoom_out_probability=0.4)
    sample = augmented_sample(photo, box, np.array([0]), SPEC, aug, rng)
    assert sample.pixels.shape == (160, 160, 3) and len(sample.boxes) == 1
    assert (sample.boxes >= 0).all() and (sample.boxes <= 1).all()
    assert (sample.boxes[:, 2:] > sample.boxes[:, :2]).all()
    inside, outside = _inside_and_outside(sample.pixels, sample.boxes[0])
    assert inside > outside + 80, (inside, outside)


def test_flip_mirrors_the_box():
    photo, box = _photo(np.random.default_rng(1))
    aug = BoxAugmentation(crop=0, zoom_out_probability=0, brightness=0, contrast=0, saturation=0, hue=0)
    flipped = [augmented_sample(photo, box, np.array([0]), SPEC, aug, np.random.default_rng(s)) for s in range(8)]
    lefts = {round(float(s.boxes[0, 1]), 4) for s in flipped}
    assert lefts == {round(150 / 480, 4), round(1 - 330 / 480, 4)}
