"""Accuracy of every candidate on the run's held-out split, measured the way the
device will see the images, and the drift report between float and int8.

The float model sees `device.preprocess.to_model_float`; the TFLite models go
through `edgepipe.train.device_eval.run_files` (the device runtime:
decode, resize, quantize, invoke, dequantize), so a number here is a number
on the Pi.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.device.model.preprocess import InputSpec, normalize
from edgepipe.core.progress import Progress
from edgepipe.core.tfenv import native_stderr_silenced
from edgepipe.train.metrics import classification_report

from .quantize import load_pixels


@dataclass
class Evaluation:
    """Scores of one model on the held-out files (rows align with `files`)."""

    name: str
    scores: np.ndarray
    report: dict[str, Any]
    features: np.ndarray | None = None  # the pooled features output, when the model gives one

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.scores, axis=1)

    @property
    def accuracy(self) -> float:
        return float(self.report["accuracy"])


@dataclass
class HeldOut:
    files: list[Path]
    labels: np.ndarray
    pixels: np.ndarray
    skipped: list[Path]


def load_held_out(files: list[tuple[Path, int]], spec: InputSpec) -> HeldOut:
    """The held-out images that decode; unreadable ones are skipped for every model alike."""
    pixels, labels, skipped = load_pixels(files, spec)
    unreadable = set(skipped)
    readable = [p for p, _ in files if p not in unreadable]
    return HeldOut(files=readable, labels=labels, pixels=pixels, skipped=skipped)


def evaluate_keras(model, held_out: HeldOut, spec: InputSpec, class_names: list[str], batch: int = 32) -> Evaluation:
    scores = []
    with Progress(len(held_out.pixels), "verifying the float model") as progress:
        for i in range(0, len(held_out.pixels), batch):
            scores.append(np.asarray(model(normalize(held_out.pixels[i : i + batch], spec), training=False)))
            progress.update(len(scores[-1]))
    stacked = np.concatenate(scores) if scores else np.zeros((0, len(class_names)), np.float32)
    return Evaluation("float", stacked, classification_report(held_out.labels, None, class_names, scores=stacked))


def evaluate_on_device(name: str, model: Path, held_out: HeldOut, class_names: list[str], accelerator: str = "cpu") -> Evaluation:
    """A bundle dir or .tflite through the device runtime."""
    from edgepipe.train.device_eval import run_files

    with native_stderr_silenced():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" line
        outputs = run_files(model, held_out.files, labels=None, accelerator=accelerator,
                            progress=f"verifying {name} ({accelerator})")
    if outputs.unreadable:
        raise RuntimeError(f"device runtime could not read {len(outputs.unreadable)} images the float model read")
    scores = np.asarray(outputs.scores, dtype=np.float32)
    return Evaluation(name, scores, classification_report(held_out.labels, None, class_names, scores=scores),
                      outputs.features)


def closeness_to_float(reference: Evaluation, candidate: Evaluation, eps: float = 1e-6) -> dict[str, float]:
    """How close an int8 model's scores stay to the float model's on the same images.

    mean_kl: mean over images of KL(float || int8), scores clipped at `eps`
    (int8 softmax outputs are often exactly 0) and renormalised;
    mean_abs_diff: mean absolute score difference over all images and classes.
    Both 0 for identical scores; lower is closer.
    """
    p = np.clip(reference.scores.astype(np.float64), eps, None)
    q = np.clip(candidate.scores.astype(np.float64), eps, None)
    p /= p.sum(axis=1, keepdims=True)
    q /= q.sum(axis=1, keepdims=True)
    kl = np.sum(p * np.log(p / q), axis=1)
    return {
        "mean_kl": round(float(kl.mean()), 6) if len(kl) else 0.0,
        "mean_abs_diff": round(float(np.abs(reference.scores - candidate.scores).mean()), 6) if len(kl) else 0.0,
    }


def _per_class_accuracy(report: dict[str, Any]) -> list[float]:
    confusion = np.asarray(report["confusion"], dtype=np.float64)
    support = confusion.sum(axis=1)
    return [float(confusion[i, i] / support[i]) if support[i] else 0.0 for i in range(len(support))]


def drift_report(reference: Evaluation, quantized: Evaluation, held_out: HeldOut, class_names: list[str], split_root: Path | None = None) -> dict[str, Any]:
    """What quantization changed, prediction by prediction, relative to the float model."""
    ref_pred, q_pred = reference.predictions, quantized.predictions
    ref_acc, q_acc = _per_class_accuracy(reference.report), _per_class_accuracy(quantized.report)
    changed = []
    for i in np.flatnonzero(ref_pred != q_pred):
        path = held_out.files[i]
        shown = path.relative_to(split_root).as_posix() if split_root and path.is_relative_to(split_root) else str(path)
        changed.append(
            {
                "file": shown,
                "true": class_names[held_out.labels[i]],
                reference.name: class_names[ref_pred[i]],
                quantized.name: class_names[q_pred[i]],
                f"{reference.name}_score": round(float(reference.scores[i, ref_pred[i]]), 4),
                f"{quantized.name}_score": round(float(quantized.scores[i, q_pred[i]]), 4),
            }
        )
    return {
        "reference": reference.name,
        "quantized": quantized.name,
        "n": int(len(held_out.labels)),
        "accuracy": {reference.name: reference.accuracy, quantized.name: quantized.accuracy},
        "drop_points": round((reference.accuracy - quantized.accuracy) * 100, 2),
        "top1_agreement": float(np.mean(ref_pred == q_pred)) if len(ref_pred) else 0.0,
        "per_class": {
            name: {reference.name: round(a, 4), quantized.name: round(b, 4), "delta_points": round((b - a) * 100, 2)}
            for name, a, b in zip(class_names, ref_acc, q_acc)
        },
        "confusion_difference": (
            np.asarray(quantized.report["confusion"]) - np.asarray(reference.report["confusion"])
        ).tolist(),
        "changed": changed,
        "skipped_unreadable": [str(p) for p in held_out.skipped],
    }


def drift_markdown(drift: dict[str, Any], accuracies: dict[str, Any], labels: list[str]) -> str:
    """drift.json for people: what to look at when int8 disagrees with float."""
    ref, q = drift["reference"], drift["quantized"]
    lines = [
        f"# Quantization drift: {q} vs {ref}",
        "",
        f"Held-out images: {drift['n']} (the validation split of the training run).",
        "",
        "| model | top-1 accuracy |",
        "| --- | --- |",
    ]
    for name in ("float", "ptq", "qat", "int8", "edgetpu", "float32_tflite", "float16_tflite"):
        value = accuracies.get(name)
        if isinstance(value, float):
            lines.append(f"| {name} | {value * 100:.2f}% |")
    lines += [
        "",
        f"Drop {ref} -> {q}: **{drift['drop_points']:.2f} points**; top-1 agreement with {ref}: "
        f"**{drift['top1_agreement'] * 100:.2f}%**.",
        "",
        "## Per-class accuracy",
        "",
        f"| class | {ref} | {q} | delta (points) |",
        "| --- | --- | --- | --- |",
    ]
    for name, row in drift["per_class"].items():
        lines.append(f"| {name} | {row[ref] * 100:.1f}% | {row[q] * 100:.1f}% | {row['delta_points']:+.1f} |")
    diff = np.asarray(drift["confusion_difference"])
    lines += ["", f"## Confusion-matrix difference ({q} minus {ref}; rows true, columns predicted)", ""]
    if diff.any():
        cells = [(i, j, int(diff[i, j])) for i, j in zip(*np.nonzero(diff))]
        lines += [f"- {labels[i]} -> {labels[j]}: {v:+d}" for i, j, v in cells]
    else:
        lines.append("No difference.")
    lines += ["", f"## Images whose label changed ({len(drift['changed'])})", ""]
    if drift["changed"]:
        lines += [f"| file | true | {ref} | {q} |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {c['file']} | {c['true']} | {c[ref]} ({c[f'{ref}_score']:.3f}) | {c[q]} ({c[f'{q}_score']:.3f}) |"
            for c in drift["changed"]
        ]
    else:
        lines.append("None: every held-out image gets the same label.")
    closeness = drift.get("closeness_to_float") or {}
    if closeness:
        lines += ["", "## Closeness to the float model (what breaks an accuracy tie between PTQ and QAT)", "",
                  "| model | mean KL(float, int8) | mean abs score difference |", "| --- | --- | --- |"]
        lines += [f"| {name} | {c['mean_kl']:.5f} | {c['mean_abs_diff']:.5f} |" for name, c in closeness.items()]
    return "\n".join(lines) + "\n"
