"""What a bundle says about where it came from: folder and file names, never paths.

A bundle travels to every device it is deployed to, and its MODEL_CARD.md is shared with
whoever uses the model; an absolute path there leaks a user name and a folder layout, and the
device needs none of it. The training run on the workstation keeps its paths (convert reads
the photos through them); only what enters the bundle is reduced to names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

PATH_KEYS = ("data_dir", "val_dir", "weights")  # single paths in a run's config.json
PATH_LIST_KEY = "data_dirs"
FOLDER_COUNTS_KEY = "images_per_folder"  # {data folder path: images}


def display_names(paths: Sequence[str]) -> list[str]:
    """The last component of each path, numbered where two folders share a name."""
    names = [Path(p).name or str(p) for p in paths]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name} ({seen[name]})")
    return unique


def public_training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config.json as a bundle may carry it: every path replaced by its name.

    "imagenet" and "none" (weights that are not files) are names already and stay as they are.
    """
    public = dict(config)
    for key in PATH_KEYS:
        if isinstance(public.get(key), str):
            public[key] = Path(public[key]).name or public[key]
    folders = public.get(PATH_LIST_KEY)
    if isinstance(folders, list):
        public[PATH_LIST_KEY] = display_names([str(f) for f in folders])
    counts = public.get(FOLDER_COUNTS_KEY)
    if isinstance(counts, dict):
        public[FOLDER_COUNTS_KEY] = dict(zip(display_names(list(counts)), counts.values()))
    return public
