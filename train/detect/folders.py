"""One data folder to annotated images: which format it is in, which image
each annotation means, and which part of a fixed split it belongs to.

Formats are recognised by the files their tools write, most specific first:
Ultralytics' data.yaml, a TF Object Detection CSV, COCO JSON, split
sub-folders (train/ + test/ or val/, each a data set of its own), YOLO label
files with a class list, and Pascal VOC XML. Annotation files only ever name
images inside the data folder: a reference is looked up among the folder's
own images, never opened as a path.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgepipe.core.errors import UserError

from ..data import image_files
from .annotation_files import ImageIndex, files_under, listing, read_bytes, read_text
from .boxes import ImageRecord, RawBox
from .coco import parse_coco
from .tfcsv import has_csv_header, parse_tf_csv
from .voc import parse_voc
from .yolo import CLASS_LIST_NAMES, YAML_NAMES, parse_class_list, parse_data_yaml, parse_yolo_labels

TEST_FOLDERS = ("test", "val", "valid", "validation")  # the held-out part: the first of these present
LABEL_LIST_NAMES = ("classes.txt",)  # labelImg's class list: limits a VOC or CSV data set's classes


class NoAnnotations(UserError):
    """A folder without annotation files in any format read here (a classifier's photos, say)."""


@dataclass
class Annotated:
    """An image of the folder, its annotation, and its part of a fixed split (None: split it with the seed)."""

    path: Path
    record: ImageRecord
    part: str | None = None


@dataclass
class FolderData:
    root: Path
    format: str
    images: list[Annotated]
    declared: tuple[str, ...] = ()  # the class list the folder states ((): whatever the boxes name)
    notes: list[str] = field(default_factory=list)


def _class_list(root: Path, names: tuple[str, ...]) -> tuple[Path, tuple[str, ...]] | None:
    for name in names:
        for folder in (root, root / "labels"):
            if (folder / name).is_file():
                return folder / name, parse_class_list(read_text(folder / name), str(folder / name))
    return None


def _resolved(records: list[tuple[ImageRecord, str | None]], index: ImageIndex, fmt: str,
              declared: tuple[str, ...] = ()) -> FolderData:
    """Records matched to the folder's images; unmatched ones and images without annotations become notes."""
    data = FolderData(index.root, fmt, [], declared)
    missing: list[str] = []
    owner: dict[Path, ImageRecord] = {}
    for record, part in records:
        path = index.find(record.reference, Path(record.source))
        if path is None:
            missing.append(record.reference or Path(record.source).name)
            continue
        if path in owner:
            raise UserError(f"{record.source} and {owner[path].source} both annotate {path}; keep one")
        owner[path] = record
        data.images.append(Annotated(path, record, part))
    if missing:
        data.notes.append(f"{index.root}: {len(missing)} annotated images are not in the folder and are left out: "
                          f"{listing(missing)}")
    unlabelled = [p for p in index.paths if p not in owner]
    if unlabelled:
        data.notes.append(f"{index.root}: {len(unlabelled)} images have no annotation and are left out: "
                          f"{listing([p.name for p in unlabelled])}")
    return data


def _read_voc(root: Path, index: ImageIndex) -> FolderData:
    files = files_under(root, ".xml")
    records = [(parse_voc(read_bytes(path), str(path)), None) for path in files]
    class_list = _class_list(root, LABEL_LIST_NAMES)
    return _resolved(records, index, "Pascal VOC", class_list[1] if class_list else ())


def _csv_part(path: Path) -> str | None:
    name = path.stem.lower()
    if "train" in name:
        return "train"
    return "test" if any(word in name for word in ("test", "val")) else None


def _read_csv(files: list[Path], index: ImageIndex) -> FolderData:
    parts = {path: _csv_part(path) for path in files}
    fixed = {"train", "test"} <= set(parts.values())
    records = [(record, parts[path] if fixed else None)
               for path in files for record in parse_tf_csv(read_text(path), str(path))]
    class_list = _class_list(index.root, LABEL_LIST_NAMES)
    data = _resolved(records, index, "TF Object Detection CSV", class_list[1] if class_list else ())
    if fixed:
        data.notes.append(f"{index.root}: the split is fixed by {', '.join(p.name for p in files)}")
    return data


def _read_coco(files: list[tuple[Path, str]], index: ImageIndex) -> FolderData:
    records, categories = [], []
    for path, text in files:
        found, names = parse_coco(text, str(path))
        records += [(r, None) for r in found]
        categories += [n for n in names if n not in categories]
    return _resolved(records, index, "COCO JSON", tuple(categories))


def _label_file(image: Path) -> Path:
    """Where YOLO keeps an image's labels: .../labels/... for .../images/..., else beside the image."""
    parts = list(image.parts)
    if "images" in parts:
        at = len(parts) - 1 - parts[::-1].index("images")
        parts[at] = "labels"
        moved = Path(*parts).with_suffix(".txt")
        if moved.parent.is_dir():
            return moved
    return image.with_suffix(".txt")


def _yolo_images(images: list[Path], names: tuple[str, ...], part: str | None) -> list[Annotated]:
    found = []
    for image in images:
        label = _label_file(image)
        boxes = parse_yolo_labels(read_text(label), str(label), names) if label.is_file() else ()
        found.append(Annotated(image, ImageRecord(image.name, str(label), boxes), part))
    return found


def _read_yolo(root: Path, names: tuple[str, ...], parts: dict[str | None, list[Path]] | None = None) -> FolderData:
    """YOLO labels for every image of `root` (no split), or for the image folders of each part."""
    if parts is None:
        return FolderData(root, "YOLO", _yolo_images(image_files(root), names, None), names)
    images = [a for part, folders in parts.items() for folder in folders for a in _yolo_images(image_files(folder), names, part)]
    return FolderData(root, "YOLO", images, names)


def _yaml_folder(root: Path, base: str, written: str, source: Path) -> Path:
    """A data.yaml image folder: relative to its `path`, else to the yaml's folder (Roboflow writes ../train/images)."""
    for candidate in (root / base / written, root / written, root / written.lstrip("./")):
        if candidate.is_dir():
            return candidate
    raise UserError(f"{source}: image folder {written!r} does not exist under {root}; fix the path")


def _read_yolo_yaml(root: Path, path: Path) -> FolderData:
    """A data.yaml's names and image folders: its test (else val) images are the test part, the rest train."""
    spec = parse_data_yaml(read_text(path), str(path))
    if "train" not in spec.parts:
        return _read_yolo(root, spec.names)
    held_out = next((p for p in ("test", "val") if p in spec.parts), None)
    parts: dict[str | None, list[Path]] = defaultdict(list)
    for key, folders in spec.parts.items():
        part = None if held_out is None else "test" if key == held_out else "train"
        parts[part] += [_yaml_folder(root, spec.root, f, path) for f in folders]
    data = _read_yolo(root, spec.names, dict(parts))
    data.notes.append(f"{root}: the split is fixed by {path.name} (its {held_out} images are the test part)"
                      if held_out else f"{root}: {path.name} names only training images; they are split by the seed")
    return data


def _split_folders(root: Path) -> dict[str, list[Path]] | None:
    """train/ + test/ (or val/, valid/, validation/): a split the data set brings with it."""
    sub = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    held_out = next((sub[name] for name in TEST_FOLDERS if name in sub), None)
    if "train" not in sub or held_out is None:
        return None
    extra = [sub[name] for name in TEST_FOLDERS if name in sub and sub[name] != held_out]
    return {"train": [sub["train"], *extra], "test": [held_out]}


def _coco_files(root: Path) -> list[tuple[Path, str]]:
    found = []
    for folder in (root, root / "annotations"):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            text = read_text(path)
            if '"annotations"' in text and '"categories"' in text:
                found.append((path, text))
    return found


def read_folder(root: Path) -> FolderData:
    """The annotated images of one data folder, in whichever format it holds."""
    if not root.exists():
        raise UserError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass the folder holding the images and their annotations")
    yaml_file = next((root / n for n in YAML_NAMES if (root / n).is_file()), None)
    if yaml_file is not None:
        return _read_yolo_yaml(root, yaml_file)
    csv_files = sorted(p for p in root.glob("*.csv") if _tf_csv_or_empty(read_text(p)))
    if csv_files:
        return _read_csv(csv_files, ImageIndex(root))
    coco_files = _coco_files(root)
    if coco_files:
        return _read_coco(coco_files, ImageIndex(root))
    split = _split_folders(root)
    if split is not None:
        return _read_split_folders(root, split)
    class_list = _class_list(root, CLASS_LIST_NAMES)
    if class_list is not None and _has_yolo_labels(root):
        return _read_yolo(root, class_list[1])
    if files_under(root, ".xml"):
        return _read_voc(root, ImageIndex(root))
    raise NoAnnotations(f"{root} has no annotations edgepipe reads: Pascal VOC .xml files, a TF Object Detection "
                    "CSV, YOLO labels with classes.txt or data.yaml, or COCO .json")


def _tf_csv_or_empty(text: str) -> bool:
    """A TF Object Detection CSV, or an empty .csv (an export that went wrong: reported, not passed over)."""
    return not text.strip() or has_csv_header(text[:4096])


def _has_yolo_labels(root: Path) -> bool:
    """Whether some .txt file is named like an image of the folder (a README.txt is not a label file)."""
    stems = {p.stem for p in image_files(root)}
    return any(p.stem in stems for p in files_under(root, ".txt") if p.name not in CLASS_LIST_NAMES)


def _read_split_folders(root: Path, split: dict[str, list[Path]]) -> FolderData:
    merged = FolderData(root, "", [])
    for part, folders in split.items():
        for folder in folders:
            data = read_folder(folder)
            merged.format = data.format
            merged.declared += tuple(n for n in data.declared if n not in merged.declared)
            merged.images += [Annotated(a.path, a.record, part) for a in data.images]
            merged.notes += data.notes
    merged.notes.append(f"{root}: the split is fixed by its folders "
                        f"{', '.join(f.name for folders in split.values() for f in folders)}")
    return merged


def unknown_label(boxes: list[RawBox], declared: tuple[str, ...]) -> RawBox | None:
    """The first box whose class the folder's class list does not have."""
    return next((b for b in boxes if declared and b.label not in declared), None)
