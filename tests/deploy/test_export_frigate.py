"""`edgepipe export frigate`: the written model read as Frigate reads it (outputs by position,
raw uint8 RGB pixels in), its label map parsed by Frigate's rule, the config snippet; a bundle
Frigate would misread is refused in one line."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edgepipe.device.model.backends import find_backend
from edgepipe.device.model.bundle import MANIFEST, build_manifest, load_bundle
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.preprocess import resize_to_input


def frigate_load_labels(path, prefill=91):
    """frigate/util/builtin.py's load_labels, as it reads a label map."""
    with open(path, encoding="utf-8") as f:
        labels = {index: "unknown" for index in range(prefill)}
        lines = f.readlines()
        if lines[0].split(" ", maxsplit=1)[0].isdigit():
            pairs = [line.split(" ", maxsplit=1) for line in lines]
            labels.update({int(index): label.strip() for index, label in pairs})
        else:
            labels.update({index: line.strip() for index, line in enumerate(lines)})
        return labels


def frigate_detect_raw(model_path, tensor_input, min_score=0.4, max_detections=20):
    """frigate/detectors/detector_utils.tflite_detect_raw: outputs read by position 0..3."""
    interpreter = find_backend().interpreter_class(model_path=str(model_path))
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    interpreter.set_tensor(inputs[0]["index"], tensor_input)
    interpreter.invoke()
    boxes = interpreter.tensor(outputs[0]["index"])()[0]
    class_ids = interpreter.tensor(outputs[1]["index"])()[0]
    scores = interpreter.tensor(outputs[2]["index"])()[0]
    count = int(interpreter.tensor(outputs[3]["index"])()[0])
    detections = np.zeros((max_detections, 6), np.float32)
    for i in range(count):
        if scores[i] < min_score or i == max_detections:
            break
        detections[i] = [class_ids[i], float(scores[i]), boxes[i][0], boxes[i][1], boxes[i][2], boxes[i][3]]
    return detections


def test_frigate_reads_the_exported_model_as_edgepipe_does(cli, detect_bundle, tmp_path):
    from raccoon_data import RACCOON, raccoon_truth

    out = tmp_path / "frigate"
    code, stdout, err = cli("export", "frigate", str(detect_bundle), "--out", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["files"] == ["model.tflite", "labelmap.txt", "frigate.yml"]
    assert frigate_load_labels(out / "labelmap.txt")[0] == "raccoon"
    config = (out / "frigate.yml").read_text()
    for line in ("  path: /config/model_cache/edgepipe/model.tflite", "  labelmap_path: /config/model_cache/edgepipe/"
                 "labelmap.txt", "  width: 320", "  height: 320", "  input_tensor: nhwc", "  input_pixel_format: rgb",
                 "  input_dtype: int", "  model_type: ssd", "    type: cpu", '    - "raccoon"'):
        assert line in config.splitlines(), line

    name = sorted(raccoon_truth())[0]
    bgr = cv2.imread(str(RACCOON / "images" / name))
    # The same 320x320 RGB pixels to both (Frigate scales frames with its own resize; how two resizes
    # differ is not what this checks). Frigate feeds them raw; edgepipe quantizes p/127.5 - 1 with the
    # input's scale 1/127.5 and zero point 128, i.e. p + 0.5 rounded to even: at most one level apart.
    detector = open_classifier(detect_bundle, threads=1, accelerator="cpu")
    rgb = resize_to_input(bgr, detector.input_spec)
    frigate = frigate_detect_raw(out / "model.tflite", rgb[np.newaxis])
    ours = detector.detect(bgr)
    found = frigate[frigate[:, 1] > 0]
    assert len(found) >= 1 and int(found[0, 0]) == ours[0].index
    assert abs(found[0, 1] - ours[0].score) <= 0.02
    h, w = bgr.shape[:2]
    y0, x0, y1, x1 = found[0, 2:]
    assert np.allclose([x0 * w, y0 * h, x1 * w, y1 * h], ours[0].box, atol=0.03 * w)


def test_a_classifier_or_a_model_frigate_would_misread_is_refused_in_one_line(cli, tiny_bundle, detect_bundle,
                                                                              tmp_path):
    code, _, err = cli("export", "frigate", str(tiny_bundle), "--out", str(tmp_path / "a"))
    assert code == 1 and "is a classify bundle; Frigate runs detectors" in err and len(err.strip().splitlines()) == 1
    # The same detector with a preprocessing Frigate does not do (it feeds raw pixels).
    root = shutil.copytree(detect_bundle, tmp_path / "bundle")
    bundle = load_bundle(root)
    manifest = dict(bundle.manifest)
    manifest["input"] = {**manifest["input"], "mean": 0.0, "std": 255.0}
    (root / MANIFEST).write_text(json.dumps(manifest))
    code, _, err = cli("export", "frigate", str(root), "--out", str(tmp_path / "b"))
    assert code == 1 and "Frigate feeds raw RGB pixels" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", "frigate", str(detect_bundle), "--out", str(tmp_path / "c"), "--accelerator",
                       "edgetpu")
    assert code == 1 and "has no Edge TPU model" in err
