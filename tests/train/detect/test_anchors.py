"""Anchors and targets: the layout the heads emit, and an encoding the postprocess op decodes back."""

from __future__ import annotations

import numpy as np

from edgepipe.train.detect.anchors import (IGNORE, anchors_per_cell, assign, decode, encode, feature_sizes, iou_matrix,
                                           make_anchors, to_corners)


def test_the_320_layout_matches_ssdlite_mobilenet_v2():
    assert feature_sizes(320) == [20, 10, 5, 3, 2, 1]
    assert anchors_per_cell() == [3, 6, 6, 6, 6, 6]
    anchors = make_anchors(320)
    assert anchors.shape == (20 * 20 * 3 + (100 + 25 + 9 + 4 + 1) * 6, 4)
    assert anchors.dtype == np.float32
    # centres inside the image, the coarsest level's biggest anchor near the whole image
    assert anchors[:, :2].min() > 0 and anchors[:, :2].max() < 1
    assert np.isclose(anchors[-1, 2], np.sqrt(0.95), atol=1e-6)


def test_encode_then_decode_gives_the_box_back():
    anchors = make_anchors(320)
    rng = np.random.default_rng(0)
    y0, x0 = rng.uniform(0, 0.5, (2, len(anchors)))
    boxes = np.stack([y0, x0, y0 + rng.uniform(0.05, 0.5, len(anchors)), x0 + rng.uniform(0.05, 0.5, len(anchors))], -1)
    np.testing.assert_allclose(decode(encode(boxes.astype(np.float32), anchors), anchors), boxes, atol=1e-5)


def test_every_box_claims_anchors_and_far_anchors_are_background():
    anchors = make_anchors(320)
    boxes = np.array([[0.1, 0.1, 0.9, 0.6], [0.7, 0.7, 0.75, 0.76]], np.float32)  # a large and a tiny object
    targets = assign(boxes, np.array([0, 1]), anchors)
    cls = targets[:, 4]
    assert set(np.unique(cls)) <= {IGNORE, 0, 1, 2}
    assert (cls == 1).sum() >= 1 and (cls == 2).sum() >= 1  # the tiny box is forced onto its best anchor
    positive = cls > 0
    iou = iou_matrix(to_corners(anchors[positive]), boxes).max(axis=1)
    assert iou.min() > 0.1
    np.testing.assert_allclose(decode(targets[positive, :4], anchors[positive]),
                               boxes[(cls[positive] - 1).astype(int)], atol=1e-5)


def test_an_image_without_boxes_is_all_background():
    targets = assign(np.zeros((0, 4), np.float32), np.zeros(0, np.int32), make_anchors(160))
    assert (targets == 0).all()
