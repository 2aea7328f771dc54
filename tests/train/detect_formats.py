"""Rewrite a VOC data set in the other formats edgepipe reads, so one set of
boxes can be loaded through every reader and compared."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from edgepipe.train.detect.boxes import ImageRecord
from edgepipe.train.detect.voc import parse_voc


def voc_records(root: Path) -> list[tuple[Path, ImageRecord]]:
    """Each image of a VOC folder (XML beside the image) with its parsed record."""
    return [(xml.with_suffix(".jpg"), parse_voc(xml.read_bytes(), str(xml))) for xml in sorted(root.glob("*.xml"))]


def to_tf_csv(src: Path, dst: Path, test: set[str]) -> Path:
    """train_labels.csv / test_labels.csv (images named in `test` in the second), images beside them."""
    dst.mkdir(parents=True)
    rows = {"train": [], "test": []}
    for image, record in voc_records(src):
        shutil.copy(image, dst / image.name)
        part = "test" if image.name in test else "train"
        rows[part] += [[image.name, *record.size, b.label, b.x0, b.y0, b.x1, b.y1] for b in record.boxes]
    for part, lines in rows.items():
        with open(dst / f"{part}_labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
            writer.writerows(lines)
    return dst


def to_yolo(src: Path, dst: Path, classes: list[str]) -> Path:
    """images/ + labels/ + classes.txt, class ids in `classes` order (not sorted)."""
    (dst / "images").mkdir(parents=True)
    (dst / "labels").mkdir()
    (dst / "classes.txt").write_text("\n".join(classes) + "\n")
    for image, record in voc_records(src):
        shutil.copy(image, dst / "images" / image.name)
        width, height = record.size
        lines = [f"{classes.index(b.label)} {(b.x0 + b.x1) / 2 / width:.6f} {(b.y0 + b.y1) / 2 / height:.6f} "
                 f"{(b.x1 - b.x0) / width:.6f} {(b.y1 - b.y0) / height:.6f}" for b in record.boxes]
        (dst / "labels" / image.with_suffix(".txt").name).write_text("\n".join(lines) + "\n")
    return dst


def to_coco(src: Path, dst: Path, classes: list[str]) -> Path:
    """annotations/instances.json (category ids from 1) + images/."""
    (dst / "images").mkdir(parents=True)
    (dst / "annotations").mkdir()
    data = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
    for image_id, (image, record) in enumerate(voc_records(src), start=1):
        shutil.copy(image, dst / "images" / image.name)
        data["images"].append({"id": image_id, "file_name": image.name, "width": record.size[0],
                               "height": record.size[1]})
        for b in record.boxes:
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id,
                                        "category_id": classes.index(b.label) + 1, "iscrowd": 0,
                                        "bbox": [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0]})
    (dst / "annotations" / "instances.json").write_text(json.dumps(data))
    return dst
