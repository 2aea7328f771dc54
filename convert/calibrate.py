"""Calibrating "unknown" on the run's held-out images (see device/model/unknown.py).

The threshold is set where a chosen share of held-out in-class images is still
accepted (--unknown-accept): its cost in lost answers is then known before the
bundle ships. Which score to threshold is chosen on the same images.

When the model gives its pooled features (bundles convert makes), a distance
score is fitted on the training split's features as the int8 model computes
them. Which one, and whether it beats the softmax scores, is measured:

- with --unknown-dir (real images of none of the classes), by the AUROC of the
  held-out in-class images against them, over every score;
- without, by how well each detects a class it has never seen: for each class
  in turn, the score is fitted without it and the AUROC of the other classes'
  held-out images against its held-out images is measured ("leave one class
  out"). Only the distance scores can be refitted without a class; a softmax
  score was trained on it, and dropping its column flatters it (measured on
  flowers12: temperature 0.962 leave-one-class-out vs nearest-neighbour 0.908,
  yet against raccoon photos the softmax accepts 21% where the distance
  accepts none). So its numbers are recorded but a distance score is chosen.

Without features (a model with no `features` layer), the softmax scores are
compared as before: by the AUROC of correct vs misclassified held-out images
(Hendrycks and Gimpel's baseline argument), keeping max softmax with too few
mistakes to tell. How well the choice transfers to real unknowns is measured by
`edgepipe evaluate --unknown-dir` (and by benchmarks/bench_unknown_features.py).

Small data: with fewer than MIN_HELD_OUT held-out in-class images (or, for a
softmax score, no held-out mistakes: every value sits at the top of the scale),
the quantile the threshold is read from is not measured, and the issue-25 trap
follows (a threshold of 0.996 rejecting in-class frames). Then a fallback rule
that cannot reject most correct answers is used instead, and a warning says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.device.model.feature_score import FEATURE_KINDS, FEATURES_FILE, FeatureScore
from edgepipe.device.model.unknown import MAX_TEMPERATURE, SCORE_KINDS, SOFTMAX_KINDS, UnknownRule, confidence, soften
from edgepipe.train.metrics import auroc
from edgepipe.train.run_dir import TrainedRun

from .feature_fit import fit, with_reference

SELECTION = "AUROC of correct vs misclassified held-out in-class images"
UNSEEN_CLASS_SELECTION = ("mean over classes of the AUROC of the other classes' held-out images vs the held-out "
                          "images of the class the score was fitted without (leave one class out); distance scores only")
OUTSIDE_SELECTION = "AUROC of held-out in-class images vs the --unknown-dir images"
MIN_ERRORS_TO_SELECT = 3  # fewer mistakes than this cannot rank scores: keep max_softmax
MIN_HELD_OUT = 50  # fewer held-out in-class images cannot place a threshold at the 95-99% quantile
FALLBACK_DISTANCE = 1.5  # fallback: accept up to this many times the farthest held-out in-class image's distance
FALLBACK_SOFTMAX = 0.5  # fallback: accept down to half the lowest held-out in-class softmax score
PREFERENCE = ("knn_cosine", "mahalanobis") + SOFTMAX_KINDS  # ties: distance first, then the simpler score
TEMPERATURES = np.geomspace(1.0 / MAX_TEMPERATURE, MAX_TEMPERATURE, 161)


@dataclass
class FeatureSets:
    """Pooled features as the shipped int8 model computes them: the training split's (to fit on) and the
    held-out images' (rows matching the held-out scores)."""

    train: np.ndarray
    train_labels: np.ndarray
    held_out: np.ndarray


@dataclass
class Calibration:
    """bundle.json's `unknown` block, the fitted feature score it names (unknown.npz), and warnings."""

    block: dict[str, Any]
    feature_score: FeatureScore | None = None
    warnings: list[str] = field(default_factory=list)

    def rule(self, labels: list[str]) -> UnknownRule:
        """The rule the device will apply (what bundle.json and unknown.npz say)."""
        background = self.block["background_class"]
        return UnknownRule(self.block["score"], self.block["threshold"], self.block["temperature"],
                           labels.index(background) if background is not None else None, self.feature_score)


def fit_temperature(scores: np.ndarray, y_true: np.ndarray) -> float:
    """The T minimising the held-out negative log-likelihood of softmax(log(p) / T) (a grid search)."""
    if not len(y_true):
        return 1.0
    rows = np.arange(len(y_true))

    def nll(t: float) -> float:
        return float(-np.mean(np.log(np.maximum(soften(scores, t)[rows, y_true], 1e-12))))

    return float(min(TEMPERATURES, key=nll))


def threshold_for(values: np.ndarray, accept: float) -> float:
    """The largest threshold that still accepts (value >= threshold) at least `accept` of `values`."""
    ordered = np.sort(np.asarray(values, np.float64))
    rejected = math.floor((1.0 - accept) * len(ordered) + 1e-9)
    return float(ordered[min(rejected, len(ordered) - 1)]) if len(ordered) else 0.0


def unseen_class_auroc(kind: str, scores: np.ndarray, y: np.ndarray, features: FeatureSets | None,
                       held_features: np.ndarray | None, temperature: float, seed: int) -> float | None:
    """Leave one class out: the mean AUROC of the other classes' held-out images vs the left-out class's."""
    areas = []
    for c in np.unique(y):
        if kind in FEATURE_KINDS:
            keep = features.train_labels != c
            if not keep.any():
                continue
            values = fit(kind, features.train[keep], features.train_labels[keep], seed).familiarity(held_features)
        else:
            rest = np.delete(scores, c, axis=1)
            total = rest.sum(axis=1, keepdims=True)
            rest = np.where(total > 0, rest / np.where(total > 0, total, 1.0), 1.0 / max(rest.shape[1], 1))
            values = confidence(rest, kind, temperature)
        area = auroc(values[y != c], values[y == c])
        if area is not None:
            areas.append(area)
    return float(np.mean(areas)) if areas else None


def fallback_threshold(kind: str, values: np.ndarray) -> float:
    """A threshold that cannot reject most correct answers, for when the held-out set cannot place one:
    FALLBACK_DISTANCE times the farthest held-out image's distance, or half the lowest softmax score."""
    lowest = float(np.min(values)) if len(values) else 1.0
    if kind == "mahalanobis":  # familiarity 2 ** (-d / ref): 1.5 x the distance is the 1.5th power
        return lowest**FALLBACK_DISTANCE
    if kind == "knn_cosine":  # cosine distance 1 - similarity
        return max(0.0, 1.0 - FALLBACK_DISTANCE * (1.0 - lowest))
    return FALLBACK_SOFTMAX * lowest


def calibrate(scores: np.ndarray, y_true: np.ndarray, labels: list[str], *, accept: float = 0.99,
              score: str = "auto", background: str | None = None, features: FeatureSets | None = None,
              outside: tuple[np.ndarray, np.ndarray | None] | None = None, seed: int = 0,
              min_held_out: int = MIN_HELD_OUT) -> Calibration:
    """The `unknown` calibration for int8 held-out `scores` (n x classes) with true labels `y_true`,
    held-out and training `features` when the model gives them, and the (scores, features) of
    images of none of the classes when convert was given some."""
    scores, y_true = np.asarray(scores, np.float64), np.asarray(y_true)
    background_index = labels.index(background) if background is not None else None
    in_class = y_true != background_index if background_index is not None else np.ones(len(y_true), bool)
    s, y = scores[in_class], y_true[in_class]
    correct = np.argmax(s, axis=1) == y
    temperature = fit_temperature(s, y)
    errors = int((~correct).sum())
    fitted: dict[str, FeatureScore] = {}
    held_features = None
    if features is not None:
        train_in = features.train_labels != background_index if background_index is not None else slice(None)
        features = FeatureSets(features.train[train_in], features.train_labels[train_in], features.held_out)
        held_features = features.held_out[in_class]
        fitted = {kind: fit(kind, features.train, features.train_labels, seed) for kind in FEATURE_KINDS}
        fitted["mahalanobis"] = with_reference(fitted["mahalanobis"], held_features)

    def values(kind: str, rows: np.ndarray, rows_features: np.ndarray | None) -> np.ndarray:
        return UnknownRule(kind, 0.0, temperature, None, fitted.get(kind)).values(rows, rows_features)

    eligible: tuple[str, ...] = SCORE_KINDS
    if features is not None and outside is not None and len(outside[0]) and outside[1] is not None:
        criterion = OUTSIDE_SELECTION
        separation = {kind: auroc(values(kind, s, held_features), values(kind, *outside)) for kind in SCORE_KINDS}
    elif features is not None:
        criterion, eligible = UNSEEN_CLASS_SELECTION, FEATURE_KINDS
        separation = {kind: unseen_class_auroc(kind, s, y, features, held_features, temperature, seed)
                      for kind in SCORE_KINDS}
    else:
        criterion, eligible = SELECTION, SOFTMAX_KINDS
        separation = {kind: auroc(values(kind, s[correct], None), values(kind, s[~correct], None))
                      for kind in SOFTMAX_KINDS}
    if score != "auto":
        if score not in separation:
            raise UserError(f"--unknown-score {score} needs the model's pooled features, and this model has no "
                            "`features` layer; pick one of " + ", ".join(SOFTMAX_KINDS))
        chosen, why = score, "forced by --unknown-score"
    elif features is None and errors < MIN_ERRORS_TO_SELECT:
        chosen, why = "max_softmax", f"only {errors} misclassified held-out images: too few to compare scores"
    else:
        ranked = [k for k in PREFERENCE if k in eligible and separation[k] is not None]
        chosen = max(ranked, key=lambda k: (separation[k], -ranked.index(k))) if ranked else "max_softmax"
        why = "the highest" + (" (ties go to a distance score, then the simpler)" if features is not None else "")
        if eligible == FEATURE_KINDS:
            why += " of the distance scores (a softmax score cannot leave out a class it was trained on)"
    feature_score = fitted.get(chosen)
    rule = UnknownRule(chosen, 0.0, temperature if chosen == "temperature" else 1.0, background_index, feature_score)
    values = rule.values(s, held_features)
    warnings = []
    short = len(s) < min_held_out
    if short or (chosen in SOFTMAX_KINDS and errors == 0):
        threshold = fallback_threshold(chosen, values)
        reason = (f"only {len(s)} held-out in-class images (fewer than {min_held_out})" if short
                  else "no misclassified held-out images (every softmax score sits at the top of the scale)")
        warnings.append(f"unknown: {reason}: too few to place the threshold at {accept:.0%} accepted, so it is the "
                        f"fallback {threshold:.4f} ({_fallback_text(chosen)}); add held-out photos for a calibrated one")
    else:
        threshold = threshold_for(values, accept)
    rule = UnknownRule(rule.score, threshold, rule.temperature, background_index, feature_score)
    block = {
        "score": chosen,
        "threshold": threshold,
        "temperature": temperature if chosen == "temperature" else 1.0,
        "fitted_temperature": round(temperature, 4),
        "background_class": background,
        "accept_target": accept,
        "accepted": float(np.mean(~rule.judge_all(s, held_features))) if len(s) else 0.0,
        "n": int(len(s)),
        "threshold_rule": "fallback" if warnings else "calibrated",
        "features": ({"file": FEATURES_FILE, "dim": int(features.train.shape[1]),
                      "fitted_on": int(len(features.train))} if feature_score is not None else None),
        "selection": {
            "criterion": criterion,
            "reason": why,
            "misclassified": errors,
            "auroc": {k: (round(v, 4) if v is not None else None) for k, v in separation.items()},
        },
    }
    return Calibration(block, feature_score, warnings)


def _fallback_text(kind: str) -> str:
    if kind in FEATURE_KINDS:
        return f"{FALLBACK_DISTANCE:g} x the distance of the farthest held-out in-class image"
    return f"{FALLBACK_SOFTMAX:g} x the lowest held-out in-class score"


def false_accepts(rule: UnknownRule, unknown_scores: np.ndarray, unknown_features: np.ndarray | None = None) -> dict[str, Any]:
    """How often images of none of the classes get a class anyway."""
    rejected = (rule.judge_all(np.asarray(unknown_scores, np.float64), unknown_features) if len(unknown_scores)
                else np.zeros(0, bool))
    return {"false_accept_rate": float(np.mean(~rejected)) if len(rejected) else None, "n": int(len(rejected))}


def calibrate_bundle(scores: np.ndarray, y_true: np.ndarray, run: TrainedRun, model: Path, accept: float,
                     score: str, unknown_files: list[Path], features: FeatureSets | None) -> Calibration:
    """The calibration, with its false-accept rate where convert has unknown images to measure it on:
    the held-out images of the run's background class, and the --unknown-dir images (through the device runtime)."""
    from edgepipe.train.device_eval import run_files

    background = run.config.get("background_class")
    outside = run_files(model, unknown_files) if unknown_files else None
    calibration = calibrate(scores, y_true, run.labels, accept=accept, score=score, background=background,
                            features=features, outside=(outside.scores, outside.features) if outside else None,
                            seed=int(run.config.get("seed", 0) or 0))
    rule = calibration.rule(run.labels)
    measured: list[tuple[np.ndarray, np.ndarray | None]] = []
    sources: list[str] = []
    if background is not None:
        is_background = np.asarray(y_true) == run.labels.index(background)
        measured.append((np.asarray(scores)[is_background],
                         features.held_out[is_background] if features is not None else None))
        sources.append(f"held-out images of the background class {background!r}")
    if outside is not None:
        measured.append((outside.scores, outside.features))
        sources.append(f"{len(outside.scores)} images of --unknown-dir")
    block = calibration.block
    if measured:
        unknown_features = (np.concatenate([f for _, f in measured]) if all(f is not None for _, f in measured)
                            else None)
        unknown_scores = np.concatenate([s for s, _ in measured])
        in_class = np.ones(len(y_true), bool) if background is None else ~is_background
        area = auroc(rule.values(np.asarray(scores)[in_class], features.held_out[in_class] if features else None),
                     rule.values(unknown_scores, unknown_features))
        block["false_accept"] = {**false_accepts(rule, unknown_scores, unknown_features), "on": "; ".join(sources),
                                 "auroc": round(area, 4) if area is not None else None}
    else:
        block["false_accept"] = None
    return calibration
