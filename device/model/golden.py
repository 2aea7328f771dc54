"""The bundle's golden set: a few held-out images with the answers the shipped
model gave on the workstation, so the device can check it gives the same.

convert writes it (see convert/golden.py); `edgepipe verify`, deploy and the
Edge TPU probe read it here. The images are kept as they were on disk and go
through the device's own decoding, like a camera frame would. Like every
bundle file they are hashed in bundle.json; the bytes are hashed and then
decoded from memory, so what is checked is what is used.

    bundle.json "golden": {
      "images": [{"file": "golden/000.jpg", "label": 3, "expected": [12 dequantised scores],
                  "expected_unknown": 0.61}, ...],
      "min_agreement": {"cpu": 1.0, "edgetpu": 0.95},
      "expected_from": {"model": "model.tflite", "backend": "ai_edge_litert", "backend_version": "2.3.0"}
    }

`expected_unknown` is there when the bundle's "unknown" rule is a feature-space
score: it is computed from the model's second output (the pooled features), so
checking it checks that output too. The golden outputs are then the class
scores with this value as one more column, and an image agrees only when its
top-1 class and its unknown verdict (accept or reject at the bundle's threshold)
both match.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .preprocess import IMAGE_SUFFIXES, ImageReadError, decode_image
from .unknown import UnknownRule

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
class GoldenImage:
    file: str
    label: int
    expected: np.ndarray  # the class scores, then the unknown score when the rule has one (see above)
    bgr: np.ndarray
    expected_imx500: np.ndarray | None = None  # the simulated sensor's scores, when the bundle has an IMX500 model


@dataclass(frozen=True)
class GoldenSet:
    images: list[GoldenImage]
    labels: list[str]
    min_agreement: dict[str, float]
    unknown: UnknownRule | None = None  # the feature-space rule whose score is the last column

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
    unknown_max_abs_diff: float | None = None  # of the feature-space unknown score, when checked

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
            "unknown_max_abs_diff": self.unknown_max_abs_diff,
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


def _expected_outputs(bundle: Bundle, entry: dict[str, Any], with_unknown: bool, key: str = "expected") -> np.ndarray:
    values = entry.get(key)
    if (not isinstance(values, list) or len(values) != len(bundle.labels)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and -1e6 <= v <= 1e6 for v in values)):
        raise BundleError(f"bundle {bundle.root}: golden entry {entry.get('file')} needs {len(bundle.labels)} "
                          "finite expected scores; re-create the bundle")
    if with_unknown:
        value = entry.get("expected_unknown")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise BundleError(f"bundle {bundle.root}: golden entry {entry.get('file')} needs an expected_unknown "
                              "score in [0, 1] (its unknown rule is a feature-space score); re-create the bundle")
        values = [*values, value]
    return np.asarray(values, dtype=np.float32)


def feature_rule(bundle: Bundle) -> UnknownRule | None:
    """The bundle's rule when it is a feature-space one (its score is checked with the class scores)."""
    return bundle.unknown if bundle.unknown is not None and bundle.unknown.features is not None else None


def _min_agreement(bundle: Bundle, golden: dict[str, Any]) -> dict[str, float]:
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


def read_golden(bundle: Bundle) -> GoldenSet | None:
    """The bundle's golden set, validated and decoded; None when it has none (--no-golden)."""
    if not has_golden(bundle.manifest):
        return None
    golden = bundle.manifest["golden"]
    entries = golden["images"]
    if not isinstance(entries, list):
        raise BundleError(f"bundle {bundle.root}: golden.images is not a list; re-create the bundle")
    images = []
    rule = feature_rule(bundle)
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
        imx500 = _expected_outputs(bundle, entry, False, "expected_imx500") if "expected_imx500" in entry else None
        images.append(GoldenImage(name, label, _expected_outputs(bundle, entry, rule is not None), bgr, imx500))
    return GoldenSet(images, bundle.labels, _min_agreement(bundle, golden), rule)


def golden_outputs(scores: np.ndarray, features: np.ndarray | None, rule: UnknownRule | None) -> np.ndarray:
    """One image's golden outputs: its class scores, then its unknown score under a feature-space `rule`."""
    return scores if rule is None else np.append(scores, np.float32(rule.values(scores, features)))


def run_golden(classifier: Any, golden: GoldenSet) -> np.ndarray:
    """The classifier's golden outputs for every image, in order (n x classes, + 1 with a feature rule)."""
    rows = []
    for image in golden.images:
        scores = classifier.invoke(classifier.preprocess(image.bgr))
        rows.append(golden_outputs(scores, classifier.features(), golden.unknown))
    return np.stack(rows)


def compare(golden: GoldenSet, scores: np.ndarray) -> Comparison:
    """Top-1 agreement, score differences and accuracy of `scores` against the expected outputs."""
    outputs = np.asarray(scores, dtype=np.float32)
    expected_outputs = golden.expected
    if outputs.shape != expected_outputs.shape:
        raise BundleError(f"the model gave scores of shape {outputs.shape} for the golden set, expected {expected_outputs.shape}")
    classes = len(golden.labels)
    scores, expected = outputs[:, :classes], expected_outputs[:, :classes]
    got, want = scores.argmax(axis=1), expected.argmax(axis=1)
    agrees = got == want
    unknown_diff = None
    if golden.unknown is not None:
        accepted = outputs[:, classes] >= golden.unknown.threshold
        agrees &= accepted == (expected_outputs[:, classes] >= golden.unknown.threshold)
        unknown_diff = float(np.abs(outputs[:, classes] - expected_outputs[:, classes]).max(initial=0.0))
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
            **({"expected_unknown": round(float(expected_outputs[i, classes]), 4),
                "got_unknown": round(float(outputs[i, classes]), 4)} if golden.unknown is not None else {}),
        }
        for i in np.flatnonzero(~agrees)[:MAX_LISTED]
    ]
    return Comparison(
        n=len(golden.images),
        agreed=int(np.sum(agrees)),
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        mean_abs_diff=float(diff.mean()) if diff.size else 0.0,
        correct=int(np.sum(got == truth)),
        disagreements=disagreements,
        unknown_max_abs_diff=unknown_diff,
    )
