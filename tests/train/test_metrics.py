"""classification_report against hand-computed numbers (and scikit-learn's definitions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepipe.train.metrics import classification_report, format_report


def test_report_matches_hand_computed_values():
    labels = ["a", "b", "c"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    r = classification_report(y_true, y_pred, labels)
    assert r["n"] == 6
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8), "support": 3}
    assert r["per_class"]["b"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["b"]["recall"] == pytest.approx(0.5)
    assert r["per_class"]["c"]["precision"] == pytest.approx(0.5)
    assert r["per_class"]["c"]["recall"] == 1.0
    assert r["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert r["labels"] == labels
    assert r["top_k"] == {"1": pytest.approx(4 / 6)}
    json.dumps(r)  # plain JSON types only


def test_top_k_from_scores_and_argmax_default():
    scores = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.3, 0.5], [0.1, 0.2, 0.7]])
    y_true = [0, 1, 0, 2]
    r = classification_report(y_true, None, ["x", "y", "z"], scores=scores, top_k=(1, 2, 5))
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["top_k"]["2"] == pytest.approx(0.75)  # sample 2's true class is third
    assert "5" not in r["top_k"] and "3" not in classification_report(
        y_true, None, ["x", "y", "z"], scores=scores, top_k=(1, 3))["top_k"]  # trivially 1.0 with 3 classes
    assert set(r) == {"accuracy", "top_k", "macro_precision", "macro_recall", "macro_f1", "per_class",
                      "confusion", "labels", "n"}


def test_class_never_predicted_or_absent_counts_as_zero_not_nan():
    r = classification_report([0, 0], [0, 0], ["a", "b"])
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx(0.5)


def test_rejects_out_of_range_and_mismatched_inputs():
    with pytest.raises(ValueError, match="outside"):
        classification_report([0, 3], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="predictions"):
        classification_report([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="shape"):
        classification_report([0, 1], None, ["a", "b"], scores=np.ones((2, 3)))


def test_format_report_has_summary_table_and_matrix():
    r = classification_report([0, 1, 1], [0, 1, 0], ["daisy", "iris"])
    text = format_report(r)
    assert "accuracy  0.6667  (n=3)" in text
    assert "daisy" in text and "iris" in text
    assert text.splitlines()[-1].split()[-2:] == ["1", "1"]  # iris row: 1 as daisy, 1 as iris
