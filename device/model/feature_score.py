"""How familiar a frame is: distance to the training images in feature space.

A bundle made by `edgepipe convert` runs a model with two outputs: the class
scores and the pooled backbone features they were computed from. The softmax
says how peaked the answer is; it says nothing about how far the image is from
anything the model was trained on, and a raccoon can give a peaked answer.
Distance in feature space does measure that. convert fits one of two scores on
the training images' features *as this int8 model computes them* and stores
what the device needs in `unknown.npz` (listed and hashed in bundle.json):

- mahalanobis: the smallest class-conditional Mahalanobis distance with one
  covariance shared by all classes, on L2-normalised features (on flowers12
  against raccoon photos, AUROC 0.96 on raw features, 1.00 normalised). There
  are more feature dimensions than training images, so the covariance is its
  top principal directions plus one variance for everything else
  (probabilistic PCA): distance off the subspace the training images span
  counts too, which is where unfamiliar images go.
- knn_cosine: the cosine similarity to the nearest of a small bank of
  L2-normalised training features (per-class spherical k-means centres).

Both are reported as a familiarity in [0, 1], higher = more familiar, so a
threshold reads like a confidence (`--unknown P`): for mahalanobis
2 ** (-d / d_ref) (d_ref: the median held-out in-class distance, so a typical
in-class image scores 0.5); for knn_cosine the similarity itself (pooled
features are non-negative, so it is in [0, 1]). One frame costs two small
matrix products: tens of microseconds.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

FEATURE_KINDS = ("mahalanobis", "knn_cosine")
FEATURES_FILE = "unknown.npz"
MAX_FEATURES_FILE_BYTES = 4 << 20
# The arrays each kind needs (and nothing else): name -> number of dimensions.
_ARRAYS = {
    "mahalanobis": {"means": 2, "basis": 2, "inverse_variances": 1, "residual_variance": 0, "reference": 0},
    "knn_cosine": {"bank": 2},
}


class FeatureScoreError(ValueError):
    """unknown.npz does not hold what its kind needs (the message says what)."""


@dataclass(frozen=True, eq=False)
class FeatureScore:
    """One fitted familiarity score over feature vectors of `dim` values."""

    kind: str
    arrays: dict[str, np.ndarray]

    @property
    def dim(self) -> int:
        return int(self.arrays["means" if self.kind == "mahalanobis" else "bank"].shape[1])

    def __post_init__(self) -> None:
        if self.kind == "mahalanobis":  # constants of the distance, computed once
            means, basis = self.arrays["means"], self.arrays["basis"]
            object.__setattr__(self, "_projected_means", means @ basis)
            object.__setattr__(self, "_mean_norms", np.einsum("cd,cd->c", means, means))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Smallest class-conditional Mahalanobis distance of each row (mahalanobis only)."""
        a = self.arrays
        f = normalised(np.atleast_2d(np.asarray(features, np.float32)))
        projected = (f @ a["basis"])[:, None, :] - self._projected_means[None]  # n x classes x rank
        in_subspace = np.einsum("ncr,ncr->nc", projected, projected)
        squared = np.einsum("nd,nd->n", f, f)[:, None] - 2.0 * (f @ a["means"].T) + self._mean_norms[None]
        off_subspace = np.maximum(squared - in_subspace, 0.0)
        d2 = (projected * projected) @ a["inverse_variances"] + off_subspace / a["residual_variance"]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def familiarity(self, features: np.ndarray) -> np.ndarray:
        """Familiarity in [0, 1] of each row of `features` (n x dim, or one vector -> a 0-d array)."""
        f = np.asarray(features, np.float32)
        if self.kind == "mahalanobis":
            values = np.exp2(-self.distances(f) / self.arrays["reference"])
        else:
            values = np.clip((normalised(np.atleast_2d(f)) @ self.arrays["bank"].T).max(axis=1), 0.0, 1.0)
        return values.reshape(f.shape[:-1])

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez(out, kind=np.array(self.kind), **self.arrays)
        return out.getvalue()


def normalised(rows: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (an all-zero row stays zero)."""
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


def _array(data: np.lib.npyio.NpzFile, name: str, ndim: int) -> np.ndarray:
    if name not in data.files:
        raise FeatureScoreError(f"it has no array {name!r}")
    value = data[name]
    if value.dtype.kind != "f" or value.ndim != ndim or value.size == 0 or not np.all(np.isfinite(value)):
        raise FeatureScoreError(f"{name} is {value.dtype}{list(value.shape)}, expected {ndim}-d finite floats")
    return value.astype(np.float32)


def feature_score_from_bytes(data: bytes, kind: str, num_classes: int, dim: int) -> FeatureScore:
    """The score stored in unknown.npz bytes, validated: right kind, shapes, finite values.

    The file comes from a bundle (untrusted), so pickled objects are refused and
    every array is checked before a frame is scored with it.
    """
    if kind not in FEATURE_KINDS:
        raise FeatureScoreError(f"score kind {kind!r} is not one of {', '.join(FEATURE_KINDS)}")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            stored = str(npz["kind"]) if "kind" in npz.files else None
            if stored != kind:
                raise FeatureScoreError(f"it holds a {stored!r} score, bundle.json says {kind!r}")
            arrays = {name: _array(npz, name, ndim) for name, ndim in _ARRAYS[kind].items()}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, FeatureScoreError):
            raise
        raise FeatureScoreError(f"it is not a readable .npz ({exc})") from None
    _check_shapes(kind, arrays, num_classes, dim)
    return FeatureScore(kind, arrays)


def _check_shapes(kind: str, a: dict[str, np.ndarray], num_classes: int, dim: int) -> None:
    if kind == "knn_cosine":
        if a["bank"].shape[1] != dim:
            raise FeatureScoreError(f"its bank has {a['bank'].shape[1]} features per row, the model gives {dim}")
        return
    rank = a["inverse_variances"].shape[0]
    if not (1 <= a["means"].shape[0] <= num_classes and a["means"].shape[1] == dim):
        raise FeatureScoreError(f"means has shape {list(a['means'].shape)}, expected at most {num_classes} rows of {dim}")
    if a["basis"].shape != (dim, rank):
        raise FeatureScoreError(f"basis has shape {list(a['basis'].shape)}, expected {[dim, rank]}")
    positive = ("inverse_variances", "residual_variance", "reference")
    if any(np.any(a[name] <= 0) for name in positive):
        raise FeatureScoreError("its variances and reference distance must be positive")
