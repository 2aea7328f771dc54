"""The frames a service kept with `run --collect`: listed with their hashes, deleted only when unchanged.

`edgepipe deploy collect` copies the listed pairs, checks them on the
workstation, and asks to delete exactly the pairs that arrived intact.
"""

from __future__ import annotations

import os
from pathlib import Path

from .files import sha256_member
from .layout import Layout
from .protocol import AgentError, parse_pair_spec


def collect_dir(args, layout: Layout) -> Path:
    return Path(os.path.expanduser(args.dir)).absolute() if args.dir else layout.collect


def collected_sha(directory: Path, name: str) -> str | None:
    """The sha256 of a collected file: a plain name, a regular file, no symlink; None otherwise."""
    try:
        return sha256_member(directory, name)
    except AgentError:
        return None


def cmd_collect_list(args, layout: Layout) -> dict:
    """The complete pairs (a sidecar is written after its JPEG) with their hashes, oldest first."""
    directory = collect_dir(args, layout)
    pairs = []
    if directory.is_dir():
        for sidecar in sorted(directory.glob("*.json")):
            image = sidecar.with_suffix(".jpg")
            jpg_sha, json_sha = collected_sha(directory, image.name), collected_sha(directory, sidecar.name)
            if jpg_sha is None or json_sha is None:  # no JPEG yet, a hidden temp file, a symlink: not a pair
                continue
            pairs.append({"stem": sidecar.stem, "jpg": jpg_sha, "json": json_sha,
                          "jpg_bytes": image.stat().st_size, "json_bytes": sidecar.stat().st_size})
    return {"dir": str(directory), "pairs": pairs}


def cmd_collect_delete(args, layout: Layout) -> dict:
    """Delete the pairs named by protocol.pair_spec, each only if both files still have those hashes."""
    directory = collect_dir(args, layout)
    deleted, kept = [], []
    for spec in args.pairs:
        stem, jpg_sha, json_sha = parse_pair_spec(spec)
        image, sidecar = directory / (stem + ".jpg"), directory / (stem + ".json")
        if stem.startswith(".") or collected_sha(directory, image.name) != jpg_sha \
                or collected_sha(directory, sidecar.name) != json_sha:
            kept.append(stem)
            continue
        sidecar.unlink()  # first: a JPEG without a sidecar is never listed again
        try:  # a detector's pre-labels: `deploy collect` remakes them from the sidecar
            (directory / (stem + ".xml")).unlink()
        except FileNotFoundError:  # a classifier's pair has none (Python 3.7: no missing_ok)
            pass
        image.unlink()
        deleted.append(stem)
    return {"dir": str(directory), "deleted": deleted, "kept": kept}
