"""The feature-space "unknown" scores: what they compute (against a direct computation),
how they rank far images, and how unknown.npz is validated when a bundle is loaded."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgepipe.convert.feature_fit import fit_knn, fit_mahalanobis, with_reference
from edgepipe.device.model.feature_score import FeatureScore, FeatureScoreError, feature_score_from_bytes, normalised

DIM, CLASSES = 40, 3


def clustered(rng: np.random.Generator, n_per_class: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative features (like pooled ReLU6 outputs) around one centre per class."""
    labels = np.repeat(np.arange(len(centres)), n_per_class)
    return np.abs(centres[labels] + rng.normal(0, 0.15, (len(labels), DIM))), labels


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = np.abs(rng.normal(1.0, 1.0, (CLASSES, DIM)))
    train, train_y = clustered(rng, 30, centres)
    held, _ = clustered(rng, 10, centres)
    outside = np.abs(rng.normal(1.0, 1.0, (20, DIM)))  # other directions entirely
    return train, train_y, held, outside


def test_mahalanobis_matches_the_direct_formula_and_ranks_outside_images_lowest(data):
    train, train_y, held, outside = data
    score = with_reference(fit_mahalanobis(train, train_y, rank=8), held)
    a = score.arrays
    # Direct: covariance = U diag(1/inv) U^T + residual (I - U U^T), inverted in full, on unit-length rows.
    basis = a["basis"].astype(np.float64)
    covariance = basis @ np.diag(1.0 / a["inverse_variances"]) @ basis.T + a["residual_variance"] * (
        np.eye(DIM) - basis @ basis.T)
    precision = np.linalg.inv(covariance)
    x = normalised(outside[:4].astype(np.float64))
    direct = np.sqrt(np.min([np.einsum("nd,de,ne->n", x - m, precision, x - m) for m in a["means"]], axis=0))
    np.testing.assert_allclose(score.distances(outside[:4]), direct, rtol=1e-3)
    familiar, strange = score.familiarity(held), score.familiarity(outside)
    assert np.median(familiar) == pytest.approx(0.5, abs=1e-5)  # the reference distance scores 0.5
    assert familiar.min() > strange.max() and 0.0 <= strange.min()
    assert score.familiarity(held[0]).shape == ()  # one vector -> one number


def test_nearest_neighbour_cosine_is_the_best_similarity_to_the_bank(data):
    train, train_y, held, outside = data
    score = fit_knn(train, train_y, bank_size=6)
    bank = score.arrays["bank"]
    assert bank.shape == (6, DIM) and np.allclose(np.linalg.norm(bank, axis=1), 1.0, atol=1e-5)
    assert score.familiarity(3.0 * bank[2]) == pytest.approx(1.0, abs=1e-5)  # scale does not matter
    expected = (normalised(held) @ bank.T).max(axis=1)
    np.testing.assert_allclose(score.familiarity(held), expected, rtol=1e-5)
    assert score.familiarity(held).min() > score.familiarity(outside).max()


@pytest.mark.parametrize("kind", ["mahalanobis", "knn_cosine"])
def test_stored_score_round_trips_through_npz_bytes(data, kind):
    train, train_y, held, _ = data
    score = with_reference(fit_mahalanobis(train, train_y), held) if kind == "mahalanobis" else fit_knn(train, train_y)
    loaded = feature_score_from_bytes(score.to_bytes(), kind, CLASSES, DIM)
    np.testing.assert_allclose(loaded.familiarity(held), score.familiarity(held), rtol=1e-6)
    assert len(score.to_bytes()) < 300_000


def npz(**arrays) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


@pytest.mark.parametrize("change, message", [
    ({"kind": np.array("knn_cosine")}, "holds a 'knn_cosine' score"),
    ({"means": np.full((CLASSES, DIM), np.nan, np.float32)}, "expected 2-d finite floats"),
    ({"means": np.zeros((CLASSES + 1, DIM), np.float32)}, "expected at most 3 rows"),
    ({"basis": np.zeros((DIM, 5), np.float32)}, "basis has shape"),
    ({"residual_variance": np.float32(0.0)}, "must be positive"),
    ({"reference": np.array([1, 2], np.int64)}, "reference is int64"),
])
def test_a_bad_mahalanobis_file_is_refused_with_what_is_wrong(data, change, message):
    train, train_y, held, _ = data
    arrays = {"kind": np.array("mahalanobis"), **fit_mahalanobis(train, train_y, rank=4).arrays, **change}
    with pytest.raises(FeatureScoreError, match=message):
        feature_score_from_bytes(npz(**arrays), "mahalanobis", CLASSES, DIM)


def test_a_bank_of_the_wrong_width_garbage_and_pickles_are_refused():
    bank = np.eye(4, DIM, dtype=np.float32)
    assert feature_score_from_bytes(npz(kind=np.array("knn_cosine"), bank=bank), "knn_cosine", CLASSES, DIM).dim == DIM
    with pytest.raises(FeatureScoreError, match="bank has 40 features per row, the model gives 32"):
        feature_score_from_bytes(npz(kind=np.array("knn_cosine"), bank=bank), "knn_cosine", CLASSES, 32)
    with pytest.raises(FeatureScoreError, match="not a readable .npz"):
        feature_score_from_bytes(b"PK\x03\x04 not really a zip", "knn_cosine", CLASSES, DIM)
    with pytest.raises(FeatureScoreError, match="not a readable .npz"):
        feature_score_from_bytes(npz(kind=np.array("knn_cosine"), bank=np.array([object()], dtype=object)),
                                 "knn_cosine", CLASSES, DIM)
    with pytest.raises(FeatureScoreError, match="has no array 'bank'"):
        feature_score_from_bytes(npz(kind=np.array("knn_cosine")), "knn_cosine", CLASSES, DIM)
    assert isinstance(FeatureScore("knn_cosine", {"bank": bank}).familiarity(np.ones(DIM)), np.ndarray)
