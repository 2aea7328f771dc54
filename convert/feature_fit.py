"""Fitting the feature-space familiarity scores (see device/model/feature_score.py) on
the training split's features, as the shipped int8 model computes them.

Everything here is numpy: the fitted arrays are what the device loads, and
a few hundred KB at most (the rank of the covariance and the size of the
nearest-neighbour bank are capped for that).
"""

from __future__ import annotations

import numpy as np

from edgepipe.device.model.feature_score import FeatureScore, normalised

RANK = 32  # principal directions kept of the shared covariance (1280 x 32 float32: 160 KB)
BANK_SIZE = 64  # nearest-neighbour bank rows over all classes (64 x 1280 float32: 320 KB at most)
KMEANS_ROUNDS = 10
VARIANCE_FLOOR = 1e-6  # relative to the mean variance: keeps a rank-deficient covariance invertible


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, rank: int = RANK, reference: float = 1.0) -> FeatureScore:
    """Class means and a shared covariance: its top `rank` directions with their variances, one
    variance for the rest (probabilistic PCA, so the inverse exists with fewer images than dimensions)."""
    x = normalised(np.asarray(features, np.float64))
    y = np.asarray(labels)
    classes = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    n, dim = centred.shape
    degrees = max(n - len(classes), 1)
    rank = max(1, min(rank, degrees - 1, dim - 1))
    eigenvalues, directions = _principal_directions(centred, rank)
    variances = eigenvalues / degrees
    total = float(np.sum(centred**2) / degrees)
    floor = VARIANCE_FLOOR * max(total / dim, 1e-12)
    residual = max((total - float(variances[:rank].sum())) / (dim - rank), floor)
    return FeatureScore("mahalanobis", {
        "means": means.astype(np.float32),
        "basis": directions.astype(np.float32),
        "inverse_variances": (1.0 / np.maximum(variances[:rank], floor)).astype(np.float32),
        "residual_variance": np.float32(residual),
        "reference": np.float32(reference),
    })


def _principal_directions(centred: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The scatter matrix's eigenvalues (largest first) and its top `rank` eigenvectors (dim x rank).

    With fewer images than dimensions the eigenproblem is solved on the n x n Gram matrix
    instead: the same nonzero eigenvalues, and 576 x 576 instead of 1280 x 1280 for flowers12,
    which matters on a busy 2-core machine where a multi-threaded SVD of the same data took
    a minute.
    """
    n, dim = centred.shape
    if n < dim:
        eigenvalues, vectors = np.linalg.eigh(centred @ centred.T)
        eigenvalues, vectors = np.maximum(eigenvalues[::-1], 0.0), vectors[:, ::-1]
        directions = centred.T @ vectors[:, :rank] / np.sqrt(np.maximum(eigenvalues[:rank], 1e-12))
    else:
        eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
        eigenvalues, directions = np.maximum(eigenvalues[::-1], 0.0), vectors[:, ::-1][:, :rank]
    return eigenvalues, directions


def with_reference(score: FeatureScore, held_out_features: np.ndarray) -> FeatureScore:
    """The Mahalanobis score scaled so a median held-out in-class image scores 0.5."""
    median = float(np.median(score.distances(held_out_features)))
    return FeatureScore(score.kind, {**score.arrays, "reference": np.float32(max(median, 1e-6))})


def _spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k unit-length centres of unit-length rows `x` (k >= len(x): the rows themselves)."""
    if k >= len(x):
        return x
    centres = x[rng.choice(len(x), k, replace=False)]
    for _ in range(KMEANS_ROUNDS):
        nearest = np.argmax(x @ centres.T, axis=1)
        for j in range(k):
            members = x[nearest == j]
            if len(members):
                centres[j] = members.sum(axis=0)
        centres = normalised(centres)
    return centres


def fit_knn(features: np.ndarray, labels: np.ndarray, bank_size: int = BANK_SIZE, seed: int = 0) -> FeatureScore:
    """A bank of L2-normalised training features: per class, spherical k-means centres of its
    images, the bank split between classes by their image counts (at least one each)."""
    x = normalised(np.asarray(features, np.float64))
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    per_class = np.maximum(1, np.floor(bank_size * counts / counts.sum()).astype(int))
    bank = np.concatenate([_spherical_kmeans(x[y == c], int(k), rng) for c, k in zip(classes, per_class)])
    return FeatureScore("knn_cosine", {"bank": bank.astype(np.float32)})


def fit(kind: str, features: np.ndarray, labels: np.ndarray, seed: int = 0) -> FeatureScore:
    return fit_mahalanobis(features, labels) if kind == "mahalanobis" else fit_knn(features, labels, seed=seed)
