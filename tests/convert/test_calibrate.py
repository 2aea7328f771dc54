"""Calibrating "unknown" on held-out scores: the threshold's acceptance, the choice
of score, the fitted temperature, and the AUROC it is chosen by."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.convert.calibrate import calibrate, false_accepts, fit_temperature, threshold_for
from edgepipe.device.model.unknown import SOFTMAX_KINDS, UnknownRule, confidence, soften
from edgepipe.train.metrics import auroc

LABELS = ["a", "b", "c"]


def test_auroc_is_the_mann_whitney_probability_with_ties_half():
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0]), np.array([2.0])) == 0.0
    assert auroc(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.5
    assert auroc(np.array([2.0, 3.0, 1.0]), np.array([1.5])) == pytest.approx(2 / 3)
    assert auroc(np.array([]), np.array([1.0])) is None


@pytest.mark.parametrize("accept, n_accepted", [(0.95, 19), (0.9, 18), (1.0, 20), (0.5, 10)])
def test_threshold_accepts_at_least_the_target_share(accept, n_accepted):
    values = np.linspace(0.05, 1.0, 20)
    threshold = threshold_for(values, accept)
    assert int((values >= threshold).sum()) == n_accepted


def test_fitted_temperature_lowers_the_held_out_nll_of_an_overconfident_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(0, 1, (300, 3))
    logits[np.arange(300), y] += 1.0
    overconfident = soften(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.3)  # logits / 0.3: too sharp

    def nll(t):
        return -np.mean(np.log(soften(overconfident, t)[np.arange(300), y]))

    t = fit_temperature(overconfident, y)
    assert 2.5 < t < 4.5 and nll(t) < nll(1.0)  # undoes the 1/0.3 sharpening


def test_calibrate_picks_the_score_that_ranks_mistakes_lowest_and_records_why():
    # Mistakes outscore some right answers in max softmax but have the smallest margin.
    right = [[0.6, 0.1, 0.3]] * 6 + [[0.7, 0.2, 0.1]] * 6
    wrong = [[0.62, 0.37, 0.01]] * 3
    scores = np.array(right + wrong)
    y = np.array([0] * 12 + [1] * 3)
    block = calibrate(scores, y, LABELS, accept=0.8, min_held_out=10).block
    aurocs = block["selection"]["auroc"]
    assert block["selection"]["misclassified"] == 3 and aurocs["margin"] == 1.0 > aurocs["max_softmax"]
    best = [kind for kind in SOFTMAX_KINDS if aurocs[kind] == max(aurocs.values())]
    assert block["score"] == best[0] != "max_softmax"  # ties go to the simpler (earlier) score
    values = confidence(scores, block["score"], block["temperature"])
    assert block["threshold"] == threshold_for(values, 0.8) and block["accepted"] == pytest.approx(12 / 15)
    assert set(np.flatnonzero(values < block["threshold"])) == {12, 13, 14}  # exactly the mistakes rejected
    margin = calibrate(scores, y, LABELS, accept=0.8, score="margin", min_held_out=10).block
    assert margin["threshold"] == pytest.approx(0.3) and margin["temperature"] == 1.0
    forced = calibrate(scores, y, LABELS, accept=0.8, score="max_softmax", min_held_out=10).block
    assert forced["score"] == "max_softmax" and forced["selection"]["reason"] == "forced by --unknown-score"


def test_too_few_mistakes_keep_max_softmax_and_background_is_not_in_class():
    scores = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.85, 0.05], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    y = np.array([0, 0, 1, 2, 2])
    calibration = calibrate(scores, y, LABELS, accept=1.0, background="c", min_held_out=3)
    block = calibration.block
    assert block["score"] == "max_softmax" and "too few" in block["selection"]["reason"]
    # No mistakes: the lowest score would be the threshold; the fallback halves it and says so.
    assert block["n"] == 3 and block["threshold"] == pytest.approx(0.4) and block["background_class"] == "c"
    assert block["threshold_rule"] == "fallback" and "no misclassified held-out images" in calibration.warnings[0]
    rule = UnknownRule("max_softmax", block["threshold"], background=2)
    assert false_accepts(rule, scores[3:]) == {"false_accept_rate": 0.0, "n": 2}
    assert false_accepts(UnknownRule("max_softmax", 0.5), scores[3:])["false_accept_rate"] == 1.0


def feature_data(rng: np.random.Generator, n_train: int, n_held: int, classes: int = 3, dim: int = 24):
    """Pooled-feature-like data: non-negative clusters, one per class, and softmax scores that are
    sure of the right class (as a trained model's are)."""
    centres = np.abs(rng.normal(1.0, 1.0, (classes, dim)))

    def draw(n):
        y = np.arange(n) % classes
        scores = np.full((n, classes), 0.02)
        scores[np.arange(n), y] = 1.0 - 0.02 * (classes - 1)
        return np.abs(centres[y] + rng.normal(0, 0.15, (n, dim))), y, scores

    return draw(n_train), draw(n_held), centres


def test_with_features_a_distance_score_is_chosen_by_leaving_one_class_out():
    from edgepipe.convert.calibrate import UNSEEN_CLASS_SELECTION, FeatureSets

    (train_f, train_y, _), (held_f, held_y, held_s), _ = feature_data(np.random.default_rng(1), 90, 60)
    calibration = calibrate(held_s, held_y, LABELS, accept=0.95, features=FeatureSets(train_f, train_y, held_f))
    block = calibration.block
    assert block["selection"]["criterion"] == UNSEEN_CLASS_SELECTION
    assert set(block["selection"]["auroc"]) == set(SOFTMAX_KINDS) | {"mahalanobis", "knn_cosine"}
    assert block["score"] in ("mahalanobis", "knn_cosine") and "cannot leave out" in block["selection"]["reason"]
    assert calibration.feature_score is not None and calibration.feature_score.kind == block["score"]
    assert block["features"] == {"file": "unknown.npz", "dim": 24, "fitted_on": 90}
    values = calibration.rule(LABELS).values(held_s, held_f)
    assert block["threshold_rule"] == "calibrated" and block["threshold"] == threshold_for(values, 0.95)
    assert calibration.warnings == [] and block["accepted"] >= 0.95


def test_images_of_none_of_the_classes_given_to_convert_decide_between_every_score():
    from edgepipe.convert.calibrate import OUTSIDE_SELECTION, FeatureSets

    rng = np.random.default_rng(2)
    (train_f, train_y, _), (held_f, held_y, held_s), centres = feature_data(rng, 90, 60)
    # Outsiders that look like class 0 in feature space but get a flat softmax: only the softmax sees them.
    outside_f = np.abs(centres[np.zeros(20, int)] + rng.normal(0, 0.15, (20, 24)))
    outside_s = np.full((20, 3), 1 / 3)
    block = calibrate(held_s, held_y, LABELS, accept=0.95, features=FeatureSets(train_f, train_y, held_f),
                      outside=(outside_s, outside_f)).block
    assert block["selection"]["criterion"] == OUTSIDE_SELECTION and block["score"] in SOFTMAX_KINDS
    assert block["selection"]["auroc"]["max_softmax"] == 1.0 and block["features"] is None


def test_the_background_class_is_left_out_of_the_fit_and_still_rejected():
    from edgepipe.convert.calibrate import FeatureSets

    (train_f, train_y, train_s), (held_f, held_y, held_s), _ = feature_data(np.random.default_rng(3), 90, 90)
    calibration = calibrate(held_s, held_y, LABELS, accept=0.95, background="c", score="mahalanobis",
                            features=FeatureSets(train_f, train_y, held_f), min_held_out=10)
    assert calibration.block["n"] == 60 and calibration.feature_score.arrays["means"].shape == (2, 24)
    rule = calibration.rule(LABELS)
    assert rule.background == 2 and rule.judge_all(held_s[held_y == 2], held_f[held_y == 2]).all()


@pytest.mark.parametrize("kind", ["mahalanobis", "knn_cosine"])
def test_too_few_held_out_images_fall_back_to_a_margin_beyond_the_farthest_one(kind):
    from edgepipe.convert.calibrate import FeatureSets

    (train_f, train_y, _), (held_f, held_y, held_s), _ = feature_data(np.random.default_rng(4), 60, 18)
    calibration = calibrate(held_s, held_y, LABELS, features=FeatureSets(train_f, train_y, held_f), score=kind)
    lowest = calibration.rule(LABELS).values(held_s, held_f).min()
    expected = lowest**1.5 if kind == "mahalanobis" else 1 - 1.5 * (1 - lowest)
    assert calibration.block["threshold"] == pytest.approx(expected) and expected < lowest
    assert calibration.block["threshold_rule"] == "fallback" and calibration.block["accepted"] == 1.0
    [warning] = calibration.warnings
    assert warning.startswith("unknown: only 18 held-out in-class images (fewer than 50)") and "1.5 x the distance" in warning
