"""Quantization-aware fine-tuning of a detector, built on the classifier's calibrated QAT.

quantize.py's recipe carries over unchanged (tfmot on the flat functional
model, depthwise kernels left to the converter's per-channel quantization,
BatchNormalization frozen, every quantizer range calibrated from the float
model before any step); only the loss differs: the detector's focal + smooth
L1 loss on the clean training photos and their anchor targets.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from edgepipe.core.progress import Progress
from edgepipe.device.model.preprocess import InputSpec, load_image, normalize
from edgepipe.train.detect.anchors import assign
from edgepipe.train.detect.augment import clean_sample
from edgepipe.train.detect.boxes import BoxedImage
from edgepipe.train.detect.losses import detection_loss

from .quantize import calibrated_qat_model

PROBABILITY_EPS = 1e-6


def _training_set(images: Sequence[BoxedImage], spec: InputSpec, anchors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pixels, targets = [], []
    with Progress(len(images), "QAT: loading training photos") as bar:
        for image in images:
            sample = clean_sample(load_image(image.path), image.boxes, image.classes, spec)
            pixels.append(sample.pixels)
            targets.append(assign(sample.boxes, sample.classes, anchors))
            bar.update()
    return np.stack(pixels), np.stack(targets)


def detection_qat_model(float_model, calibration: np.ndarray, images: Sequence[BoxedImage], spec: InputSpec,
                        anchors: np.ndarray, *, epochs: int, learning_rate: float, batch_size: int, seed: int = 0):
    """A calibrated, briefly fine-tuned tfmot QAT detector (convert it with detect_export.export_detector)."""
    import tensorflow as tf
    import tf_keras as keras

    qat = calibrated_qat_model(float_model, calibration, spec, seed)
    if epochs == 0:
        return qat
    pixels, targets = _training_set(images, spec, anchors)
    optimizer = keras.optimizers.Adam(learning_rate)
    variables = qat.trainable_variables

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            box_pred, scores = qat(x, training=True)
            p = tf.clip_by_value(scores, PROBABILITY_EPS, 1 - PROBABILITY_EPS)
            total, _, _ = detection_loss(y, box_pred, tf.math.log(p / (1 - p)))
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return total

    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(pixels))
        losses = []
        with Progress(len(pixels), f"QAT epoch {epoch + 1}/{epochs}") as bar:
            for start in range(0, len(order), batch_size):
                index = order[start: start + batch_size]
                losses.append(float(step(tf.constant(normalize(pixels[index], spec)), tf.constant(targets[index]))))
                bar.update(len(index))
                bar.note(f"loss {np.mean(losses):.4f}")
    return qat
