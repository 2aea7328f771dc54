"""convert's side of the golden set: pick a stratified sample of the held-out
images, copy them into the bundle as they are on disk, and record the answers
the shipped model gave on them (see device/model/golden.py for the format and why).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.device.model.golden import DEFAULT_MIN_AGREEMENT, GOLDEN_DIR


def select_golden(labels: np.ndarray, n: int, seed: int) -> list[int]:
    """Up to `n` indices, classes taken in turn (so every class gets 2 before any gets 3), seeded."""
    rng = np.random.default_rng(seed)
    queues = {int(c): [int(i) for i in rng.permutation(np.flatnonzero(labels == c))] for c in np.unique(labels)}
    chosen: list[int] = []
    while len(chosen) < n and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return sorted(chosen)


def write_golden(root: Path, files: list[Path], labels: np.ndarray, scores: np.ndarray, indices: list[int],
                 expected_from: dict[str, Any], unknown_values: np.ndarray | None = None) -> dict[str, Any]:
    """Copy the chosen images into root/golden/ byte for byte; the manifest's "golden" block (with each
    image's feature-space unknown score when there is one)."""
    (root / GOLDEN_DIR).mkdir()
    images = []
    for k, i in enumerate(indices):
        name = f"{GOLDEN_DIR}/{k:03d}{files[i].suffix.lower()}"
        shutil.copyfile(files[i], root / name)
        images.append({"file": name, "label": int(labels[i]), "expected": [float(v) for v in scores[i]]})
        if unknown_values is not None:
            images[-1]["expected_unknown"] = float(unknown_values[i])
    thresholds = {name: DEFAULT_MIN_AGREEMENT[name] for name in ("cpu", "edgetpu")}  # imx500: added with its model
    return {"images": images, "min_agreement": thresholds, "expected_from": expected_from}
