"""Which int8 detector ships, and how agreement between two models' boxes is counted."""

from __future__ import annotations

import numpy as np

from edgepipe.convert.detect import DetectCandidate, choose
from edgepipe.convert.detect_verify import agreement
from edgepipe.train.detect.measure import DetectionEvaluation


def _candidate(name: str, val_map: float, agree: float) -> DetectCandidate:
    evaluation = DetectionEvaluation(name, [], val_map, val_map / 2)
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
