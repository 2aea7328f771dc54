"""The RUN_DIR contract: what `edgepipe train` writes and convert, evaluate and
the demo read. File names live here so writer and readers cannot drift apart.

Reading a run needs no TensorFlow; only `TrainedRun.load_model()` imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from edgepipe.device.model.labels import format_labels, read_labels
from edgepipe.device.model.preprocess import InputSpec

MODEL = "model.keras"
LABELS = "labels.txt"
CONFIG = "config.json"
SPLIT = "split.json"
METRICS = "metrics.json"
HISTORY = "history.csv"
CONFUSION_PNG = "confusion_matrix.png"
CURVES_PNG = "training_curves.png"
SKIPPED = "skipped.txt"


@dataclass(frozen=True)
class TrainedRun:
    """A finished (or interrupted but checkpointed) training run."""

    root: Path
    model_path: Path
    labels: list[str]
    input_spec: InputSpec
    config: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] | None = None

    def load_model(self):
        """The tf_keras model, uncompiled (callers compile for their own purpose)."""
        from .keras_io import load_keras_model

        return load_keras_model(self.model_path)

    def split_files(self, part: str) -> list[tuple[Path, int]]:
        """Absolute paths and label indices of the "train" or "val" part of split.json."""
        if self.split is None:
            raise UserError(f"{self.root} has no {SPLIT}; retrain with this version of edgepipe to record the split")
        base = Path(self.split["data_dir"])
        return [(base / rel, int(index)) for rel, index in self.split[part]]


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2))


def write_run_inputs(root: Path, labels: list[str], config: dict[str, Any], split: dict[str, Any],
                     skipped: list[tuple[Path, str]] = ()) -> None:
    """What a run is made from: labels, config, split (and the files skipped as unreadable).

    `edgepipe train` writes these before training (and config.json again after);
    tests build runs for convert and evaluate with the same function.
    """
    (root / LABELS).write_text(format_labels(labels))
    write_json(root / CONFIG, config)
    write_json(root / SPLIT, split)
    (root / SKIPPED).write_text("".join(f"{path}\t{reason}\n" for path, reason in skipped))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL).is_file()


def load_run(run_dir: str | Path) -> TrainedRun:
    """Read a run dir (or the model.keras inside one) written by `edgepipe train`."""
    root = Path(run_dir)
    if root.is_file() and root.name == MODEL:
        root = root.parent
    if not root.is_dir():
        raise UserError(f"run dir {root} does not exist; pass the --out directory of `edgepipe train`")
    model_path = root / MODEL
    if not model_path.is_file():
        raise UserError(f"{root} is not a training run: it has no {MODEL} (train one with `edgepipe train DATA --out {root}`)")
    if not (root / LABELS).is_file():
        raise UserError(f"{root} is not a complete training run: it has no {LABELS}")
    labels = read_labels(root / LABELS)
    config = _read_json(root / CONFIG) if (root / CONFIG).is_file() else {}
    if "input" not in config:
        raise UserError(f"{root} has no {CONFIG} saying the model's input size; it was not written by `edgepipe train`")
    input_spec = InputSpec.from_json(config["input"])
    split = _read_json(root / SPLIT) if (root / SPLIT).is_file() else None
    return TrainedRun(root=root, model_path=model_path, labels=labels, input_spec=input_spec,
                      config=config, split=split)
