"""One frame's preprocess, inference and postprocess, each timed, shared by `run`'s loop,
its workers and `classify` so every command reports the same stages the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..model.classifier import Classifier
from ..model.postprocess import Prediction, ScoreSmoother, top_k
from ..model.unknown import UnknownRule, Verdict


def preprocess_timed(classifier: Classifier, bgr: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    tensor = classifier.preprocess(bgr)
    return tensor, (time.perf_counter() - started) * 1e3


def load_timed(classifier: Classifier, bgr: np.ndarray) -> float:
    """Preprocess a frame straight into the classifier's input tensor: milliseconds taken."""
    started = time.perf_counter()
    classifier.load_frame(bgr)
    return (time.perf_counter() - started) * 1e3


def invoke_loaded_timed(classifier: Classifier) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = classifier.invoke_loaded()
    return scores, (time.perf_counter() - started) * 1e3


def invoke_timed(classifier: Classifier, tensor: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = classifier.invoke(tensor)
    return scores, (time.perf_counter() - started) * 1e3


@dataclass
class Scored:
    """One frame's (smoothed) scores, its top-k, the unknown verdict (when rejecting) and the stage timings."""

    scores: np.ndarray
    top: list[Prediction]
    verdict: Verdict | None
    stages: dict[str, float]


def postprocess_timed(scores: np.ndarray, labels: list[str], k: int, threshold: float = 0.0,
                      smoother: ScoreSmoother | None = None, unknown: UnknownRule | None = None,
                      features: np.ndarray | None = None) -> Scored:
    started = time.perf_counter()
    if smoother:
        scores = smoother.update(scores)
    top = top_k(scores, labels, k, threshold)
    verdict = unknown.judge(scores, features) if unknown else None
    return Scored(scores, top, verdict, {"postprocess": (time.perf_counter() - started) * 1e3})


def predict_timed(classifier: Classifier, tensor: np.ndarray, k: int, threshold: float = 0.0,
                  smoother: ScoreSmoother | None = None, unknown: UnknownRule | None = None) -> Scored:
    """Top-k predictions for one input tensor, the unknown verdict, and the milliseconds of
    inference and postprocessing."""
    scores, inference_ms = invoke_timed(classifier, tensor)
    scored = postprocess_timed(scores, classifier.labels, k, threshold, smoother, unknown, classifier.features())
    scored.stages = {"inference": inference_ms, **scored.stages}
    return scored
