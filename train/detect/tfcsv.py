"""The TensorFlow Object Detection API's CSV: one row per box,
`filename,width,height,class,xmin,ymin,xmax,ymax` (the columns in any order,
others ignored). Tutorials write `train_labels.csv` and `test_labels.csv`:
the file name then says which part of a fixed split its images are in."""

from __future__ import annotations

import csv
import io

from edgepipe.core.errors import UserError

from .boxes import ImageRecord, RawBox

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


def has_csv_header(text: str) -> bool:
    """Whether `text` starts with a header holding every column this format needs."""
    first = text.lstrip("\ufeff").splitlines()[:1]
    return bool(first) and set(COLUMNS) <= {c.strip().lower() for c in first[0].split(",")}


def _number(row: dict[str, str], column: str, where: str) -> float:
    value = (row.get(column) or "").strip()
    try:
        return float(value)
    except ValueError:
        raise UserError(f"{where}: {column} is {value[:40]!r}, not a number; fix the row") from None


def _size(row: dict[str, str], where: str) -> tuple[int, int]:
    width, height = _number(row, "width", where), _number(row, "height", where)
    if not (width >= 1 and height >= 1 and width.is_integer() and height.is_integer()):
        raise UserError(f"{where}: image size {width:g}x{height:g} is not a positive whole number of pixels; "
                        "fix the row")
    return int(width), int(height)


def parse_tf_csv(text: str, source: str) -> list[ImageRecord]:
    """The images of one CSV, in the order they first appear, each with all its rows' boxes."""
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise UserError(f"{source} is empty; it needs the header {','.join(COLUMNS)} and one row per box")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip().lower() for c in next(reader)]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise UserError(f"{source} line 1: the header lacks {', '.join(missing)}; "
                            f"a TF Object Detection CSV has {','.join(COLUMNS)}")
        images: dict[str, tuple[tuple[int, int], list[RawBox], str]] = {}
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            where = f"{source} line {reader.line_num}"
            if len(cells) != len(header):
                raise UserError(f"{where}: {len(cells)} values, but the header has {len(header)} columns; fix the row")
            row = dict(zip(header, cells))
            name, label = row["filename"].strip(), row["class"].strip()
            if not name or not label:
                raise UserError(f"{where}: empty {'filename' if not name else 'class'}; fix the row")
            size = _size(row, where)
            x0, y0, x1, y1 = (_number(row, c, where) for c in ("xmin", "ymin", "xmax", "ymax"))
            known = images.setdefault(name, (size, [], where))
            if known[0] != size:
                raise UserError(f"{where}: {name} is {size[0]}x{size[1]} here but {known[0][0]}x{known[0][1]} "
                                f"at {known[2]}; fix the size")
            known[1].append(RawBox(label, x0, y0, x1, y1, where))
    except csv.Error as exc:
        raise UserError(f"{source} line {reader.line_num}: not valid CSV ({exc}); fix the file") from None
    if not images:
        raise UserError(f"{source} has a header but no rows; add one row per box")
    return [ImageRecord(name, source, tuple(boxes), size) for name, (size, boxes, _) in images.items()]
