"""The task seam (classification today, detection next): the bundle says its task, a result
carries classes and/or detections, and what reads a result renders what it holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import MANIFEST, BundleError, load_bundle
from edgepipe.device.model.classifier import ModelError, open_classifier
from edgepipe.device.model.postprocess import Detection, Prediction
from edgepipe.device.model.preprocess import load_image
from edgepipe.device.model.tasks import CLASSIFY, DETECT, TASKS
from edgepipe.device.run.annotate import DETECTION_COLOUR
from edgepipe.device.run.results import FrameResult


def _bundle_with_task(tiny_bundle: Path, tmp_path: Path, task: str | None) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    manifest = json.loads((root / MANIFEST).read_text())
    if task is None:
        del manifest["task"]
    else:
        manifest["task"] = task
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def _result(**fields) -> FrameResult:
    return FrameResult(7, 1700000000.25, [Prediction(2, "cat", 0.75)], {"inference": 3.0}, 12.5, **fields)


def test_convert_writes_the_task_and_the_classifier_runs_it(tiny_bundle, shape_frame):
    assert json.loads((tiny_bundle / MANIFEST).read_text())["task"] == "classify"
    assert load_bundle(tiny_bundle).task == "classify"
    classifier = open_classifier(tiny_bundle, threads=1)
    assert classifier.task is CLASSIFY
    assert len(classifier.classify(shape_frame, top_k=3)) == 3


def test_a_bundle_written_before_the_task_was_recorded_is_a_classifier(tiny_bundle, tmp_path):
    assert load_bundle(_bundle_with_task(tiny_bundle, tmp_path, None)).task == "classify"


def test_a_bundle_with_an_unknown_task_is_refused_in_one_line(tiny_bundle, tmp_path, capsys, shape_image_path):
    root = _bundle_with_task(tiny_bundle, tmp_path, "segment")
    with pytest.raises(BundleError, match=r"`task` is 'segment', not one of classify, detect"):
        load_bundle(root)
    assert main(["classify", str(root), str(shape_image_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "`task` is 'segment'" in err, err


def test_a_detection_bundle_holding_a_classifier_is_refused_in_one_line(tiny_bundle, tmp_path):
    root = _bundle_with_task(tiny_bundle, tmp_path, "detect")
    assert load_bundle(root).task == "detect"
    with pytest.raises(ModelError, match="is not a detector ending in TFLite_Detection_PostProcess: it has 1 inputs "
                                         "and 1 outputs, expected 1 and 4") as refused:
        open_classifier(root, threads=1)
    assert "\n" not in str(refused.value)


def test_detection_keeps_the_ecosystems_output_order():
    assert TASKS == {"classify": CLASSIFY, "detect": DETECT}
    assert DETECT.outputs == ("boxes", "classes", "scores", "count")


def test_a_result_with_detections_serialises_them_and_one_without_does_not():
    plain = _result()
    assert "detections" not in plain.to_json()
    detected = _result(detections=[Detection(2, "cat", 0.9123456789, (10, 20, 50, 60), track_id=4),
                                   Detection(0, "dog", 0.5, (0, 0, 8, 8))])
    data = json.loads(json.dumps(detected.to_json()))
    assert data["detections"] == [
        {"index": 2, "label": "cat", "score": 0.912346, "box": [10, 20, 50, 60], "track_id": 4},
        {"index": 0, "label": "dog", "score": 0.5, "box": [0, 0, 8, 8]},
    ]
    assert data["top"] == plain.to_json()["top"]
    assert detected.human_line().count("objects: cat 0.912, dog 0.500") == 1


def test_the_annotated_frame_boxes_each_detection(shape_frame):
    image = cv2.resize(shape_frame, (320, 240))  # room for the box away from the headline in the corner
    box = (200, 120, 300, 220)
    annotated = _result(image=image, detections=[Detection(2, "cat", 0.9, box)]).annotated
    x0, y0, x1, y1 = box
    left_edge = annotated[y0 + 2:y1 - 20, x0]
    assert (left_edge == DETECTION_COLOUR).all(axis=1).all()
    assert not (image[y0 + 2:y1 - 20, x0] == DETECTION_COLOUR).all(axis=1).all()


@pytest.fixture(scope="module")
def shape_image_path(shapes_dataset: Path) -> Path:
    return sorted(shapes_dataset.rglob("*.jpg"))[0]


@pytest.fixture(scope="module")
def shape_frame(shape_image_path: Path) -> np.ndarray:
    return load_image(shape_image_path)
