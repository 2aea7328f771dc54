"""Reading annotation files, and finding the image an annotation names.

Annotation files come from other tools and other machines: they are read with
a size limit and as UTF-8 with a clear error, and an image reference in them
is only ever looked up among the data folder's own images, never opened as a
path (labelImg's absolute `<path>`, a `../` in a CSV).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from edgepipe.core.errors import UserError

from ..data import image_files

MAX_ANNOTATION_BYTES = 512 * 1024 * 1024
LISTED = 5  # file names a note lists before "and N more"


def listing(names: list[str]) -> str:
    """A few names for a note, then how many more."""
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def read_bytes(path: Path) -> bytes:
    """An annotation file's bytes; a UserError naming it when it cannot be read or is too large to be one."""
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise UserError(f"{path} is larger than {MAX_ANNOTATION_BYTES >> 20} MB; not an annotation file")
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_text(path: Path) -> str:
    """An annotation file as text; a UserError naming it when it is not UTF-8."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


class ImageIndex:
    """The images under a data folder, found by the name an annotation gives them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = image_files(root)
        self.known = set(self.paths)
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        for path in self.paths:
            self.by_name[path.name].append(path)
            self.by_stem[path.stem].append(path)

    def find(self, reference: str, annotation: Path) -> Path | None:
        """The image `reference` (as an annotation file writes it) means; None when the folder has no such image.

        Tried in order: beside the annotation file, from the data folder, then by
        file name and by stem anywhere in the folder (only when that is unambiguous).
        """
        reference = reference.replace("\\", "/")
        name = reference.rsplit("/", 1)[-1]
        for base in (annotation.parent, self.root):
            if reference:
                candidate = Path(os.path.normpath(base / reference))
                if candidate in self.known:
                    return candidate
        stem = Path(name).stem if name else annotation.stem
        for matches in (self.by_name.get(name, []), self.by_stem.get(stem, []), self.by_stem.get(annotation.stem, [])):
            near = [m for m in matches if m.parent in (annotation.parent, annotation.parent.parent / "images")]
            if len(near) == 1 or len(matches) == 1:
                return (near or matches)[0]
        return None


def files_under(root: Path, suffix: str) -> list[Path]:
    """Files named *`suffix` at any depth (following symlinked folders, as image_files does), hidden ones skipped."""
    found = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        found += [Path(folder) / n for n in names if n.lower().endswith(suffix) and not n.startswith(".")]
    return sorted(found)
