"""The bundle's golden set: a few held-out images with the answers the shipped
model gave on the workstation, so the device can check it gives the same.

convert writes it (see convert/golden.py); `edgepipe verify`, deploy and the
Edge TPU probe read it here. The images are kept as they were on disk and go
through the device's own decoding, like a camera frame would. Like every
bundle file they are hashed in bundle.json; the bytes are hashed and then
decoded from memory, so what is checked is what is used.

    bundle.json "golden": {
      "images": [{"file": "golden/000.jpg", "label": 3, "expected": [12 dequantised scores]}, ...],
      "min_agreement": {"cpu": 1.0, "edgetpu": 0.95},
      "expected_from": {"model": "model.tflite", "backend": "ai_edge_litert", "backend_version": "2.3.0"}
    }
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .preprocess import IMAGE_SUFFIXES, ImageReadError, decode_image

GOLDEN_DIR = "golden"
# Top-1 agreement a model must reach on the golden set: the CPU model runs the
# same int8 kernels as convert did, so every answer must match; the Edge TPU's
# compiled arithmetic may round a near-tie the other way.
DEFAULT_MIN_AGREEMENT = {"cpu": 1.0, "edgetpu": 0.95}
# Disagreements listed in a report (a failed check names the images to look at).
MAX_LISTED = 20


@dataclass(frozen=True)
class GoldenImage:
    file: str
    label: int
    expected: np.ndarray
    bgr: np.ndarray


@dataclass(frozen=True)
class GoldenSet:
    images: list[GoldenImage]
    labels: list[str]
    min_agreement: dict[str, float]

    @property
    def expected(self) -> np.ndarray:
        return np.stack([image.expected for image in self.images])


@dataclass(frozen=True)
class Comparison:
    """How one model's scores on the golden set compare with the expected ones."""

    n: int
    agreed: int
    max_abs_diff: float
    mean_abs_diff: float
    correct: int
    disagreements: list[dict[str, Any]]

    @property
    def agreement(self) -> float:
        return self.agreed / self.n if self.n else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "agreed": self.agreed,
            "top1_agreement": self.agreement,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "accuracy": self.accuracy,
            "disagreements": self.disagreements,
        }


def has_golden(manifest: dict[str, Any]) -> bool:
    golden = manifest.get("golden")
    return isinstance(golden, dict) and bool(golden.get("images"))


def _plain_golden_path(bundle: Bundle, name: Any) -> Path:
    """A golden file name from the manifest, refused unless it is a plain file under golden/."""
    if not isinstance(name, str):
        raise BundleError(f"bundle {bundle.root}: a golden entry has no file name; re-create the bundle")
    pure = PurePosixPath(name)
    if (pure.is_absolute() or ".." in pure.parts or len(pure.parts) != 2 or pure.parts[0] != GOLDEN_DIR
            or pure.suffix.lower() not in IMAGE_SUFFIXES or "\\" in name):
        raise BundleError(f"bundle {bundle.root}: golden file {name!r} is not a plain image under {GOLDEN_DIR}/; "
                          "re-create the bundle with `edgepipe convert`")
    path = bundle.root / pure
    if path.is_symlink():
        raise BundleError(f"bundle {bundle.root}: {name} is a symlink; bundles hold plain files only")
    return path


def _read_listed(bundle: Bundle, name: str, path: Path) -> bytes:
    """The file's bytes, checked against bundle.json's sha256 (then used from memory)."""
    expected = bundle.manifest.get("files", {}).get(name)
    if not isinstance(expected, str):
        raise BundleError(f"bundle {bundle.root}: golden file {name} is not listed in bundle.json's files")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"bundle {bundle.root}: cannot read {name} ({exc.strerror or exc}); copy the bundle again") from None
    if hashlib.sha256(data).hexdigest() != expected:
        raise BundleError(f"bundle {bundle.root}: {name} does not match its sha256 in bundle.json; copy the bundle again")
    return data


def _expected_scores(bundle: Bundle, entry: dict[str, Any]) -> np.ndarray:
    values = entry.get("expected")
    if (not isinstance(values, list) or len(values) != len(bundle.labels)
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)):
        raise BundleError(f"bundle {bundle.root}: golden entry {entry.get('file')} needs {len(bundle.labels)} "
                          "finite expected scores; re-create the bundle")
    return np.asarray(values, dtype=np.float32)


def _min_agreement(bundle: Bundle, golden: dict[str, Any]) -> dict[str, float]:
    stored = golden.get("min_agreement", {})
    if not isinstance(stored, dict):
        raise BundleError(f"bundle {bundle.root}: golden.min_agreement is not a mapping; re-create the bundle")
    thresholds = dict(DEFAULT_MIN_AGREEMENT)
    for accelerator, value in stored.items():
        if accelerator not in thresholds or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise BundleError(f"bundle {bundle.root}: golden.min_agreement {accelerator}={value!r} is not a "
                              "fraction for cpu or edgetpu; re-create the bundle")
        thresholds[accelerator] = float(value)
    return thresholds


def read_golden(bundle: Bundle) -> GoldenSet | None:
    """The bundle's golden set, validated and decoded; None when it has none (--no-golden)."""
    if not has_golden(bundle.manifest):
        return None
    golden = bundle.manifest["golden"]
    entries = golden["images"]
    if not isinstance(entries, list):
        raise BundleError(f"bundle {bundle.root}: golden.images is not a list; re-create the bundle")
    images = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise BundleError(f"bundle {bundle.root}: a golden entry is not an object; re-create the bundle")
        name = entry.get("file")
        path = _plain_golden_path(bundle, name)
        label = entry.get("label")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(bundle.labels):
            raise BundleError(f"bundle {bundle.root}: golden entry {name} has label {label!r}, "
                              f"not an index into its {len(bundle.labels)} labels")
        try:
            bgr = decode_image(_read_listed(bundle, name, path), name)
        except ImageReadError as exc:
            raise BundleError(f"bundle {bundle.root}: {exc}; re-create the bundle") from None
        images.append(GoldenImage(name, label, _expected_scores(bundle, entry), bgr))
    return GoldenSet(images, bundle.labels, _min_agreement(bundle, golden))


def run_golden(classifier: Any, golden: GoldenSet) -> np.ndarray:
    """The classifier's dequantised scores for every golden image, in order (n x classes)."""
    return np.stack([classifier.invoke(classifier.preprocess(image.bgr)) for image in golden.images])


def compare(golden: GoldenSet, scores: np.ndarray) -> Comparison:
    """Top-1 agreement, score differences and accuracy of `scores` against the expected outputs."""
    scores = np.asarray(scores, dtype=np.float32)
    expected = golden.expected
    if scores.shape != expected.shape:
        raise BundleError(f"the model gave scores of shape {scores.shape} for the golden set, expected {expected.shape}")
    got, want = scores.argmax(axis=1), expected.argmax(axis=1)
    diff = np.abs(scores - expected)
    truth = np.asarray([image.label for image in golden.images])
    disagreements = [
        {
            "file": golden.images[i].file,
            "true": golden.labels[truth[i]],
            "expected": golden.labels[want[i]],
            "expected_score": round(float(expected[i, want[i]]), 4),
            "got": golden.labels[got[i]],
            "got_score": round(float(scores[i, got[i]]), 4),
        }
        for i in np.flatnonzero(got != want)[:MAX_LISTED]
    ]
    return Comparison(
        n=len(golden.images),
        agreed=int(np.sum(got == want)),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        correct=int(np.sum(got == truth)),
        disagreements=disagreements,
    )
