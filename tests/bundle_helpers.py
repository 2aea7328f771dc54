"""Helpers for tests that build or edit bundles: the manifest's file hashes are
recomputed after an edit, as convert computes them."""

from __future__ import annotations

import json
from pathlib import Path

from edgepipe.device.bundle import MANIFEST, build_manifest, load_bundle


def rehash(root: Path, **changes) -> dict:
    """Rewrite ROOT/bundle.json with every file's current sha256 and the given top-level changes."""
    bundle = load_bundle(root, verify=False)
    manifest = {**bundle.manifest, **changes}
    manifest["files"] = build_manifest(root, labels=bundle.labels, input_spec=bundle.input_spec, output={},
                                       models={})["files"]
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
