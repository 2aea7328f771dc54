"""Scoring image files through the device runtime, exactly as the Pi does.

`edgepipe evaluate` (for bundles and .tflite files) and convert's accuracy
checks both call `run_files`, so "int8 accuracy" means one thing
everywhere: the device's decoding, preprocessing, interpreter and
dequantisation. No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgepipe.device.model.preprocess import ImageReadError, load_image
from edgepipe.device.model.classifier import Classifier, open_classifier
from edgepipe.core.progress import track


@dataclass
class DeviceOutputs:
    """Both outputs of a model for the readable files, in file order, and the unreadable files."""

    scores: np.ndarray  # n_readable x classes, float32, dequantised
    features: np.ndarray | None  # n_readable x dim when the model has a features output
    unreadable: list[Path]


def run_files(
    model_or_bundle: str | Path | Classifier,
    files: Sequence[str | Path],
    labels: str | Path | None = None,
    *,
    accelerator: str = "cpu",
    threads: int | None = None,
    progress: str | None = None,
) -> DeviceOutputs:
    """Scores (and pooled features, when the model gives them) of every readable file.

    Rows exist only for readable files: drop the unreadable ones from your
    ground truth too. `model_or_bundle` is a bundle dir, a .tflite file or an
    already-open Classifier. `progress` names the work on a progress bar.
    """
    classifier = (model_or_bundle if isinstance(model_or_bundle, Classifier)
                  else open_classifier(model_or_bundle, labels=labels, accelerator=accelerator, threads=threads))
    scores = np.zeros((len(files), len(classifier.labels)), dtype=np.float32)
    features: np.ndarray | None = None
    unreadable: list[Path] = []
    row = 0
    for path in track(files, len(files), progress) if progress else files:
        try:
            image = load_image(path)
        except ImageReadError:
            unreadable.append(Path(path))
            continue
        scores[row] = classifier.invoke(classifier.preprocess(image))
        vector = classifier.features()
        if vector is not None:
            if features is None:
                features = np.zeros((len(files), len(vector)), dtype=np.float32)
            features[row] = vector
        row += 1
    return DeviceOutputs(scores[:row], features[:row] if features is not None else None, unreadable)
