"""Classification metrics: the one JSON shape every evaluation in edgepipe
reports (`edgepipe evaluate --json`, RUN_DIR/metrics.json, convert's accuracy
checks), so numbers from Keras, TFLite and the Edge TPU compare field by field.

Pure numpy: convert and the device-runtime path use it without TensorFlow.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgepipe.device.model.unknown import UnknownRule


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def top_k_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the k highest scores (ties broken by index)."""
    if len(y_true) == 0:
        return 0.0
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == y_true[:, None], axis=1)))


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Per-class ratios where an empty denominator gives 0, as scikit-learn's zero_division=0."""
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _checked_inputs(y_true, y_pred, scores, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(y_true, y_pred, scores) as arrays of the right shapes, y_pred the argmax of scores when not given."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(y_true), num_classes):
            raise ValueError(f"scores have shape {scores.shape}, expected {(len(y_true), num_classes)}")
    if y_pred is None:
        if scores is None:
            raise ValueError("classification_report needs y_pred or scores")
        y_pred = np.argmax(scores, axis=1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if len(y_pred) != len(y_true):
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} has a class index outside 0..{num_classes - 1}")
    return y_true, y_pred, scores


def classification_report(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray | None,
    labels: Sequence[str],
    scores: np.ndarray | None = None,
    top_k: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Accuracy, top-k, per-class precision/recall/F1, macro averages and the confusion matrix.

    `y_pred` may be None when `scores` (n x classes) is given: it is then the
    argmax. Top-k needs `scores`; without them only top-1 (= accuracy) is
    reported, and so it is for k at or above the number of classes. Macro averages are over every label, including ones with no
    samples, so a class the model never predicts pulls them down.
    """
    labels = list(labels)
    num_classes = len(labels)
    y_true, y_pred, scores = _checked_inputs(y_true, y_pred, scores, num_classes)
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    precision = _safe_divide(true_positive, predicted.astype(np.float64))
    recall = _safe_divide(true_positive, support.astype(np.float64))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    n = int(len(y_true))
    accuracy = float(true_positive.sum() / n) if n else 0.0

    top = {"1": accuracy}
    if scores is not None:
        # top-k with k >= the number of classes is 1.0 by definition: not reported.
        top.update({str(k): top_k_accuracy(y_true, scores, k) for k in top_k if 1 < k < num_classes})

    return {
        "accuracy": accuracy,
        "top_k": top,
        "macro_precision": float(precision.mean()) if num_classes else 0.0,
        "macro_recall": float(recall.mean()) if num_classes else 0.0,
        "macro_f1": float(f1.mean()) if num_classes else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": matrix.tolist(),
        "labels": labels,
        "n": n,
    }


def format_report(report: dict[str, Any]) -> str:
    """The human table `edgepipe evaluate` prints: summary, per-class table, confusion matrix."""
    labels = report["labels"]
    lines = [f"accuracy  {report['accuracy']:.4f}  (n={report['n']})"]
    for k, value in report["top_k"].items():
        if k != "1":
            lines.append(f"top-{k}     {value:.4f}")
    lines.append(
        f"macro     precision {report['macro_precision']:.4f}  recall {report['macro_recall']:.4f}"
        f"  f1 {report['macro_f1']:.4f}"
    )
    width = max([len("class")] + [len(label) for label in labels])
    lines += ["", f"{'class':<{width}}  precision  recall      f1  support"]
    for label in labels:
        row = report["per_class"][label]
        lines.append(
            f"{label:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:6.4f}  {row['support']:7d}"
        )
    cell = max([3] + [len(str(v)) for row in report["confusion"] for v in row])
    lines += ["", "confusion matrix (rows: true, columns: predicted; column i = class i above)"]
    lines.append(" " * (width + 2) + " ".join(f"{i:>{cell}}" for i in range(len(labels))))
    for label, row in zip(labels, report["confusion"]):
        lines.append(f"{label:<{width}}  " + " ".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Area under the ROC curve of a score that should be higher for `positive` than for `negative`.

    The Mann-Whitney statistic with ties counted half: the probability that a
    random positive outscores a random negative. None when either side is empty.
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if not len(positive) or not len(negative):
        return None
    values, inverse, counts = np.unique(np.concatenate([positive, negative]), return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based, ties share their mean rank
    ranks = average_rank[inverse]
    u = ranks[: len(positive)].sum() - len(positive) * (len(positive) + 1) / 2.0
    return float(u / (len(positive) * len(negative)))


def unknown_report(rule: UnknownRule, scores: np.ndarray, y_true: np.ndarray, unknown_scores: np.ndarray,
                   features: np.ndarray | None = None, unknown_features: np.ndarray | None = None) -> dict[str, Any]:
    """How well `rule` says "unknown": on in-class images (`scores`, true labels `y_true`) and on
    images of none of the classes (`unknown_scores`); a feature-space rule also needs both images'
    pooled `features`.

    Rejection on, an in-class image counts as right only when it is accepted and
    correctly classified; `accuracy_of_accepted` is the accuracy of the answers given.
    """
    scores, unknown_scores = np.asarray(scores, np.float64), np.asarray(unknown_scores, np.float64)
    rejected_in, rejected_out = rule.judge_all(scores, features), rule.judge_all(unknown_scores, unknown_features)
    correct = np.argmax(scores, axis=1) == np.asarray(y_true)
    area = auroc(rule.values(scores, features), rule.values(unknown_scores, unknown_features))

    def share(mask: np.ndarray) -> float | None:
        return float(np.mean(mask)) if len(mask) else None

    return {
        "score": rule.score,
        "threshold": rule.threshold,
        "n_in_class": int(len(scores)),
        "n_unknown": int(len(unknown_scores)),
        "false_accept_rate": share(~rejected_out),
        "auroc": round(area, 4) if area is not None else None,
        "in_class_accepted": share(~rejected_in),
        "accuracy_rejection_off": share(correct),
        "accuracy_rejection_on": share(correct & ~rejected_in),
        "accuracy_of_accepted": share(correct[~rejected_in]),
    }


def format_unknown_report(report: dict[str, Any]) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.2f}%"

    auroc_text = "-" if report["auroc"] is None else f"{report['auroc']:.4f}"
    return "\n".join([
        f"unknown: {report['score']} below {report['threshold']:.4f}; "
        f"{report['n_in_class']} in-class and {report['n_unknown']} unknown images",
        f"  false-accept rate (unknown images given a class)  {pct(report['false_accept_rate'])}",
        f"  AUROC in-class vs unknown                          {auroc_text}",
        f"  in-class images accepted                           {pct(report['in_class_accepted'])}",
        f"  in-class accuracy, rejection off                   {pct(report['accuracy_rejection_off'])}",
        f"  in-class accuracy, rejection on (rejected = wrong) {pct(report['accuracy_rejection_on'])}",
        f"  accuracy of the accepted answers                   {pct(report['accuracy_of_accepted'])}",
    ])
