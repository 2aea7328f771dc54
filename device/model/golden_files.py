"""What both kinds of golden set share (golden.py: a classifier's scores; golden_detect.py: a
detector's boxes): where the images are, how they are read from the bundle, the agreement a
model must reach, and the comparison a check reports."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .bundle import Bundle, BundleError
from .preprocess import IMAGE_SUFFIXES

GOLDEN_DIR = "golden"
# Top-1 agreement a model must reach on the golden set: the CPU model runs the
# same int8 kernels as convert did, so every answer must match; the Edge TPU's
# compiled arithmetic may round a near-tie the other way.
# The AI Camera's sensor answers an injected golden image with the MCT model convert simulated
# ("expected_imx500"); its fixed-point arithmetic may round a near-tie the other way too.
DEFAULT_MIN_AGREEMENT = {"cpu": 1.0, "edgetpu": 0.95, "imx500": 0.95}
# Disagreements listed in a report (a failed check names the images to look at).
MAX_LISTED = 20


@dataclass(frozen=True)
class Comparison:
    """How one model's scores on the golden set compare with the expected ones."""

    n: int
    agreed: int
    max_abs_diff: float
    mean_abs_diff: float
    correct: int
    disagreements: list[dict[str, Any]]
    unknown_max_abs_diff: float | None = None  # of the feature-space unknown score, when checked
    measure: str = "top-1 agreement"  # what `agreed` counts, as the reports name it

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
            "measure": self.measure,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "accuracy": self.accuracy,
            "unknown_max_abs_diff": self.unknown_max_abs_diff,
            "disagreements": self.disagreements,
        }


def plain_golden_path(bundle: Bundle, name: Any) -> Path:
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


def read_listed(bundle: Bundle, name: str, path: Path) -> bytes:
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


def min_agreement(bundle: Bundle, golden: dict[str, Any]) -> dict[str, float]:
    stored = golden.get("min_agreement", {})
    if not isinstance(stored, dict):
        raise BundleError(f"bundle {bundle.root}: golden.min_agreement is not a mapping; re-create the bundle")
    thresholds = dict(DEFAULT_MIN_AGREEMENT)
    for accelerator, value in stored.items():
        if (accelerator not in thresholds or not isinstance(value, (int, float)) or isinstance(value, bool)
                or not 0 <= value <= 1):
            raise BundleError(f"bundle {bundle.root}: golden.min_agreement {accelerator}={value!r} is not a "
                              "fraction for cpu or edgetpu; re-create the bundle")
        thresholds[accelerator] = float(value)
    return thresholds
