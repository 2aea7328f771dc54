"""Which int8 detector ships, how agreement between two models' boxes is counted, and when a drop
from float rejects the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.convert.detect import DetectCandidate, choose
from edgepipe.convert.detect_verify import agreement
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.train.detect.boxes import BoxedImage
from edgepipe.train.detect.measure import DetectionEvaluation, Photos, map50_difference_error


def _candidate(name: str, val_map: float, agree: float) -> DetectCandidate:
    evaluation = DetectionEvaluation(name, [], val_map, val_map / 2, {})
    return DetectCandidate(name, b"", evaluation, evaluation, agree)


def test_higher_validation_map_ships_then_agreement_then_ptq():
    chosen, why = choose("auto", {"ptq": _candidate("ptq", 0.80, 0.9), "qat": _candidate("qat", 0.82, 0.5)})
    assert (chosen.name, why["decided_by"]) == ("qat", "validation mAP@0.5")
    chosen, why = choose("auto", {"ptq": _candidate("ptq", 0.80, 0.9), "qat": _candidate("qat", 0.80, 0.95)})
    assert (chosen.name, why["decided_by"]) == ("qat", "agreement with float")
    chosen, why = choose("auto", {"ptq": _candidate("ptq", 0.80, 0.9), "qat": _candidate("qat", 0.80, 0.9)})
    assert (chosen.name, why["decided_by"]) == ("ptq", "tie: PTQ")
    chosen, why = choose("ptq", {"ptq": _candidate("ptq", 0.70, 0.9), "qat": _candidate("qat", 0.80, 0.9)})
    assert (chosen.name, why["decided_by"]) == ("ptq", "forced")


def test_agreement_pairs_boxes_by_class_and_iou():
    box = np.array([0.1, 0.1, 0.5, 0.5], np.float32)
    shifted = box + 0.02
    far = np.array([0.6, 0.6, 0.9, 0.9], np.float32)
    reference = [[(0, 0.9, box), (1, 0.8, far), (1, 0.1, box)], []]  # the 0.1 detection is below the bar
    assert agreement(reference, [[(0, 0.7, shifted), (1, 0.6, far)], []]) == 1.0
    assert agreement(reference, [[(1, 0.7, shifted), (1, 0.6, far)], []]) == 0.5  # wrong class on the first
    assert agreement(reference, [[], [(0, 0.9, box)]]) == 0.0
    assert agreement([[], []], [[], []]) == 1.0


def test_a_drop_past_max_drop_rejects_only_when_the_test_photos_show_it():
    from edgepipe.convert.detect import drop_verdict

    assert drop_verdict(1.5, 0.0, 2.0, 24) == (False, None)
    assert drop_verdict(10.0, 2.0, 2.0, 24) == (True, None)  # 3 standard errors past the limit
    assert drop_verdict(2.5, 0.1, 2.0, 2000) == (True, None)  # many photos: the limit is plain
    rejected, warning = drop_verdict(3.7, 3.4, 2.0, 24)  # the sunflower set's first run
    assert not rejected
    assert warning == ("int8 mAP@0.5 is 3.70 points below float, more than --max-drop 2, but within 2 standard errors "
                       "(3.40 points) of it on 24 test photos: shipped; more test photos would tell a real loss "
                       "from chance")


def _one_box_photos(n: int) -> Photos:
    images = [BoxedImage(Path(f"{k}.jpg"), 100, 100, np.array([[10, 10, 60, 60]], np.float32), np.array([0], np.int32))
              for k in range(n)]
    return Photos(images, np.zeros((n, 100, 100, 3), np.uint8), InputSpec(height=100, width=100))


def test_the_error_of_a_map_difference_is_its_spread_over_redrawn_photos():
    """A model finding every box against one missing every other: mAP@0.5 1.0 vs about 0.5, and the
    difference varies with how many missed photos a draw holds: about sqrt(0.25 / n)."""
    box = np.array([0.1, 0.1, 0.6, 0.6], np.float32)  # the truth, normalised (ymin, xmin, ymax, xmax)
    errors = {}
    for n in (12, 48):
        found = [[(0, 0.9, box)] for _ in range(n)]
        half = [[(0, 0.9, box)] if k % 2 else [] for k in range(n)]
        errors[n] = map50_difference_error(_one_box_photos(n), found, half, ["thing"], resamples=60)
        assert abs(errors[n] - (0.25 / n) ** 0.5) < 0.3 * (0.25 / n) ** 0.5, errors
    assert errors[48] < errors[12]
    assert map50_difference_error(_one_box_photos(12), found[:12], found[:12], ["thing"], resamples=60) == 0.0
