"""A real trained detector on the device: opened as a bundle and as a bare .tflite (the outputs
found from its postprocess op), `classify` and `run` with objects, counts, tracks, zones and
boxes drawn; bad input is one line."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edgepipe.device.model.bundle import LABELS, MANIFEST, build_manifest, load_bundle
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.tasks import DETECT
from edgepipe.device.run.annotate import DETECTION_COLOUR
from edgepipe.device.model.postprocess import iou_matrix

from raccoon_data import RACCOON, raccoon_truth


def _best_iou(found: list[list[int]], truth: list[tuple[int, int, int, int]]) -> float:
    return float(iou_matrix(np.array(found, float), np.array(truth, float)).max()) if found and truth else 0.0


def test_a_detection_bundle_and_its_bare_model_find_the_raccoon(detect_bundle, raccoon_detector):
    name, truth = sorted(raccoon_truth().items())[0]
    image = cv2.imread(str(RACCOON / "images" / name))
    from_bundle = open_classifier(detect_bundle, threads=1, accelerator="cpu")
    bare = open_classifier(raccoon_detector["model"], labels=raccoon_detector["labels"], threads=1, accelerator="cpu")
    for detector in (from_bundle, bare):
        assert detector.task is DETECT and detector.layout.found_by == "the TFLite_Detection_PostProcess op"
        found = detector.detect(image)
        assert found and found[0].label == "raccoon" and found[0].score >= 0.5
        assert _best_iou([list(d.box) for d in found], truth) >= 0.7
    assert from_bundle.detect(image) == bare.detect(image)


def test_a_bundle_whose_labels_disagree_with_its_detector_is_one_line(detect_bundle, tmp_path):
    root = shutil.copytree(detect_bundle, tmp_path / "bundle")
    spec = load_bundle(root).input_spec
    (root / LABELS).write_text("raccoon\ncat\n")
    manifest = build_manifest(root, labels=["raccoon", "cat"], input_spec=spec, output={},
                              models={"cpu": "model.tflite"}, task="detect")
    (root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(Exception, match=r"detects 1 classes but its bundle's labels name 2; re-create") as refused:
        open_classifier(root, threads=1, accelerator="cpu")
    assert "\n" not in str(refused.value)


def test_classify_json_gives_objects_and_counts(cli, detect_bundle):
    names = sorted(raccoon_truth())[:3]
    code, out, err = cli("classify", str(detect_bundle), *(str(RACCOON / "images" / n) for n in names),
                         "--json", "--accelerator", "cpu", "--threshold", "0.4")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == names
    for row, name in zip(rows, names):
        assert row["counts"] == {"raccoon": len(row["detections"])} and row["detections"]
        assert all(d["score"] >= 0.4 and d["label"] == "raccoon" for d in row["detections"])
        assert _best_iou([d["box"] for d in row["detections"]], raccoon_truth()[name]) >= 0.5
        assert set(row["latency_ms"]) == {"preprocess", "inference", "postprocess"}
    assert "objects scoring below 0.4 are not reported" in err


def test_class_filter_and_unknown_flags_are_one_line(cli, detect_bundle):
    image = str(RACCOON / "images" / sorted(raccoon_truth())[0])
    code, _, err = cli("classify", str(detect_bundle), image, "--classes", "dog", "--accelerator", "cpu")
    assert code == 1 and err.strip().splitlines()[-1].endswith("dog: not a label of " + str(detect_bundle / "model.tflite")
                                                               + "; its labels are raccoon")
    code, _, err = cli("classify", str(detect_bundle), image, "--unknown", "0.5", "--accelerator", "cpu")
    assert code == 2 and "--unknown P is for classifiers; a detector's score floor is --threshold P" in err


def test_run_json_tracks_objects_counts_zones_and_keeps_frame_order(cli, detect_bundle, raccoon_video, tmp_path):
    video, truth = raccoon_video
    record = tmp_path / "boxes.mp4"
    code, out, err = cli("run", str(detect_bundle), "--source", str(video), "--json", "--workers", "2",
                          "--accelerator", "cpu", "--roi", "left=0,0,0.5,1", "--roi", "right=0.5,0,0.5,1",
                          "--record", str(record))
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(len(truth)))
    assert all("top" not in r and "label" not in r for r in rows)  # a detector's answer is its objects
    for row, boxes in zip(rows, truth):
        assert _best_iou([d["box"] for d in row["detections"]], boxes) >= 0.5
        assert set(row["zones"]) == {"left", "right"}
        in_zones = sum(sum(c.values()) for c in row["zones"].values())
        assert in_zones == sum(row["counts"].values())  # every object's centre is in one half
    # Each photo is held 4 frames: its raccoon gets one id, counted from its second frame (min_hits 2).
    appeared = [e for r in rows for e in r.get("events", []) if e["event"] == "appeared"]
    assert appeared and len({e["id"] for e in appeared}) == len(appeared)
    held = rows[1]["detections"][0]
    assert held["track_id"] == rows[2]["detections"][0]["track_id"] == rows[3]["detections"][0]["track_id"]
    assert rows[3]["counts"] == {"raccoon": 1}
    # The recording draws each object's box.
    capture = cv2.VideoCapture(str(record))
    ok, frame = capture.read()
    for _ in range(2):
        ok, frame = capture.read()
    capture.release()
    x0, y0, x1, y1 = rows[2]["detections"][0]["box"]
    edge = frame[y0 + 30:y1 - 30, x0].astype(int)
    assert ok and (np.abs(edge - DETECTION_COLOUR).sum(axis=1) < 90).mean() > 0.8


def test_zone_names_that_clash_are_one_usage_line(cli, detect_bundle, raccoon_video):
    code, _, err = cli("run", str(detect_bundle), "--source", str(raccoon_video[0]), "--roi", "Gate=0,0,0.5,1",
                        "--roi", "gate=0.5,0,0.5,1")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("--roi names must differ: Gate and gate are one name (topics and Home Assistant ids ignore case and "
            "- vs _)") in err
