"""`edgepipe evaluate` on a detector, through the device runtime, with numbers known in advance.

The detector (tests/detector_model.py `build_cell_detector`) finds a coloured 32x32 grid cell as an
object of that colour with score = its brightness and a box equal to the cell, so what COCO's
evaluator must say about each photo set is worked out by hand here.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.synthetic import voc_xml

BGR = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0)}
# (objects painted and annotated, objects annotated but not painted (missed), cells painted but not annotated)
PHOTOS = [
    ([("red", 0, 0)], [], []), ([("red", 1, 1)], [], []), ([("red", 2, 2)], [], []), ([("red", 0, 2)], [], []),
    ([("green", 1, 0)], [], [("green", 2, 2, 153)]),  # a false green at 153/255 = score 0.6
    ([("green", 0, 1)], [], []),
    ([], [("blue", 1, 2)], []), ([], [("blue", 2, 0)], []),
]
# red: 4 of 4 found (AP 1); green: 2 of 2 found, the false one scores below both (AP 1); blue: none (AP 0).
# At the device's threshold 0.5: 6 true detections, 1 false, 8 true boxes.
EXPECTED = {"map50": round(2 / 3, 6), "map50_95": round(2 / 3, 6), "precision": round(6 / 7, 6), "recall": 0.75,
            "per_class": {"red": {"ap50": 1.0, "ap50_95": 1.0, "boxes": 4},
                          "green": {"ap50": 1.0, "ap50_95": 1.0, "boxes": 2},
                          "blue": {"ap50": 0.0, "ap50_95": 0.0, "boxes": 2}},
            "n_images": 8, "n_predictions": 7, "score_threshold": 0.5}


def _write_photos(folder: Path, photos: list, start: int = 0) -> None:
    from detector_model import cell_box

    folder.mkdir(parents=True, exist_ok=True)
    for k, (found, missed, false) in enumerate(photos, start):
        image = np.zeros((96, 96, 3), np.uint8)
        for label, row, col, *level in found + false:
            x0, y0, x1, y1 = cell_box(row, col)
            image[y0:y1, x0:x1] = np.array(BGR[label]) * (level[0] if level else 255) // 255
        name = f"{k:03d}.png"
        cv2.imwrite(str(folder / name), image)
        objects = [(label, cell_box(row, col)) for label, row, col in found + missed]
        (folder / f"{k:03d}.xml").write_bytes(voc_xml(name, 96, 96, objects))


@pytest.fixture(scope="module")
def cell_detector(tmp_path_factory) -> Path:
    from detector_model import build_cell_detector

    path = tmp_path_factory.mktemp("cell") / "cells.tflite"
    path.write_bytes(build_cell_detector())
    return path


@pytest.fixture(scope="module")
def cell_bundle(tmp_path_factory, cell_detector: Path) -> Path:
    """A detection bundle around the cell detector, trained (it says) with a 25% test share and seed 1."""
    import shutil

    from detector_model import CELL_LABELS

    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.labels import format_labels
    from edgepipe.device.model.preprocess import InputSpec

    root = tmp_path_factory.mktemp("bundles") / "cells"
    root.mkdir()
    shutil.copy(cell_detector, root / CPU_MODEL)
    (root / LABELS).write_text(format_labels(CELL_LABELS))
    manifest = build_manifest(root, labels=CELL_LABELS, input_spec=InputSpec(96, 96), models={"cpu": CPU_MODEL},
                              task="detect", training={"task": "detect", "test_fraction": 0.25, "seed": 1},
                              output={"task": "detect", "postprocess": "TFLite_Detection_PostProcess"})
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="module")
def cell_photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cell-photos")
    _write_photos(root, PHOTOS)
    return root


def _evaluate(capsys, *argv) -> dict:
    assert main(["evaluate", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_detection_bundle_is_scored_by_coco_through_the_device(cell_bundle, cell_photos, capsys):
    result = _evaluate(capsys, cell_bundle, cell_photos)
    assert {k: result[k] for k in EXPECTED} == EXPECTED
    assert result["task"] == "detect" and result["engine"] == "tflite:ai_edge_litert:cpu"
    assert result["photos"] == "every annotated photo" and result["skipped"] == []
    assert result["evaluator"].startswith("pycocotools ")


def test_human_report_and_out_files_keep_the_force_rule(cell_bundle, cell_photos, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(cell_bundle), str(cell_photos), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mAP@0.5 0.6667  mAP@[.5:.95] 0.6667  (n=8 images, 8 boxes)" in text
    assert "at score >= 0.5: precision 0.8571  recall 0.7500" in text
    assert ["blue", "0.0000", "0.0000", "2"] in [line.split() for line in text.splitlines()]
    assert json.loads((out / "metrics.json").read_text())["map50"] == EXPECTED["map50"]
    assert (out / "precision_recall.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(cell_bundle), str(cell_photos), "--out", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["evaluate", str(cell_bundle), str(cell_photos), "--out", str(out), "--force"]) == 0


def test_a_bare_detector_tflite_needs_labels(cell_detector, cell_bundle, cell_photos, capsys):
    assert main(["evaluate", str(cell_detector), str(cell_photos)]) == 1
    assert capsys.readouterr().err == f"edgepipe evaluate: error: {cell_detector} has no labels; pass --labels FILE\n"
    result = _evaluate(capsys, cell_detector, cell_photos, "--labels", cell_bundle / "labels.txt")
    assert {k: result[k] for k in EXPECTED} == EXPECTED


def test_split_test_takes_the_data_sets_fixed_split(cell_bundle, tmp_path, capsys):
    _write_photos(tmp_path / "data" / "train", PHOTOS[1:6])
    _write_photos(tmp_path / "data" / "test", [PHOTOS[0], PHOTOS[6]], start=10)  # a red found, a blue missed
    result = _evaluate(capsys, cell_bundle, tmp_path / "data", "--split", "test")
    assert result["photos"] == "the test part of the data set's fixed split"
    assert result["n_images"] == 2 and result["per_class"]["green"] == {"ap50": None, "ap50_95": None, "boxes": 0}
    assert result["map50"] == 0.5  # red 1, blue 0; green has no boxes here and is not averaged
    assert _evaluate(capsys, cell_bundle, tmp_path / "data", "--split", "all")["n_images"] == 7


def test_split_test_without_a_fixed_split_holds_out_what_train_held_out(cell_bundle, cell_photos, capsys):
    """The bundle says it was trained with a 25% test share and seed 1: the same photos are evaluated."""
    from edgepipe.train.detect.data import load_detection_data

    held_out = load_detection_data([cell_photos], test_fraction=0.25, seed=1).test
    result = _evaluate(capsys, cell_bundle, cell_photos, "--split", "test")
    assert result["photos"] == "the test part train holds out: a seeded 25% (seed 1)"
    assert result["n_images"] == len(held_out) == 2
    assert sum(c["boxes"] for c in result["per_class"].values()) == sum(len(i.boxes) for i in held_out)


def test_a_classification_folder_given_to_a_detector_is_one_line(cell_bundle, shapes_dataset, capsys):
    assert main(["evaluate", str(cell_bundle), str(shapes_dataset)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "no boxes, only sub-folders (circle, cross, square, triangle): a classifier's photos" in err


def test_photos_with_boxes_given_to_a_classifier_is_one_line(float_bundle, cell_photos, capsys):
    assert main(["evaluate", str(float_bundle), str(cell_photos)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds photos with boxes (Pascal VOC), for a detector" in err


def test_a_class_the_detector_does_not_have_is_one_line(cell_bundle, tmp_path, capsys):
    from detector_model import cell_box

    _write_photos(tmp_path / "data", PHOTOS[:2])
    (tmp_path / "data" / "000.xml").write_bytes(voc_xml("000.png", 96, 96, [("raccoon", cell_box(0, 0))]))
    assert main(["evaluate", str(cell_bundle), str(tmp_path / "data")]) == 1
    assert "boxes of 'raccoon', which" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (("--split", "val"), "--split val is a part of a run's split: pass it without DATA_DIR"),
    (("--unknown-dir", "."), None),
])
def test_detector_flags_that_do_not_fit(cell_bundle, cell_photos, cli, extra, message):
    code, _, err = cli("evaluate", cell_bundle, cell_photos, *extra)
    if message:
        assert code == 2 and message in err
    else:
        assert code == 1 and "--unknown-dir measures a classifier's \"unknown\"" in err


def test_a_part_of_a_split_without_data_needs_the_run(cell_bundle, cli):
    code, _, err = cli("evaluate", cell_bundle, "--split", "test")
    assert code == 1 and "pass --run RUN" in err
