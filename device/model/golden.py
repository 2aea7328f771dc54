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

from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle, BundleError
from .golden_detect import compare_detections, detection_rows, read_detect_golden
from .golden_files import (DEFAULT_MIN_AGREEMENT, GOLDEN_DIR, MAX_LISTED, Comparison, min_agreement,  # noqa: F401
                           plain_golden_path, read_listed)
from .preprocess import ImageReadError, decode_image
from .unknown import UnknownRule


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


def has_golden(manifest: dict[str, Any]) -> bool:
    golden = manifest.get("golden")
    return isinstance(golden, dict) and bool(golden.get("images"))


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


def read_golden(bundle: Bundle) -> Any:
    """The bundle's golden set (a GoldenSet, or a detector's DetectGoldenSet), validated and decoded;
    None when it has none (--no-golden)."""
    if not has_golden(bundle.manifest):
        return None
    if bundle.task == "detect":
        return read_detect_golden(bundle)
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
        path = plain_golden_path(bundle, name)
        label = entry.get("label")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(bundle.labels):
            raise BundleError(f"bundle {bundle.root}: golden entry {name} has label {label!r}, "
                              f"not an index into its {len(bundle.labels)} labels")
        try:
            bgr = decode_image(read_listed(bundle, name, path), name)
        except ImageReadError as exc:
            raise BundleError(f"bundle {bundle.root}: {exc}; re-create the bundle") from None
        imx500 = _expected_outputs(bundle, entry, False, "expected_imx500") if "expected_imx500" in entry else None
        images.append(GoldenImage(name, label, _expected_outputs(bundle, entry, rule is not None), bgr, imx500))
    return GoldenSet(images, bundle.labels, min_agreement(bundle, golden), rule)


def golden_outputs(scores: np.ndarray, features: np.ndarray | None, rule: UnknownRule | None) -> np.ndarray:
    """One image's golden outputs: its class scores, then its unknown score under a feature-space `rule`."""
    return scores if rule is None else np.append(scores, np.float32(rule.values(scores, features)))


def run_golden(classifier: Any, golden: Any) -> np.ndarray:
    """The classifier's golden outputs for every image, in order (n x classes, + 1 with a feature rule);
    a detector's objects as one row of slots per image (golden_detect.detection_rows)."""
    if getattr(classifier, "is_detector", False):
        return np.stack([detection_rows(classifier, classifier.invoke(classifier.preprocess(image.bgr)))
                         for image in golden.images])
    rows = []
    for image in golden.images:
        scores = classifier.invoke(classifier.preprocess(image.bgr))
        rows.append(golden_outputs(scores, classifier.features(), golden.unknown))
    return np.stack(rows)


def compare(golden: Any, scores: np.ndarray) -> Comparison:
    """Top-1 agreement, score differences and accuracy of `scores` against the expected outputs
    (a detector's: agreement of its objects by class and overlap, golden_detect)."""
    if not isinstance(golden, GoldenSet):
        return compare_detections(golden, scores)
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
