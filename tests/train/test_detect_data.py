"""Reading detection data: every format to the same boxes, splits, merging, notes,
and one clear line naming the file for each kind of bad data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.train.detect.data import load_detection_data

from detect_formats import to_coco, to_tf_csv, to_yolo, voc_records


def _by_name(data) -> dict[str, tuple[np.ndarray, list[str]]]:
    return {i.path.name: (i.boxes, [data.classes[c] for c in i.classes]) for i in data.train + data.test}


def test_raccoon_uses_its_fixed_csv_split(raccoon):
    data = load_detection_data([raccoon])
    assert data.classes == ("raccoon",)
    assert (len(data.train), len(data.test)) == (160, 40)
    assert (sum(len(i.boxes) for i in data.train), sum(len(i.boxes) for i in data.test)) == (173, 44)
    first = next(i for i in data.train if i.path.name == "raccoon-1.jpg")
    assert (first.width, first.height) == (650, 417)
    np.testing.assert_array_equal(first.boxes, [[81, 88, 522, 408]])
    assert first.boxes.dtype == np.float32 and first.classes.dtype == np.int32
    assert any("fixed by test_labels.csv, train_labels.csv" in note for note in data.notes)


def test_raccoon_voc_alone_reads_every_box_and_splits_by_seed(raccoon, tmp_path):
    (tmp_path / "voc").mkdir()
    for folder in ("images", "annotations"):
        (tmp_path / "voc" / folder).symlink_to(raccoon / folder)
    data = load_detection_data([tmp_path / "voc"], test_fraction=0.2, seed=0)
    assert (len(data.train), len(data.test)) == (160, 40)
    assert sum(len(i.boxes) for i in data.train + data.test) == 217
    assert data.notes[0].endswith("Pascal VOC, 200 annotated images")


def test_every_format_gives_the_same_boxes(shapes_detection, tmp_path):
    voc = load_detection_data([shapes_detection])
    assert voc.classes == ("circle", "square", "triangle")
    expected = _by_name(voc)
    unsorted = ["triangle", "circle", "square"]
    test_names = {i.path.name for i in voc.test}
    for root in (to_tf_csv(shapes_detection, tmp_path / "csv", test_names),
                 to_yolo(shapes_detection, tmp_path / "yolo", unsorted),
                 to_coco(shapes_detection, tmp_path / "coco", unsorted)):
        data = load_detection_data([root])
        assert data.classes == voc.classes, root
        got = _by_name(data)
        assert got.keys() == expected.keys(), root
        for name, (boxes, labels) in expected.items():
            assert got[name][1] == labels, (root, name)
            np.testing.assert_allclose(got[name][0], boxes, atol=0.01, err_msg=f"{root} {name}")
    csv_split = load_detection_data([tmp_path / "csv"], seed=99)
    assert {i.path.name for i in csv_split.test} == test_names  # fixed, whatever the seed


def test_yolo_data_yaml_names_and_parts(shapes_detection, tmp_path):
    root = tmp_path / "ultra"
    for part, names in (("train", slice(0, 30)), ("val", slice(30, 40))):
        part_root = to_yolo(shapes_detection, tmp_path / part, ["circle", "square", "triangle"])
        for sub in ("images", "labels"):
            (root / sub / part).mkdir(parents=True)
            for path in sorted((part_root / sub).iterdir())[names]:
                shutil.move(path, root / sub / part / path.name)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    "names:\n  0: circle\n  1: square\n  2: triangle\n")
    data = load_detection_data([root])
    assert (len(data.train), len(data.test)) == (30, 10)
    assert all(i.path.parent.name == "val" for i in data.test)
    assert any("fixed by data.yaml (its val images are the test part)" in note for note in data.notes)
    (root / "data.yaml").write_text("train: [images/train, images/val]\nnames: [circle, square, triangle]\n")
    seeded = load_detection_data([root], test_fraction=0.25)
    assert (len(seeded.train), len(seeded.test)) == (30, 10)
    assert {i.path.parent.name for i in seeded.test} == {"train", "val"}


def test_seeded_split_is_repeatable_disjoint_and_keeps_classes_in_both_parts(shapes_detection):
    a = load_detection_data([shapes_detection], test_fraction=0.25, seed=3)
    b = load_detection_data([shapes_detection], test_fraction=0.25, seed=3)
    c = load_detection_data([shapes_detection], test_fraction=0.25, seed=4)
    names = lambda part: [i.path.name for i in part]  # noqa: E731
    assert names(a.test) == names(b.test) and names(a.test) != names(c.test)
    assert len(a.test) == 10 and not set(names(a.train)) & set(names(a.test))
    for part in (a.train, a.test):
        assert set(np.concatenate([i.classes for i in part]).tolist()) == {0, 1, 2}
    for fraction in (0.05, 0.1, 0.33, 0.5):  # the parts add up to round(images x fraction), however it groups
        assert len(load_detection_data([shapes_detection], test_fraction=fraction).test) == round(40 * fraction)


def test_folders_merge_by_class_name(shapes_detection, tmp_path):
    from edgepipe.synthetic import write_detection_dataset

    other = tmp_path / "other"
    write_detection_dataset(other, images=12, seed=9, classes=("cross", "circle"))
    data = load_detection_data([shapes_detection, other])
    assert data.classes == ("circle", "cross", "square", "triangle")
    assert len(data.train) + len(data.test) == 52
    assert not any("differ only in case" in note for note in data.notes)
    crosses = [i for i in data.train + data.test if i.path.parent == other and 1 in i.classes]
    assert crosses and all(set(i.classes.tolist()) <= {0, 1} for i in data.train + data.test if i.path.parent == other)
    with pytest.raises(UserError, match="given twice"):
        load_detection_data([shapes_detection, shapes_detection])
    for xml in other.glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>circle<", "<name>Circle<"))
    assert any("classes 'Circle' and 'circle' differ only in case" in note
               for note in load_detection_data([shapes_detection, other]).notes)


def _voc_copy(src: Path, dst: Path, count: int = 12) -> Path:
    dst.mkdir()
    for image, _ in voc_records(src)[:count]:
        shutil.copy(image, dst / image.name)
        shutil.copy(image.with_suffix(".xml"), dst / image.with_suffix(".xml").name)
    return dst


def test_images_without_boxes_unreadable_images_and_rare_classes_are_noted(shapes_detection, tmp_path):
    root = _voc_copy(shapes_detection, tmp_path / "d")
    xml = (root / "0000.xml").read_text()
    (root / "0000.xml").write_text(xml[:xml.index("<object>")] + "</annotation>\n")
    (root / "0001.jpg").write_bytes(b"\xff\xd8 cut short")
    (root / "extra.jpg").write_bytes((root / "0002.jpg").read_bytes())
    data = load_detection_data([root], seed=1)
    notes = "\n".join(data.notes)
    assert "1 images have no boxes (kept" in notes and "0000.jpg" in notes
    assert "1 images cannot be read and are left out: 0001.jpg" in notes
    assert "1 images have no annotation and are left out: extra.jpg" in notes
    assert "fewer than 10 training boxes" in notes
    assert len(data.train) + len(data.test) == 11
    empty = next(i for i in data.train + data.test if i.path.name == "0000.jpg")
    assert empty.boxes.shape == (0, 4) and empty.classes.shape == (0,)


def _edit(root: Path, name: str, old: str, new: str) -> None:
    path = root / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


BAD_VOC = {
    "box outside the image": (lambda r: _edit(r, "0003.xml", "<xmax>", "<xmax>9"),
                              r"0003\.xml line \d+: box .* outside the 256x256 image"),
    "zero-area box": (lambda r: _edit(r, "0003.xml", "<ymax>", "<ymax>-"), r"0003\.xml line \d+: box .* has no area"),
    "corrupt xml": (lambda r: (r / "0004.xml").write_text("<annotation><object>\n<name>x</nme>"),
                    r"0004\.xml line 2: not valid XML \(mismatched tag\)"),
    "empty xml": (lambda r: (r / "0005.xml").write_bytes(b""), r"0005\.xml is empty"),
    "not a number": (lambda r: _edit(r, "0006.xml", "<ymin>", "<ymin>ten"), r"0006\.xml line \d+: <ymin> is 'ten"),
    "unknown class in the class list": (lambda r: (r / "classes.txt").write_text("circle\nsquare\n"),
                                        r"\d{4}\.xml line \d+: class 'triangle' is not in the data set's class list"),
    "size disagrees": (lambda r: _edit(r, "0007.xml", "<width>256", "<width>300"),
                       r"0007\.xml: says 0007\.jpg is 300x256 but the image is 256x256"),
    "entity bomb": (lambda r: (r / "0008.xml").write_text('<!DOCTYPE a [<!ENTITY x "xx">]><annotation/>'),
                    r"0008\.xml line 1: declares XML entities"),
}


@pytest.mark.parametrize("case", BAD_VOC)
def test_bad_voc_is_one_line_naming_the_file(shapes_detection, tmp_path, case):
    root = _voc_copy(shapes_detection, tmp_path / "d")
    spoil, message = BAD_VOC[case]
    spoil(root)
    with pytest.raises(UserError, match=message) as error:
        load_detection_data([root])
    assert "\n" not in str(error.value) and str(root) in str(error.value)


def test_bad_yolo_csv_and_coco_name_the_file_and_line(shapes_detection, tmp_path):
    classes = ["circle", "square", "triangle"]
    yolo = to_yolo(shapes_detection, tmp_path / "yolo", classes)
    label = sorted((yolo / "labels").iterdir())[2]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    lines = len(label.read_text().splitlines())
    with pytest.raises(UserError, match=rf"{label.name} line {lines}: class id 7 is unknown"):
        load_detection_data([yolo])
    label.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(UserError, match=rf"{label.name} line 1: 4 values; a YOLO box is 5"):
        load_detection_data([yolo])
    (yolo / "classes.txt").write_text("\n\n")
    with pytest.raises(UserError, match=r"classes\.txt is empty"):
        load_detection_data([yolo])

    tf_csv = to_tf_csv(shapes_detection, tmp_path / "csv", {"0000.jpg"})
    with open(tf_csv / "train_labels.csv", "a") as f:
        f.write("0001.jpg,256,256,circle,10,20,300,40\n")
    with pytest.raises(UserError, match=r"train_labels\.csv line \d+: box \(10, 20, 300, 40\) .* reaches x=300"):
        load_detection_data([tf_csv])
    (tf_csv / "train_labels.csv").write_text("")
    with pytest.raises(UserError, match=r"train_labels\.csv is empty"):
        load_detection_data([tf_csv])

    coco = to_coco(shapes_detection, tmp_path / "coco", classes)
    path = coco / "annotations" / "instances.json"
    data = json.loads(path.read_text())
    data["annotations"][5]["category_id"] = 42
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"instances\.json, annotations\[5\]: category_id 42 is unknown"):
        load_detection_data([coco])
    path.write_text(json.dumps(data)[:-10])
    with pytest.raises(UserError, match=r"instances\.json line 1: not valid JSON"):
        load_detection_data([coco])


def test_no_annotations_and_bad_arguments_are_one_line(tmp_path, shapes_detection):
    (tmp_path / "photos").mkdir()
    shutil.copy(next(shapes_detection.glob("*.jpg")), tmp_path / "photos")
    with pytest.raises(UserError, match="has no annotations edgepipe reads"):
        load_detection_data([tmp_path / "photos"])
    with pytest.raises(UserError, match="does not exist"):
        load_detection_data([tmp_path / "nowhere"])
    with pytest.raises(UserError, match="between 0 and 1"):
        load_detection_data([shapes_detection], test_fraction=1.0)


def test_split_folders_fix_the_split_in_any_format(shapes_detection, tmp_path):
    """Roboflow's layout: train/, valid/, test/, each a data set (here COCO, VOC and COCO)."""
    records = voc_records(shapes_detection)
    parts = {"train": records[:24], "valid": records[24:32], "test": records[32:]}
    for name, chosen in parts.items():
        flat = tmp_path / f"{name}_voc"
        flat.mkdir()
        for image, _ in chosen:
            shutil.copy(image, flat / image.name)
            shutil.copy(image.with_suffix(".xml"), flat / image.with_suffix(".xml").name)
        if name == "valid":
            shutil.copytree(flat, tmp_path / "data" / name)
        else:
            to_coco(flat, tmp_path / "data" / name, ["circle", "square", "triangle"])
    data = load_detection_data([tmp_path / "data"], seed=5)
    assert (len(data.train), len(data.test)) == (32, 8)
    assert {i.path.name for i in data.test} == {image.name for image, _ in parts["test"]}
    assert any("fixed by its folders train, valid, test" in note for note in data.notes)


def test_a_photo_labelled_without_its_exif_turn_is_named(tmp_path, odd_images):
    from edgepipe.synthetic import voc_xml

    root = tmp_path / "d"
    root.mkdir()
    for name in ("exif_rotated.jpg", "upper.JPG"):  # both 60x40 as stored; the first is shown 40x60
        odd_images[name].rename(root / name)
        (root / name).with_suffix(".xml").write_bytes(voc_xml(name, 60, 40, [("cat", (5, 5, 30, 30))]))
    with pytest.raises(UserError, match=r"exif_rotated\.xml: says exif_rotated\.jpg is 60x40 but the image is 40x60; "
                                        "its EXIF orientation turns it"):
        load_detection_data([root])
