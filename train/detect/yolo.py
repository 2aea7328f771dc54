"""YOLO (Darknet / Ultralytics) labels: one .txt per image, a line
`class x_center y_center width height` per box in fractions of the image,
and the class names in `classes.txt` / `obj.names` (one per line) or in
Ultralytics' `data.yaml` (`names`, and `train`/`val`/`test` image folders).

By the format's convention an image whose .txt is empty or missing has no
objects: it is kept as an image without boxes, not refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from edgepipe.core.errors import UserError

from .boxes import RawBox

CLASS_LIST_NAMES = ("classes.txt", "obj.names")
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
YAML_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class YoloYaml:
    names: tuple[str, ...]
    parts: dict[str, tuple[str, ...]]  # "train"/"val"/"test" -> image folders as written (relative to `root`)
    root: str  # the yaml's `path`, "" when absent


def parse_class_list(text: str, source: str) -> tuple[str, ...]:
    """classes.txt / obj.names: one class name per line, the line number (from 0) is the class id."""
    names = [line.strip() for line in text.lstrip("\ufeff").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UserError(f"{source} is empty; list one class name per line (line 1 is class 0)")
    _check_names(names, source)
    return tuple(names)


def _check_names(names: Sequence[str], source: str) -> None:
    blank = [i for i, n in enumerate(names) if not n]
    if blank:
        raise UserError(f"{source}: class {blank[0]} has no name; give every class id a name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{source}: class name {repeated[0]!r} is listed twice; names must be unique")


def _yaml_names(value: Any, source: str) -> tuple[str, ...]:
    if isinstance(value, dict):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in value) or \
                sorted(value) != list(range(len(value))):
            raise UserError(f"{source}: `names` must map the class ids 0, 1, 2, ... to names; fix the file")
        value = [value[i] for i in range(len(value))]
    if not isinstance(value, list) or not value:
        raise UserError(f"{source}: `names` must be a non-empty list of class names (or id: name); fix the file")
    names = [str(v).strip() if isinstance(v, (str, int, float)) and not isinstance(v, bool) else "" for v in value]
    _check_names(names, source)
    return tuple(names)


def _yaml_folders(value: Any, source: str, key: str) -> tuple[str, ...]:
    folders = value if isinstance(value, list) else [value]
    if not folders or not all(isinstance(f, str) and f.strip() for f in folders):
        raise UserError(f"{source}: `{key}` must be an image folder or a list of them; fix the file")
    if any(f.strip().endswith(".txt") for f in folders):
        raise UserError(f"{source}: `{key}` lists images in a .txt file; point it at an image folder instead")
    return tuple(f.strip() for f in folders)


def parse_data_yaml(text: str, source: str) -> YoloYaml:
    """Ultralytics' data.yaml: class names, and the image folders of each part of the split."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}{line}: not valid YAML; fix the file") from None
    if not isinstance(data, dict) or "names" not in data:
        raise UserError(f"{source} has no `names` list; an Ultralytics data.yaml needs the class names")
    names = _yaml_names(data["names"], source)
    if "nc" in data and data["nc"] != len(names):
        raise UserError(f"{source}: nc is {data['nc']!r} but `names` has {len(names)} classes; make them agree")
    parts = {key: _yaml_folders(data[key], source, key) for key in YAML_PARTS if data.get(key) is not None}
    root = data.get("path") or ""
    if not isinstance(root, str):
        raise UserError(f"{source}: `path` must be a folder; fix the file")
    return YoloYaml(names, parts, root)


def _class_id(value: str, names: Sequence[str], where: str) -> str:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise UserError(f"{where}: class {value[:20]!r} is not a class id (a whole number); fix the line")
    if not 0 <= number < len(names):
        raise UserError(f"{where}: class id {int(number)} is unknown: the class list has {len(names)} "
                        f"(0..{len(names) - 1}); fix the line or add the class")
    return names[int(number)]


def parse_yolo_labels(text: str, source: str, names: Sequence[str]) -> tuple[RawBox, ...]:
    """One image's label file: boxes in fractions of the image (`normalised`), classes by name."""
    boxes = []
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        where = f"{source} line {number}"
        if len(values) != 5:
            raise UserError(f"{where}: {len(values)} values; a YOLO box is 5 "
                            "(class x_center y_center width height); polygons are not supported")
        label = _class_id(values[0], names, where)
        try:
            cx, cy, w, h = (float(v) for v in values[1:])
        except ValueError:
            raise UserError(f"{where}: {' '.join(values[1:])[:60]!r} are not four numbers; fix the line") from None
        boxes.append(RawBox(label, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, where, normalised=True))
    return tuple(boxes)
