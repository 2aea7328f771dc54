"""PNG figures for a run dir and `edgepipe evaluate --out`.

matplotlib is imported inside the functions with the Agg backend, so the
module is cheap to import and works on headless machines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from edgepipe.core.files import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    """Render to memory, then write atomically, so a reader never sees half a PNG."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())


def save_confusion_matrix(report: Mapping[str, Any], path: str | Path) -> Path:
    """The confusion matrix of a `classification_report`, counts in cells, rows = true class."""
    import numpy as np

    plt = _pyplot()
    labels = list(report["labels"])
    matrix = np.asarray(report["confusion"], dtype=np.int64).reshape(len(labels), len(labels))
    size = max(4.0, 0.55 * len(labels) + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        ax.imshow(matrix, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"accuracy {report['accuracy']:.3f} (n={report['n']})")
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            if value:
                ax.text(j, i, str(value), ha="center", va="center",
                        color="white" if value > threshold else "black", fontsize=8)
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def save_training_curves(history: Sequence[Mapping[str, Any]], path: str | Path,
                         metrics: tuple[str, str] = ("loss", "accuracy")) -> Path:
    """Two metrics per epoch (and their `val_` twins) from history rows (`epoch`, `phase`, `loss`, `val_loss`, ...)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        x = list(range(1, len(history) + 1))
        for ax, metric in zip(axes, metrics):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                ys = [row.get(key) for row in history]
                if any(y is not None and y != "" for y in ys):
                    ax.plot(x, [float(y) if y not in (None, "") else float("nan") for y in ys], style, label=key)
            phase_starts = [i for i in range(1, len(history)) if history[i].get("phase") != history[i - 1].get("phase")]
            for start in phase_starts:
                ax.axvline(start + 0.5, color="grey", linewidth=0.8, linestyle=":",
                           label=f"{history[start].get('phase')} starts")
            ax.set_xlabel("epoch")
            ax.set_title(metric)
            ax.legend()
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)


def save_precision_recall_curves(recall: Sequence[float], curves: Mapping[str, Sequence[float]], path: str | Path,
                                 title: str) -> Path:
    """One precision-recall curve per class (detection: COCO's interpolated precision at IoU 0.5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    try:
        for name, precision in curves.items():
            ax.plot(recall, precision, label=name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(title)
        if curves:
            ax.legend(loc="lower left", fontsize=8)
        _save(fig, Path(path))
    finally:
        plt.close(fig)
    return Path(path)
