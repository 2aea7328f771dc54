"""The reference model of the performance table: a full-int8 (uint8 I/O)
MobileNetV2 1.0 at 224x224, built once and cached on disk, converted by the
same function `edgepipe convert` uses (edgepipe.convert.quantize.export_tflite).

Latency does not depend on the head's weights, so the classifier head is
randomly initialised; the backbone carries the ImageNet weights so the
activation ranges (and thus the int8 kernels' work) are realistic.
Benchmarks only: this imports TensorFlow, the device code never does.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("EDGEPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
PHOTOS = SHARED / "datasets" / "flowers12" / "train"
CLASSES = 12
REPRESENTATIVE_IMAGES = 32


def _representative_images(input_size: int) -> list[np.ndarray]:
    """BGR calibration images: flowers12 photos when present, else synthetic shapes."""
    from edgepipe.device.model.preprocess import load_image
    from edgepipe.synthetic import SHAPES, draw_shape

    photos = sorted(PHOTOS.rglob("*.jpg"))
    if photos:
        every_class = photos[:: max(1, len(photos) // REPRESENTATIVE_IMAGES)]
        return [load_image(p) for p in every_class[:REPRESENTATIVE_IMAGES]]
    rng = np.random.default_rng(0)
    return [draw_shape(SHAPES[i % len(SHAPES)], rng, input_size) for i in range(REPRESENTATIVE_IMAGES)]


def mobilenet_v2_int8(path: str | Path, input_size: int = 224) -> Path:
    """Write (unless already there) the int8 MobileNetV2 1.0 .tflite at `path`; returns it."""
    path = Path(path)
    if path.is_file():
        return path
    from edgepipe.train.keras_io import import_tensorflow

    import_tensorflow()
    import tf_keras as keras

    from edgepipe.convert.quantize import export_tflite
    from edgepipe.core.files import atomic_write_bytes
    from edgepipe.device.model.preprocess import InputSpec, resize_to_input

    keras.utils.set_random_seed(0)
    weights = str(WEIGHTS) if WEIGHTS.is_file() and input_size == 224 else None
    inputs = keras.Input((input_size, input_size, 3))
    backbone = keras.applications.MobileNetV2(
        input_tensor=inputs, include_top=False, alpha=1.0, weights=weights, pooling="avg"
    )
    outputs = keras.layers.Dense(CLASSES, activation="softmax")(backbone.output)
    model = keras.Model(inputs, outputs)

    spec = InputSpec(height=input_size, width=input_size)
    pixels = np.stack([resize_to_input(bgr, spec) for bgr in _representative_images(input_size)])
    atomic_write_bytes(path, export_tflite(model, spec, pixels, io="uint8"))
    return path
