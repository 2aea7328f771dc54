"""The focal + smooth-L1 loss: what it rewards, what it ignores."""

from __future__ import annotations

import numpy as np

from edgepipe.train.detect.losses import detection_loss


def _targets() -> np.ndarray:
    targets = np.zeros((1, 6, 5), np.float32)
    targets[0, 0] = [0.5, -0.5, 0.2, 0.1, 1]  # an object of class 0
    targets[0, 1, 4] = -1  # ignored
    return targets


def _loss(box_pred, logits):
    import tensorflow as tf

    return [float(v) for v in detection_loss(tf.constant(_targets()), tf.constant(box_pred, tf.float32),
                                             tf.constant(logits, tf.float32))]


def test_right_answers_cost_less_than_wrong_ones():
    boxes = np.zeros((1, 6, 4))
    right = np.full((1, 6, 2), -6.0)
    right[0, 0, 0] = 6.0
    wrong = -right
    assert _loss(boxes, right)[1] < 0.01 < _loss(boxes, wrong)[1]


def test_ignored_anchors_cost_nothing_and_box_loss_only_counts_objects():
    logits = np.full((1, 6, 2), -6.0)
    logits[0, 0, 0] = 6.0
    base = _loss(np.zeros((1, 6, 4)), logits)
    ignored = logits.copy()
    ignored[0, 1] = 6.0  # a confident answer on the ignored anchor
    assert np.isclose(_loss(np.zeros((1, 6, 4)), ignored)[1], base[1])
    boxes = np.zeros((1, 6, 4))
    boxes[0, 2:] = 3.0  # far-off offsets on background anchors
    assert np.isclose(_loss(boxes, logits)[2], base[2])
    exact = np.zeros((1, 6, 4))
    exact[0, 0] = _targets()[0, 0, :4]
    assert _loss(exact, logits)[2] == 0.0 < base[2]
