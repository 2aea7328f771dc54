"""Helpers for tests that build or edit bundles: the manifest's file hashes are
recomputed after an edit, as convert computes them."""

from __future__ import annotations

import json
from pathlib import Path

from edgepipe.device.model.bundle import MANIFEST, build_manifest, load_bundle


def rehash(root: Path, **changes) -> dict:
    """Rewrite ROOT/bundle.json with every file's current sha256 and the given top-level changes."""
    bundle = load_bundle(root, verify=False)
    manifest = {**bundle.manifest, **changes}
    manifest["files"] = build_manifest(root, labels=bundle.labels, input_spec=bundle.input_spec, output={},
                                       models={})["files"]
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def with_changed_answer(source: Path, out: Path) -> Path:
    """A copy of a golden-set bundle whose recorded answer for golden/000.jpg names another class:
    the model still answers as before, so on any device it now 'disagrees' on 1 image."""
    import shutil

    import numpy as np

    root = Path(shutil.copytree(source, out))
    golden = json.loads((root / MANIFEST).read_text())["golden"]
    scores = np.asarray(golden["images"][0]["expected"])
    scores[int(np.argmax(scores))] = -1.0
    golden["images"][0]["expected"] = scores.tolist()
    rehash(root, golden=golden)
    return root
