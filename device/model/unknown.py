"""Saying "unknown": when a frame shows none of the classes.

A classifier always answers one of its classes. The bundle carries a rule,
calibrated by `edgepipe convert` on the run's held-out images: a confidence
score computed from the score vector, and the threshold below which the
answer is "unknown". The threshold is chosen so that a stated share of
held-out in-class images is still accepted, so its cost is known in advance;
what it buys (the false-accept rate on images of no class) is measured by
`edgepipe evaluate --unknown-dir`.

The score kinds (the same code computes them at calibration and on the device):

- mahalanobis, knn_cosine: how close the frame's pooled features are to the
  training images' (see feature_score.py). They measure distance from what the
  model was trained on, not how peaked its answer is, so an image of none of
  the classes that the softmax is sure about still scores low. Bundles made by
  convert carry the features output and the fitted score (`unknown.npz`).
- max_softmax: the top-1 probability (the only one for a bare .tflite).
- temperature: the top-1 probability after temperature scaling, softmax(log(p) / T),
  with T fitted on the held-out images (T > 1 softens over-confident models).
- margin: top-1 minus top-2 probability.

A bundle may also name a background class (a folder of "none of these"
images trained like any other class): predicting it is reported as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np

from edgepipe.core.errors import UserError

from .feature_score import FEATURE_KINDS, FEATURES_FILE, FeatureScore, FeatureScoreError, feature_score_from_bytes

SOFTMAX_KINDS = ("max_softmax", "temperature", "margin")
SCORE_KINDS = SOFTMAX_KINDS + FEATURE_KINDS
UNKNOWN_LABEL = "unknown"
LOG_FLOOR = 1e-6  # int8 softmax outputs are often exactly 0; log() needs a floor
MAX_TEMPERATURE = 100.0

UnknownMode = Literal["auto", "off"] | float


def confidence(scores: np.ndarray, kind: str, temperature: float = 1.0) -> np.ndarray:
    """The softmax-kind confidence of each row of `scores` (n x classes, or one vector -> a 0-d array)."""
    p = np.asarray(scores, dtype=np.float64)
    if kind == "max_softmax":
        return p.max(axis=-1)
    if kind == "margin":
        if p.shape[-1] < 2:
            return p.max(axis=-1)
        top2 = -np.partition(-p, 1, axis=-1)[..., :2]
        return top2[..., 0] - top2[..., 1]
    if kind == "temperature":
        return soften(p, temperature).max(axis=-1)
    raise ValueError(f"unknown score kind {kind!r}; expected one of {', '.join(SOFTMAX_KINDS)}")


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log(p) / T): the probabilities the same model gives at temperature T."""
    logits = np.log(np.maximum(probabilities, LOG_FLOOR)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Verdict:
    """Whether one frame is unknown, and the confidence score that decided it."""

    unknown: bool
    confidence: float
    reason: str | None = None  # "below threshold" or "background class"


@dataclass(frozen=True)
class UnknownRule:
    """The rejection rule a run applies: a score kind, its threshold, a background class, and for the
    feature-space kinds the fitted score (the features come from the model's second output)."""

    score: str = "max_softmax"
    threshold: float = 0.0
    temperature: float = 1.0
    background: int | None = None  # label index of the background class
    features: FeatureScore | None = None  # set for the feature-space kinds

    def values(self, scores: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """The score thresholded, per row of `scores` (and of `features` for the feature-space kinds)."""
        if self.features is None:
            return confidence(scores, self.score, self.temperature)
        if features is None:
            raise ValueError(f"the {self.score} score needs the model's features output")
        return self.features.familiarity(features)

    def judge(self, scores: np.ndarray, features: np.ndarray | None = None) -> Verdict:
        value = float(self.values(scores, features))
        if self.background is not None and int(np.argmax(scores)) == self.background:
            return Verdict(True, value, "background class")
        if value < self.threshold:
            return Verdict(True, value, "below threshold")
        return Verdict(False, value)

    def judge_all(self, scores: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
        """`judge` for every row: a boolean array, True where the row is unknown."""
        rejected = self.values(scores, features) < self.threshold
        if self.background is not None:
            rejected |= np.argmax(scores, axis=-1) == self.background
        return rejected

    def describe(self, labels: list[str]) -> str:
        """What "unknown" means under this rule, for logs and summaries."""
        text = f"{self.score} below {self.threshold:.4g}"
        if self.score == "temperature":
            text += f" (temperature {self.temperature:.3g})"
        if self.background is not None:
            text += f", or the background class {labels[self.background]!r}"
        return text


def _number(block: dict[str, Any], key: str, low: float, high: float, where: str) -> float:
    value = block.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise UserError(f"{where}: unknown.{key} is {value!r}, expected a number in [{low:g}, {high:g}]; "
                        "re-create the bundle with `edgepipe convert`")
    return float(value)


def rule_from_manifest(manifest: dict[str, Any], labels: list[str], where: str,
                       read_file: Callable[[str], bytes] | None = None,
                       features_dim: int | None = None) -> UnknownRule | None:
    """The bundle's calibrated rule (validated: it is read from a file), or None when it has none.

    A feature-space rule also loads its fitted score with `read_file` (which checks the file's
    sha256) and needs the model to have a features output of `features_dim` values.
    """
    block = manifest.get("unknown")
    if block is None:
        return None
    if not isinstance(block, dict):
        raise UserError(f"{where}: `unknown` is not an object; re-create the bundle with `edgepipe convert`")
    kind = block.get("score")
    if kind not in SCORE_KINDS:
        raise UserError(f"{where}: unknown.score is {kind!r}, expected one of {', '.join(SCORE_KINDS)}; "
                        "re-create the bundle with `edgepipe convert`")
    threshold = _number(block, "threshold", 0.0, 1.0, where)
    temperature = _number(block, "temperature", 1.0 / MAX_TEMPERATURE, MAX_TEMPERATURE, where) if kind == "temperature" else 1.0
    background = block.get("background_class")
    if background is not None and background not in labels:
        raise UserError(f"{where}: unknown.background_class {background!r} is not one of the bundle's labels")
    features = _feature_score(kind, labels, where, read_file, features_dim) if kind in FEATURE_KINDS else None
    return UnknownRule(kind, threshold, temperature, labels.index(background) if background is not None else None,
                       features)


def _feature_score(kind: str, labels: list[str], where: str, read_file: Callable[[str], bytes] | None,
                   features_dim: int | None) -> FeatureScore:
    if read_file is None or not features_dim:
        raise UserError(f"{where}: unknown.score {kind!r} needs the model's features output and {FEATURES_FILE}; "
                        "re-create the bundle with `edgepipe convert`")
    try:
        return feature_score_from_bytes(read_file(FEATURES_FILE), kind, len(labels), features_dim)
    except FeatureScoreError as exc:
        raise UserError(f"{where}: {FEATURES_FILE}: {exc}; re-create the bundle with `edgepipe convert`") from None


def resolve(mode: UnknownMode, calibrated: UnknownRule | None) -> UnknownRule | None:
    """The rule a run applies under `--unknown auto|off|P`.

    auto: the bundle's calibrated rule (none for a bare .tflite or an older bundle);
    off: none at all; P: the bundle's score (max softmax without one) below P.
    """
    if mode == "off":
        return None
    if mode == "auto":
        return calibrated
    base = calibrated or UnknownRule()
    return UnknownRule(base.score, float(mode), base.temperature, base.background, base.features)
