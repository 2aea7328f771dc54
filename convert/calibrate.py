"""Calibrating "unknown" on the run's held-out images (see device/model/unknown.py).

The threshold is set where a chosen share of held-out in-class images is still
accepted (--unknown-accept): its cost in lost answers is then known before the
bundle ships. Which confidence score to threshold is chosen on the same images
by how well it separates the model's right answers from its wrong ones (AUROC
of correct vs misclassified held-out images). Convert has no images of "none of
the classes", and a misclassified in-class image is the nearest thing: a score
that ranks the model's own mistakes low is the one most likely to rank
unfamiliar images low too (Hendrycks and Gimpel's baseline argument). With too
few mistakes to tell, the plain maximum softmax is kept; ties go to the simpler
score. How well the choice transfers to real unknowns is measured by
`edgepipe evaluate --unknown-dir` (and by benchmarks/bench_unknown.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.device.model.unknown import MAX_TEMPERATURE, SCORE_KINDS, UnknownRule, confidence, rule_from_manifest, soften
from edgepipe.train.metrics import auroc
from edgepipe.train.run_dir import TrainedRun

SELECTION = "AUROC of correct vs misclassified held-out in-class images"
MIN_ERRORS_TO_SELECT = 3  # fewer mistakes than this cannot rank scores: keep max_softmax
TEMPERATURES = np.geomspace(1.0 / MAX_TEMPERATURE, MAX_TEMPERATURE, 161)


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


def calibrate(scores: np.ndarray, y_true: np.ndarray, labels: list[str], *, accept: float = 0.95,
              score: str = "auto", background: str | None = None) -> dict[str, Any]:
    """The bundle's `unknown` block for int8 held-out `scores` (n x classes) with true labels `y_true`."""
    scores, y_true = np.asarray(scores, np.float64), np.asarray(y_true)
    background_index = labels.index(background) if background is not None else None
    in_class = y_true != background_index if background_index is not None else np.ones(len(y_true), bool)
    s, y = scores[in_class], y_true[in_class]
    correct = np.argmax(s, axis=1) == y
    temperature = fit_temperature(s, y)
    separation = {kind: auroc(confidence(s[correct], kind, temperature), confidence(s[~correct], kind, temperature))
                  for kind in SCORE_KINDS}
    errors = int((~correct).sum())
    if score != "auto":
        chosen, why = score, "forced by --unknown-score"
    elif errors < MIN_ERRORS_TO_SELECT:
        chosen, why = "max_softmax", f"only {errors} misclassified held-out images: too few to compare scores"
    else:
        chosen = max(SCORE_KINDS, key=lambda k: (separation[k], -SCORE_KINDS.index(k)))
        why = "the highest of the three"
    threshold = threshold_for(confidence(s, chosen, temperature), accept)
    rule = UnknownRule(chosen, threshold, temperature if chosen == "temperature" else 1.0, background_index)
    return {
        "score": chosen,
        "threshold": threshold,
        "temperature": temperature if chosen == "temperature" else 1.0,
        "fitted_temperature": round(temperature, 4),
        "background_class": background,
        "accept_target": accept,
        "accepted": float(np.mean(~rule.judge_all(s))) if len(s) else 0.0,
        "n": int(len(s)),
        "selection": {
            "criterion": SELECTION,
            "reason": why,
            "misclassified": errors,
            "auroc": {k: (round(v, 4) if v is not None else None) for k, v in separation.items()},
        },
    }


def false_accepts(rule: UnknownRule, unknown_scores: np.ndarray) -> dict[str, Any]:
    """How often images of none of the classes get a class anyway."""
    rejected = rule.judge_all(np.asarray(unknown_scores, np.float64)) if len(unknown_scores) else np.zeros(0, bool)
    return {"false_accept_rate": float(np.mean(~rejected)) if len(rejected) else None, "n": int(len(rejected))}


def calibrate_bundle(scores: np.ndarray, y_true: np.ndarray, run: TrainedRun, model: Path, accept: float,
                     score: str, unknown_files: list[Path]) -> dict[str, Any]:
    """The calibrated block, with its false-accept rate where convert has unknown images to measure it on:
    the held-out images of the run's background class, and the --unknown-dir images (through the device runtime)."""
    from edgepipe.train.device_eval import predict_files

    background = run.config.get("background_class")
    block = calibrate(scores, y_true, run.labels, accept=accept, score=score, background=background)
    rule = rule_from_manifest({"unknown": block}, run.labels, "the calibration")
    measured: list[np.ndarray] = []
    sources: list[str] = []
    if background is not None:
        measured.append(np.asarray(scores)[np.asarray(y_true) == run.labels.index(background)])
        sources.append(f"held-out images of the background class {background!r}")
    if unknown_files:
        unknown_scores, _ = predict_files(model, unknown_files)
        measured.append(unknown_scores)
        sources.append(f"{len(unknown_scores)} images of --unknown-dir")
    if measured:
        block["false_accept"] = {**false_accepts(rule, np.concatenate(measured)), "on": "; ".join(sources)}
    else:
        block["false_accept"] = None
    return block
