"""COCO JSON (what CVAT, Label Studio and Roboflow export): `images` with
`id`, `file_name`, `width`, `height`; `annotations` with `image_id`,
`category_id` and `bbox` [x, y, width, height] in pixels; `categories` with
`id` and `name`. Crowd regions (`iscrowd: 1`) are not objects to find and are
left out. Images listed without annotations are images without boxes."""

from __future__ import annotations

import json
from typing import Any

from edgepipe.core.errors import UserError

from .boxes import ImageRecord, RawBox

REQUIRED_KEYS = ("images", "annotations", "categories")


def looks_like_coco(data: Any) -> bool:
    return isinstance(data, dict) and all(isinstance(data.get(k), list) for k in REQUIRED_KEYS)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _entry(entry: Any, keys: dict[str, Any], where: str) -> dict[str, Any]:
    """`entry` when it is an object whose `keys` pass their checks; else a UserError saying which key is wrong."""
    if not isinstance(entry, dict):
        raise UserError(f"{where} is not a JSON object; fix the file")
    for key, check in keys.items():
        if not check(entry.get(key)):
            raise UserError(f"{where}: `{key}` is {json.dumps(entry.get(key))[:40]}, not what COCO needs there; "
                            "fix the file")
    return entry


def _categories(data: dict[str, Any], source: str) -> dict[int, str]:
    names: dict[int, str] = {}
    for i, entry in enumerate(data["categories"]):
        entry = _entry(entry, {"id": _whole, "name": lambda v: isinstance(v, str) and v.strip()},
                       f"{source}, categories[{i}]")
        if entry["id"] in names:
            raise UserError(f"{source}, categories[{i}]: category id {entry['id']} is used twice; fix the file")
        names[entry["id"]] = entry["name"].strip()
    if len(set(names.values())) != len(names):
        raise UserError(f"{source}: two categories share a name; merge them or rename one")
    return names


def parse_coco(text: str, source: str) -> tuple[list[ImageRecord], tuple[str, ...]]:
    """Every image of one COCO file with its boxes, in the file's order, and every category's name."""
    if not text.strip():
        raise UserError(f"{source} is empty; export the annotations again")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{source} line {exc.lineno}: not valid JSON ({exc.msg}); export the annotations again") from None
    except (ValueError, RecursionError):  # a number too long to convert, or nesting too deep
        raise UserError(f"{source}: not JSON that annotations could be; export the annotations again") from None
    if not looks_like_coco(data):
        raise UserError(f"{source} is not COCO detection JSON: it needs the lists {', '.join(REQUIRED_KEYS)}")
    categories = _categories(data, source)
    images: dict[int, tuple[str, tuple[int, int], list[RawBox]]] = {}
    for i, entry in enumerate(data["images"]):
        entry = _entry(entry, {"id": _whole, "file_name": lambda v: isinstance(v, str) and v.strip(),
                               "width": lambda v: _whole(v) and v > 0, "height": lambda v: _whole(v) and v > 0},
                       f"{source}, images[{i}]")
        if entry["id"] in images:
            raise UserError(f"{source}, images[{i}]: image id {entry['id']} is used twice; fix the file")
        images[entry["id"]] = (entry["file_name"].strip(), (entry["width"], entry["height"]), [])
    for i, entry in enumerate(data["annotations"]):
        where = f"{source}, annotations[{i}]"
        entry = _entry(entry, {"image_id": _whole, "category_id": _whole,
                               "bbox": lambda v: isinstance(v, list) and len(v) == 4 and all(map(_number, v))}, where)
        if entry.get("iscrowd"):
            continue
        if entry["image_id"] not in images:
            raise UserError(f"{where}: image_id {entry['image_id']} is not in `images`; fix the file")
        if entry["category_id"] not in categories:
            raise UserError(f"{where}: category_id {entry['category_id']} is unknown (not in `categories`); "
                            "fix the file or add the category")
        x, y, w, h = (float(v) for v in entry["bbox"])
        images[entry["image_id"]][2].append(RawBox(categories[entry["category_id"]], x, y, x + w, y + h, where))
    records = [ImageRecord(name, source, tuple(boxes), size) for name, size, boxes in images.values()]
    return records, tuple(categories.values())
