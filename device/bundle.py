"""The bundle: the one contract between convert (writes), deploy (ships) and
device (reads). See README, 'The bundle'.

    bundle/
      model.tflite           full-integer int8, for the CPU
      model_edgetpu.tflite   when compiled for the Edge TPU
      labels.txt             one label per line, index = line number
      bundle.json            this module's manifest

The device refuses a bundle whose files do not match the recorded sha256, so
a half-copied or edited bundle never runs silently.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from .labels import read_labels
from .preprocess import InputSpec

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
LABELS = "labels.txt"
CPU_MODEL = "model.tflite"
EDGETPU_MODEL = "model_edgetpu.tflite"


class BundleError(UserError):
    """A bundle that is missing, malformed, or does not match its manifest."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    labels: list[str]
    input_spec: InputSpec
    models: dict[str, str] = field(default_factory=dict)

    def model_path(self, accelerator: str) -> Path | None:
        """Path of the model for 'cpu' or 'edgetpu', or None when the bundle has none."""
        name = self.models.get(accelerator)
        return self.root / name if name else None

    @property
    def sha256(self) -> str:
        """Identity of the whole bundle: the hash of its manifest (which hashes every file)."""
        return sha256_file(self.root / MANIFEST)


def build_manifest(
    root: Path,
    *,
    labels: list[str],
    input_spec: InputSpec,
    output: dict[str, Any],
    models: dict[str, str],
    accuracy: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest for the files already written in `root` (hashes every file but itself)."""
    files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "labels_file": LABELS,
        "num_labels": len(labels),
        "input": input_spec.to_json(),
        "output": output,
        "models": models,
        "files": files,
        "accuracy": accuracy or {},
        "training": training or {},
    }
    manifest.update(extra or {})
    return manifest


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"bundle {root} lists no files in {MANIFEST}; re-create it with `edgepipe convert`")
    for name, expected in files.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {root} is missing {name}; copy the whole bundle again")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"bundle {root}: {name} does not match its sha256 in {MANIFEST} "
                "(changed or partly copied); copy the bundle again"
            )


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a bundle (no {MANIFEST}); make one with `edgepipe convert`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}); re-create the bundle") from None
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path} has schema version {version!r}; this edgepipe reads {SCHEMA_VERSION}: "
            "upgrade edgepipe on the device or re-convert"
        )
    if verify:
        verify_files(root, manifest)
    labels = read_labels(root / manifest.get("labels_file", LABELS))
    if manifest.get("num_labels") not in (None, len(labels)):
        raise BundleError(f"bundle {root}: labels.txt has {len(labels)} labels, manifest says {manifest['num_labels']}")
    try:
        spec = InputSpec.from_json(manifest["input"])
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path} has no valid input spec ({exc}); re-create the bundle") from None
    return Bundle(root=root, manifest=manifest, labels=labels, input_spec=spec, models=dict(manifest.get("models", {})))
