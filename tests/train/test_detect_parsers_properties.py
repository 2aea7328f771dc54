"""Property tests of the detection parsers (outside input): whatever the
bytes, a parser gives a well-formed result or one UserError line, never
another exception; and a box that passes `checked_box` lies inside its image."""

from __future__ import annotations

import json
import math
from typing import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgepipe.core.errors import UserError
from edgepipe.train.detect.boxes import ImageRecord, RawBox, checked_box
from edgepipe.train.detect.coco import parse_coco
from edgepipe.train.detect.tfcsv import parse_tf_csv
from edgepipe.train.detect.voc import parse_voc
from edgepipe.train.detect.yolo import parse_class_list, parse_data_yaml, parse_yolo_labels

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VOC = b"""<annotation>
  <filename>a.jpg</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
</annotation>
"""
CSV = "filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,64,48,cat,1,2,30,40\n"
COCO = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 2, 29, 38]}],
        "categories": [{"id": 3, "name": "cat"}]}


def _valid_boxes(boxes: tuple[RawBox, ...]) -> None:
    for box in boxes:
        assert isinstance(box, RawBox) and box.label.strip() == box.label and box.label
        assert all(isinstance(v, float) for v in (box.x0, box.y0, box.x1, box.y1))
        assert box.where


def _record_or_user_error(parse: Callable[[], object]) -> None:
    try:
        result = parse()
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    records = result if isinstance(result, list) else [result]
    for record in records:
        assert isinstance(record, ImageRecord)
        assert record.size is None or all(isinstance(v, int) and v > 0 for v in record.size)
        _valid_boxes(record.boxes)


def _mutated(data: bytes, draw: st.DrawFn) -> bytes:
    """`data` with a few bytes replaced, deleted or inserted."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        kind = draw(st.sampled_from(["replace", "delete", "insert"]))
        byte = draw(st.integers(0, 255))
        if kind == "replace" and out:
            out[at] = byte
        elif kind == "delete" and out:
            del out[at]
        else:
            out.insert(at, byte)
    return bytes(out)


mutations = st.composite(lambda draw, data: _mutated(data, draw))


@SETTINGS
@given(st.one_of(st.binary(max_size=300), mutations(VOC)))
def test_voc_parser(data):
    _record_or_user_error(lambda: parse_voc(data, "a.xml"))


@SETTINGS
@given(st.one_of(st.text(max_size=300), mutations(CSV.encode()).map(lambda b: b.decode("utf-8", "replace"))))
def test_tf_csv_parser(text):
    _record_or_user_error(lambda: parse_tf_csv(text, "labels.csv"))


@SETTINGS
@given(st.text(max_size=200), st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4))
def test_yolo_label_parser(text, names):
    try:
        boxes = parse_yolo_labels(text, "a.txt", names)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert all(b.normalised and b.label in names for b in boxes)


@SETTINGS
@given(st.lists(st.tuples(st.integers(-2, 9), *[st.floats(allow_nan=True, allow_infinity=True)] * 4), max_size=5))
def test_yolo_label_parser_on_numbers(rows):
    text = "\n".join(" ".join(str(v) for v in row) for row in rows)
    try:
        boxes = parse_yolo_labels(text, "a.txt", ["a", "b", "c"])
    except UserError:
        return
    assert len(boxes) == len(rows)


@SETTINGS
@given(st.text(max_size=200))
def test_class_list_and_data_yaml_parsers(text):
    for parse in (parse_class_list, parse_data_yaml):
        try:
            result = parse(text, "names")
        except UserError as exc:
            assert "\n" not in str(exc)
            continue
        names = result if isinstance(result, tuple) else result.names
        assert names and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 100) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)


def _coco_variants(draw: st.DrawFn) -> str:
    """COCO JSON with one field somewhere replaced by an arbitrary JSON value."""
    data = json.loads(json.dumps(COCO))
    section = draw(st.sampled_from(["images", "annotations", "categories"]))
    entry = data[section][0]
    key = draw(st.sampled_from(sorted(entry) + ["iscrowd"]))
    entry[key] = draw(json_values)
    return json.dumps(data)


@SETTINGS
@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps), st.composite(_coco_variants)()))
def test_coco_parser(text):
    def parse():
        records, names = parse_coco(text, "coco.json")
        assert all(isinstance(n, str) and n for n in names)
        return records

    _record_or_user_error(parse)


@SETTINGS
@given(st.tuples(*[st.floats(-1e6, 1e6) | st.sampled_from([math.nan, math.inf])] * 4),
       st.integers(1, 5000), st.integers(1, 5000), st.booleans())
def test_a_checked_box_lies_inside_its_image(corners, width, height, normalised):
    box = RawBox("cat", *corners, where="a.xml line 3", normalised=normalised)
    try:
        x0, y0, x1, y1 = checked_box(box, width, height)
    except UserError as exc:
        assert str(exc).startswith("a.xml line 3: box ") and "\n" not in str(exc)
        return
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def _folder_case(root, kind: str, data: bytes) -> None:
    """A 3-image data set (64x48 photos) whose annotation of the first image is `data`."""
    import cv2
    import numpy as np

    from edgepipe.synthetic import voc_xml

    root.mkdir(parents=True, exist_ok=True)
    for i in range(3):
        cv2.imwrite(str(root / f"{i}.jpg"), np.full((48, 64, 3), 60 * i, np.uint8))
    if kind == "voc":
        for i in (1, 2):
            (root / f"{i}.xml").write_bytes(voc_xml(f"{i}.jpg", 64, 48, [("cat", (1, 2, 30, 40))]))
        (root / "0.xml").write_bytes(data)
    elif kind == "yolo":
        (root / "classes.txt").write_text("cat\ndog\n")
        for i in (1, 2):
            (root / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (root / "0.txt").write_bytes(data)
    else:
        (root / "labels.csv").write_bytes(data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["voc", "yolo", "csv"]), seed=st.binary(max_size=200), mutate=st.data())
def test_a_whole_folder_loads_or_is_one_user_error(tmp_path_factory, kind, seed, mutate):
    from edgepipe.train.detect.data import load_detection_data

    valid = {"voc": VOC.replace(b"a.jpg", b"0.jpg"), "yolo": b"1 0.4 0.5 0.3 0.2\n",
             "csv": CSV.replace("a.jpg", "0.jpg").encode() + b"1.jpg,64,48,dog,5,5,20,20\n"}[kind]
    data = mutate.draw(st.sampled_from([seed, valid, _mutated(valid, mutate.draw)]))
    root = tmp_path_factory.mktemp("case")
    _folder_case(root, kind, data)
    try:
        loaded = load_detection_data([root], test_fraction=0.34)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    for image in loaded.train + loaded.test:
        assert image.boxes.dtype == "float32" and image.boxes.shape == (len(image.classes), 4)
        assert (image.boxes[:, :2] >= 0).all() and (image.boxes[:, 2] <= image.width).all()
        assert (image.boxes[:, 3] <= image.height).all() and (image.classes < len(loaded.classes)).all()
