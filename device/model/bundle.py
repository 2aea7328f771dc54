"""The bundle: the one contract between convert (writes), deploy (ships) and
device (reads). See docs/bundle.md.

    bundle/
      model.tflite           full-integer int8, for the CPU
      model_edgetpu.tflite   when compiled for the Edge TPU
      labels.txt             one label per line, index = line number
      bundle.json            this module's manifest (with the calibrated "unknown" rule)
      unknown.npz            the fitted feature-space "unknown" score, when convert chose one
      MODEL_CARD.md          for people: intended use, data, held-out metrics, limits

The manifest is the single source of truth: every name in `files` is a plain
relative path to a regular file inside the bundle (no `..`, no absolute path,
no symlink), everything the device loads (models, labels) must be listed
there, and what is loaded is hashed from the very bytes then used. Files not
in the manifest are never loaded and never shipped. So a half-copied, edited
or booby-trapped bundle never runs silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from .labels import labels_from_bytes
from .preprocess import InputSpec
from .safefile import (FileRefused, open_member, open_regular, plain_relative_name, read_fd, sha256_bytes,
                       sha256_fd)
from .tasks import DEFAULT_TASK, task_named
from .unknown import UnknownRule, rule_from_manifest

SCHEMA_VERSION = 1
MANIFEST = "bundle.json"
LABELS = "labels.txt"
CPU_MODEL = "model.tflite"
EDGETPU_MODEL = "model_edgetpu.tflite"
TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier, bytes 4..8
MAX_MODEL_BYTES = 512 << 20
MAX_SMALL_FILE_BYTES = 16 << 20  # manifest, labels
MAX_LABELS = 100_000
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class BundleError(UserError):
    """A bundle that is missing, malformed, or does not match its manifest."""


def sha256_file(path: Path) -> str:
    """sha256 of a regular file (links followed), in constant memory."""
    return sha256_fd(open_regular(Path(path)))


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


@dataclass
class Bundle:
    root: Path
    manifest: dict[str, Any]
    labels: list[str]
    input_spec: InputSpec
    manifest_bytes: bytes = b""  # as read and checked: what is shipped, and the bundle's identity
    models: dict[str, str] = field(default_factory=dict)
    unknown: UnknownRule | None = None  # the calibrated "unknown" rule, when convert made one
    task: str = DEFAULT_TASK  # what the model is for (tasks.py)

    @property
    def sha256(self) -> str:
        """Identity of the whole bundle: the hash of its manifest (which hashes every file)."""
        return sha256_bytes(self.manifest_bytes)

    def model_path(self, accelerator: str) -> Path | None:
        """Path of the model for 'cpu' or 'edgetpu' (for messages), or None when the bundle has none."""
        name = self.models.get(accelerator)
        return self.root / name if name else None

    def read_member(self, name: str, *, max_bytes: int = MAX_SMALL_FILE_BYTES, identifier: bytes | None = None,
                    identifier_at: int = 0, what: str = "file") -> bytes:
        """A listed file's bytes, read once and checked against its sha256: the bytes to load."""
        return read_member(self.root, self.manifest, name, max_bytes=max_bytes, identifier=identifier,
                           identifier_at=identifier_at, what=what)

    def read_model(self, accelerator: str) -> bytes:
        """The model for 'cpu' or 'edgetpu', size and TFLite identifier checked before it is read."""
        return self.read_member(self.models[accelerator], max_bytes=MAX_MODEL_BYTES, identifier=TFLITE_IDENTIFIER,
                                identifier_at=4, what="TFLite model")


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
    task: str = DEFAULT_TASK,
) -> dict[str, Any]:
    """The manifest for the files already written in `root` (hashes every file but itself).

    A symlink or other non-regular entry is refused: a bundle holds plain files only.
    """
    names = []
    for p in sorted(root.rglob("*")):
        name = p.relative_to(root).as_posix()
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            raise BundleError(f"{p} is a symlink or special file; a bundle holds plain files only")
        if p.is_file() and name != MANIFEST:
            names.append(name)
    files = {name: sha256_fd(open_member(root, name)) for name in names}
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "task": task,
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
    check_manifest(manifest, root / MANIFEST)
    return manifest


def check_manifest(manifest: Any, where: Path) -> None:
    """One line naming what is wrong when the manifest does not have the shape this edgepipe reads."""

    def bad(what: str) -> BundleError:
        return BundleError(f"{where}: {what}; re-create the bundle with `edgepipe convert`")

    if not isinstance(manifest, dict):
        raise bad(f"the manifest is a JSON {type(manifest).__name__}, not an object")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{where} has schema version {version!r}; this edgepipe reads {SCHEMA_VERSION}: "
            "upgrade edgepipe on the device or re-convert"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise bad("`files` must be a non-empty object of name -> sha256 (it lists no files)")
    for name, digest in files.items():
        if not plain_relative_name(name) or name == MANIFEST:
            raise bad(f"`files` names {name!r}, not a plain relative path inside the bundle")
        if not isinstance(digest, str) or not SHA256_HEX.fullmatch(digest):
            raise bad(f"`files` gives {name} the sha256 {digest!r}, not 64 lowercase hex digits")
    models = manifest.get("models", {})
    if not isinstance(models, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in models.items()):
        raise bad("`models` must be an object of accelerator -> file name")
    labels_file = manifest.get("labels_file", LABELS)
    if not isinstance(labels_file, str):
        raise bad(f"`labels_file` is {str(labels_file)[:40]!r}, not a file name")
    for role, name in [("labels_file", labels_file)] + [(f"models.{k}", v) for k, v in models.items()]:
        if name not in files:
            raise bad(f"{role} {name!r} is not listed in `files`, so its sha256 is not checked")
    try:
        task_named(manifest.get("task", DEFAULT_TASK))
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not isinstance(manifest.get("input"), dict):
        raise bad("`input` must be an object (the input spec)")
    num_labels = manifest.get("num_labels")
    if num_labels is not None and (not isinstance(num_labels, int) or isinstance(num_labels, bool)
                                   or not 1 <= num_labels <= MAX_LABELS):
        raise bad(f"`num_labels` is {str(num_labels)[:40]!r}, not an integer from 1 to {MAX_LABELS}")


def read_member(root: Path, manifest: dict[str, Any], name: str, *, max_bytes: int = MAX_SMALL_FILE_BYTES,
                identifier: bytes | None = None, identifier_at: int = 0, what: str = "file") -> bytes:
    """Bytes of a file the manifest lists, hashed from exactly the bytes returned."""
    expected = manifest["files"].get(name)
    if expected is None:
        raise BundleError(f"bundle {root}: {name} is not listed in {MANIFEST}; it is never loaded")
    try:
        data = read_fd(open_member(root, name), f"{root}/{name}", max_bytes=max_bytes, identifier=identifier,
                       identifier_at=identifier_at, what=what)
    except FileRefused as exc:
        raise BundleError(f"bundle {root}: {exc}; copy the whole bundle again") from None
    if sha256_bytes(data) != expected:
        raise BundleError(f"bundle {root}: {name} does not match its sha256 in {MANIFEST} "
                          "(changed or partly copied); copy the bundle again")
    return data


def verify_files(root: Path, manifest: dict[str, Any]) -> None:
    """Every listed file is a plain file inside `root` with its recorded sha256."""
    for name, expected in manifest["files"].items():
        try:
            actual = sha256_fd(open_member(root, name))
        except FileRefused as exc:
            raise BundleError(f"bundle {root}: {exc}; copy the whole bundle again") from None
        if actual != expected:
            raise BundleError(
                f"bundle {root}: {name} does not match its sha256 in {MANIFEST} "
                "(changed or partly copied); copy the bundle again"
            )


def read_manifest(root: Path) -> tuple[dict[str, Any], bytes]:
    """The checked manifest and its bytes (whose hash is the bundle's identity)."""
    manifest_path = root / MANIFEST
    try:
        data = read_fd(open_member(root, MANIFEST), str(manifest_path), max_bytes=MAX_SMALL_FILE_BYTES,
                       what="manifest")
    except FileRefused as exc:
        raise BundleError(f"{root} is not a bundle ({exc}); make one with `edgepipe convert`") from None
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also a 5000-digit number
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:120]
        raise BundleError(f"{manifest_path} is not valid JSON ({detail}); re-create the bundle") from None
    check_manifest(manifest, manifest_path)
    return manifest, data


def features_dim(manifest: dict[str, Any], root: Path) -> int | None:
    """How many pooled features the bundle's model gives as its second output (None: it has one output)."""
    output = manifest.get("output")
    dim = output.get("features_dim") if isinstance(output, dict) else None
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= 1 << 16):
        raise BundleError(f"{root / MANIFEST}: output.features_dim is {dim!r}, not a positive integer; re-create the bundle")
    return dim


def input_spec_of(manifest: dict[str, Any], where: Path) -> InputSpec:
    """The checked manifest's input spec, every field validated (type, finite, in range), or one BundleError."""
    try:
        return InputSpec.from_json(manifest["input"])
    except (KeyError, TypeError, ValueError, UserError) as exc:
        raise BundleError(f"{where} has no valid input spec ({exc}); re-create the bundle") from None


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    root = Path(path)
    manifest, manifest_bytes = read_manifest(root)
    if verify:
        verify_files(root, manifest)
    labels_file = manifest.get("labels_file", LABELS)
    try:
        labels = labels_from_bytes(read_member(root, manifest, labels_file), root / labels_file)
    except UserError as exc:
        raise BundleError(str(exc)) from None
    if manifest.get("num_labels") not in (None, len(labels)):
        raise BundleError(f"bundle {root}: {labels_file} has {len(labels)} labels, manifest says {manifest['num_labels']}")
    spec = input_spec_of(manifest, root / MANIFEST)
    unknown = rule_from_manifest(manifest, labels, str(root / MANIFEST), lambda name: read_member(root, manifest, name),
                                 features_dim(manifest, root))
    return Bundle(root=root, manifest=manifest, labels=labels, input_spec=spec, manifest_bytes=manifest_bytes,
                  models=dict(manifest.get("models", {})), unknown=unknown,
                  task=manifest.get("task", DEFAULT_TASK))
