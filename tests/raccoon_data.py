"""The raccoon photos of ../shared (VOC boxes, a fixed split) and the trained raccoon detector beside
../shared, for the detection tests: where they are, their true boxes, and videos made of them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


# A real trained int8 raccoon detector (SSDLite, ends in TFLite_Detection_PostProcess; outputs boxes,
# classes, scores, count by index, as Coral's SSDs), made by edgepipe's own `train --task detect` + `convert`
# on the raccoon photos; a data file like them, so it lives in ../shared (models/raccoon-detector), not here.
SHARED = Path(os.environ.get("EDGEPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DETECT_SAMPLE = Path(os.environ.get("EDGEPIPE_DETECT_SAMPLE", SHARED / "models" / "raccoon-detector"))
RACCOON = SHARED / "datasets" / "raccoon"
VIDEO_SIZE = (640, 480)


def raccoon_truth() -> dict[str, list[tuple[int, int, int, int]]]:
    """The 40 raccoon test photos' boxes (x0, y0, x1, y1 px), from the data set's fixed split."""
    import csv

    split = RACCOON / "test_labels.csv"
    if not split.is_file():
        pytest.skip(f"raccoon photos not present: {split} (../shared beside the checkout)")
    boxes: dict[str, list[tuple[int, int, int, int]]] = {}
    with split.open(newline="") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["filename"], []).append(
                tuple(int(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")))  # type: ignore[arg-type]
    return boxes


def write_raccoon_video(path: Path, photos: int, hold: int) -> list[list[tuple[int, int, int, int]]]:
    """An MP4 of the first `photos` raccoon test photos, each stretched to 640x480 and held for
    `hold` frames; returns each frame's true boxes in the video's pixels."""
    import cv2

    truth = sorted(raccoon_truth().items())[:photos]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, VIDEO_SIZE)
    frames = []
    for name, boxes in truth:
        image = cv2.imread(str(RACCOON / "images" / name))
        sx, sy = VIDEO_SIZE[0] / image.shape[1], VIDEO_SIZE[1] / image.shape[0]
        frame = cv2.resize(image, VIDEO_SIZE, interpolation=cv2.INTER_AREA)
        for _ in range(hold):
            writer.write(frame)
            frames.append([(round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)) for x0, y0, x1, y1 in boxes])
    writer.release()
    return frames


def with_detect_golden(detect_bundle: Path, out: Path, shift: float = 0.0) -> Path:
    """The raccoon detection bundle plus a golden set of 3 test photos with the boxes its CPU model finds
    (as convert records them: the op's ymin, xmin, ymax, xmax), moved by `shift` of the input."""
    import json
    import shutil

    import cv2

    from edgepipe.device.model.bundle import MANIFEST, build_manifest, load_bundle
    from edgepipe.device.model.classifier import open_classifier
    from edgepipe.device.model.detect_postprocess import raw_detections

    root = Path(shutil.copytree(detect_bundle, out / "bundle"))
    detector = open_classifier(root, accelerator="cpu", threads=1)
    (root / "golden").mkdir()
    images = []
    for k, name in enumerate(sorted(raccoon_truth())[:3]):
        shutil.copy(RACCOON / "images" / name, root / "golden" / f"{k:03d}.jpg")
        bgr = cv2.imread(str(root / "golden" / f"{k:03d}.jpg"))
        boxes, classes, scores = raw_detections(detector.invoke(detector.preprocess(bgr)), detector.layout,
                                                detector.labels)
        images.append({"file": f"golden/{k:03d}.jpg", "expected": [
            {"class": int(c), "score": round(float(s), 4), "box": [round(float(v) + shift, 4) for v in box]}
            for c, s, box in zip(classes, scores, boxes)]})
    bundle = load_bundle(root)
    golden = {"images": images, "min_agreement": {"cpu": 1.0, "edgetpu": 0.9},
              "match": {"iou": 0.5, "same_class": True, "min_score": 0.3}}
    manifest = build_manifest(root, labels=bundle.labels, input_spec=bundle.input_spec, output={},
                              models=bundle.models, task="detect", extra={"golden": golden})
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root
