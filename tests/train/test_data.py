"""Scanning, validating and splitting a photo folder; the tf.data pipeline's pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import InputSpec, load_image, to_model_float
from edgepipe.train.data import augmenter, image_dataset, make_split, scan_folder
from edgepipe.train.options import Augmentation


def test_odd_images_load_or_are_skipped_with_a_reason(tmp_path, odd_images):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    for path in odd_images.values():
        path.rename(data / "a" / path.name)
    (data / "a" / "notes.txt").write_text("where these were taken\n")
    (data / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    scanned = scan_folder(data)
    readable = sorted(s.path.name for s in scanned.samples)
    assert readable == sorted(["gray.png", "rgba.png", "deep.png", "upper.JPG", "photo.webp", "photo.bmp",
                               "cmyk.jpg", "exif_rotated.jpg"])
    assert sorted(p.name for p, _ in scanned.skipped) == ["empty.jpg", "notes.txt", "text.png", "truncated.jpg"]
    assert all(reason for _, reason in scanned.skipped)
    assert dict((p.name, r) for p, r in scanned.skipped)["notes.txt"].startswith("not an image file (.txt;")
    for sample in scanned.samples:
        image = load_image(sample.path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # EXIF orientation 6 is applied: the 60x40 (w x h) photo is displayed 40 wide, 60 high.
    assert load_image(data / "a" / "exif_rotated.jpg").shape[:2] == (60, 40)


def test_split_is_stratified_seeded_and_disjoint(shapes_dataset):
    a = make_split(shapes_dataset, 0.25, seed=7)
    b = make_split(shapes_dataset, 0.25, seed=7)
    c = make_split(shapes_dataset, 0.25, seed=8)
    assert a.to_json() == b.to_json()
    assert a.to_json()["val"] != c.to_json()["val"]
    assert a.labels == ["circle", "cross", "square", "triangle"]
    assert np.bincount([s.label for s in a.val]).tolist() == [4, 4, 4, 4]  # 16 per class x 0.25
    assert np.bincount([s.label for s in a.train]).tolist() == [12, 12, 12, 12]
    assert not {s.path for s in a.train} & {s.path for s in a.val}
    rel = a.to_json()["train"][0][0]
    assert not Path(rel).is_absolute() and (shapes_dataset / rel).is_file()


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("empty", "no class sub-folders"),
    ("one_class", "at least 2 class"),
    ("small_class", "fewer than 2 readable images: square (1)"),
    ("split_empty", "leaves its validation part empty"),
])
def test_bad_data_is_one_line_error_before_training(tmp_path, shapes_dataset, capsys, case, message, tiny_args,
                                                    copy_dataset):
    data = tmp_path / "data"
    if case == "empty":
        data.mkdir()
    elif case == "one_class":
        copy_dataset(shapes_dataset, data)
        for name in ("cross", "square", "triangle"):
            for f in (data / name).iterdir():
                f.unlink()
            (data / name).rmdir()
    elif case == "small_class":
        copy_dataset(shapes_dataset, data)
        for f in sorted((data / "square").iterdir())[1:]:
            f.unlink()
    elif case == "split_empty":
        copy_dataset(shapes_dataset, data, per_class=2)
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), *tiny_args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgepipe train: error:") and message in err[-1], err
    assert not out.exists()


def test_val_dir_must_cover_every_class(tmp_path, shapes_dataset, copy_dataset):
    val = copy_dataset(shapes_dataset, tmp_path / "val", per_class=2)
    for f in (val / "cross").iterdir():
        f.unlink()
    with pytest.raises(UserError, match="no readable images of: cross"):
        make_split(shapes_dataset, 0.2, 0, val_dir=val)
    (val / "cross").rmdir()
    (val / "hexagon").mkdir()
    with pytest.raises(UserError, match="classes the training folder lacks: hexagon"):
        make_split(shapes_dataset, 0.2, 0, val_dir=val)


def test_pipeline_pixels_are_the_devices(shapes_dataset):
    split = make_split(shapes_dataset, 0.25, seed=0)
    spec = InputSpec(height=64, width=80)
    images, labels = next(iter(image_dataset(split.val[:5], spec, batch_size=5)))
    for i, sample in enumerate(split.val[:5]):
        np.testing.assert_array_equal(images[i].numpy(), to_model_float(load_image(sample.path), spec))
        assert labels[i] == sample.label


def test_augmentation_changes_images_within_the_pixel_range(shapes_dataset):
    split = make_split(shapes_dataset, 0.25, seed=0)
    spec = InputSpec(height=96, width=96)
    images, _ = next(iter(image_dataset(split.train[:8], spec, batch_size=8)))
    out = augmenter(Augmentation(), spec, seed=1)(images).numpy()
    assert out.shape == images.shape
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert np.abs(out - images.numpy()).mean() > 0.02


def test_several_folders_merge_by_class_name_and_the_split_records_them(shapes_dataset, tmp_path, copy_dataset):
    from edgepipe.train.run_dir import TrainedRun

    photos = copy_dataset(shapes_dataset, tmp_path / "photos", per_class=8)
    field = tmp_path / "field"
    for label, new in (("circle", "circle"), ("cross", "none")):  # a known class and a new one
        (field / new).mkdir(parents=True)
        for image in sorted((shapes_dataset / label).iterdir())[8:12]:
            shutil.copy(image, field / new / f"field_{image.name}")
    split = make_split([photos, field], 0.25, seed=0)
    assert split.labels == ["circle", "cross", "none", "square", "triangle"]
    everything = split.train + split.val
    counts = {label: sum(s.label == i for s in everything) for i, label in enumerate(split.labels)}
    assert counts == {"circle": 12, "cross": 8, "none": 4, "square": 8, "triangle": 8}
    assert all(split.labels[s.label] == ("none" if s.path.parent.name == "none" else s.path.parent.name)
               for s in everything)
    assert split.images_per_folder() == {str(photos.resolve()): 32, str(field.resolve()): 8}
    saved = json.loads(json.dumps(split.to_json()))
    assert saved["data_dirs"] == [str(photos.resolve()), str(field.resolve())]
    run = TrainedRun(tmp_path, tmp_path / "model.keras", split.labels, InputSpec(32, 32), {}, saved)
    assert sorted(p for p, _ in run.split_files("train") + run.split_files("val")) == sorted(s.path for s in everything)
    with pytest.raises(UserError, match="same data folder is given twice"):
        make_split([photos, photos], 0.25, seed=0)
