"""Decoding a detector's outputs on the device: the four outputs found from the
model's own TFLite_Detection_PostProcess op (or by pycoral's rules), boxes
scaled back into the frame, filters, and one clear line for outputs that
cannot be boxes. The model is real and runs in the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from hypothesis import given, settings
from hypothesis import strategies as st

from edgepipe.device.model.detect_postprocess import (DetectionLayout, DetectionOutputError, DetectOptions, GraphFacts,
                                                check_labels, decode_detections, detection_layout, find_detection_outputs,
                                                pycoral_layout, to_frame)
from edgepipe.device.model.preprocess import InputSpec, crop_window, resize_to_input

from detector_model import ANCHORS, LABELS, MAX_DETECTIONS, SCALES, RunDetector, anchor_corners

CORAL_SSD_TAIL = "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite"
FRAME = (640, 480)  # width, height
INPUT = (320, 320)


@pytest.fixture(scope="module")
def detector(postprocess_detector):
    return RunDetector(postprocess_detector), find_detection_outputs(postprocess_detector.read_bytes(), "detector.tflite")


def test_outputs_are_found_from_the_op_not_the_signature(detector, postprocess_detector):
    run, layout = detector
    assert layout.found_by == "the TFLite_Detection_PostProcess op"
    assert (layout.num_classes, layout.max_detections) == (len(LABELS), MAX_DETECTIONS)
    outputs = run({0: (2, 0.9)})
    assert outputs[layout.boxes].shape == (1, MAX_DETECTIONS, 4) and outputs[layout.count].shape == (1,)
    # The converter orders this model's outputs classes, count, boxes, scores, and names its signature
    # output_0..3 in the stub's order: pycoral's signature and position rules would both misread it.
    assert [layout.boxes, layout.classes, layout.scores, layout.count] != [0, 1, 2, 3]
    pycoral = pycoral_layout(postprocess_detector.read_bytes(), "detector.tflite")
    assert pycoral.found_by == "the signature (pycoral's rule)" and pycoral.count == layout.boxes


def test_boxes_come_back_in_frame_pixels_best_first(detector):
    run, layout = detector
    outputs = run({4: (1, 0.6), 0: (2, 0.9)})
    found = decode_detections(outputs, layout, LABELS, FRAME, INPUT, DetectOptions(score_threshold=0.5))
    assert [(d.label, round(d.score, 4)) for d in found] == [("bird", 0.9), ("dog", 0.6)]
    ymin, xmin, ymax, xmax = anchor_corners(0)  # 0.05, 0.025, 0.25, 0.275
    assert found[0].box == (16, 24, 176, 120) == (round(xmin * 640), round(ymin * 480), round(xmax * 640),
                                                   round(ymax * 480))
    assert found[0].to_json() == {"index": 2, "label": "bird", "score": 0.9, "box": [16, 24, 176, 120]}


def test_an_encoded_offset_moves_the_box(detector):
    run, layout = detector
    encodings = np.zeros((len(ANCHORS), 4), np.float32)
    encodings[4] = [SCALES["y_scale"] * 0.1 / ANCHORS[4, 2], 0, 0, 0]  # centre moves down by 0.1 of the image
    found = decode_detections(run({4: (0, 0.8)}, encodings), layout, LABELS, FRAME, INPUT)
    ymin, xmin, ymax, xmax = anchor_corners(4) + np.array([0.1, 0, 0.1, 0])
    assert found[0].box == (round(xmin * 640), round(ymin * 480), round(xmax * 640), round(ymax * 480))


def test_threshold_class_filter_and_top_n(detector):
    run, layout = detector
    outputs = run({0: (0, 0.9), 2: (1, 0.8), 6: (0, 0.7), 8: (3, 0.3)})
    decode = lambda **kw: [(d.label, round(d.score, 2)) for d in  # noqa: E731
                           decode_detections(outputs, layout, LABELS, FRAME, INPUT, DetectOptions(**kw))]
    assert decode(score_threshold=0.5) == [("cat", 0.9), ("dog", 0.8), ("cat", 0.7)]
    assert decode(score_threshold=0.2) == [("cat", 0.9), ("dog", 0.8), ("cat", 0.7), ("fish", 0.3)]
    assert decode(score_threshold=0.5, classes=frozenset({"cat"})) == [("cat", 0.9), ("cat", 0.7)]
    assert decode(score_threshold=0.5, max_results=2) == [("cat", 0.9), ("dog", 0.8)]
    with pytest.raises(UserError, match="horse: not a label of detector.tflite"):
        check_labels(layout, LABELS, DetectOptions(classes=frozenset({"horse"})))


def _in_frame(box: list[float], resize: str) -> list[float]:
    return to_frame(np.array([box]), FRAME, INPUT, resize)[0].tolist()


def test_letterbox_and_center_crop_undo_the_preprocessing():
    # 640x480 letterboxed into 320x320: scaled by 0.5 to 320x240, 40 rows of padding above and below.
    assert _in_frame([40 / 320, 0.0, 280 / 320, 1.0], "letterbox") == pytest.approx([0, 0, 640, 480])
    assert _in_frame([0.0, 0.0, 1.0, 1.0], "letterbox") == pytest.approx([0, 0, 640, 480])  # padding clipped off
    middle = [0.25, 0.25, 0.75, 0.75]
    assert _in_frame(middle, "letterbox") == pytest.approx([160, 80, 480, 400])
    # center_crop keeps the middle 480x480 of the frame: the same window the preprocessing cuts.
    assert crop_window(640, 480, 1.0) == (80, 0, 480, 480)
    assert _in_frame(middle, "center_crop") == pytest.approx([200, 120, 440, 360])
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 255  # exactly the crop window is white
    assert resize_to_input(frame, InputSpec(320, 320, resize="center_crop")).min() == 255
    assert _in_frame(middle, "stretch") == pytest.approx([160, 120, 480, 360])


def _spoiled(outputs: list[np.ndarray], layout, name: str, row: int, value) -> list[np.ndarray]:
    outputs = [o.copy() for o in outputs]
    target = outputs[getattr(layout, name)]
    if name == "count":
        target[0] = value
    else:
        target[0, row] = value
    return outputs


@pytest.mark.parametrize("name, row, value, message", [
    ("scores", 0, np.nan, "NaN or infinite scores"),
    ("boxes", 1, [0.1, 0.1, 3.0, 0.5], r"box \(0\.1, 0\.1, 3, 0\.5\) is not ymin, xmin, ymax, xmax within the image"),
    ("boxes", 0, [0.6, 0.1, 0.2, 0.5], r"box \(0\.6, 0\.1, 0\.2, 0\.5\) is not ymin"),
    ("classes", 1, 7, r"class id 7 is not in the label map \(0\.\.3\)"),
    ("scores", 1, 1.5, "a score of 1.5 is outside 0..1"),
    ("count", 0, 9, "says it found 9 objects but outputs room for 5"),
])
def test_outputs_that_cannot_be_boxes_are_one_clear_line(detector, name, row, value, message):
    run, layout = detector
    outputs = _spoiled(run({0: (0, 0.9), 4: (1, 0.8)}), layout, name, row, value)
    with pytest.raises(DetectionOutputError, match=message) as error:
        decode_detections(outputs, layout, LABELS, FRAME, INPUT)
    assert str(error.value).startswith("detector.tflite: ") and "\n" not in str(error.value)


def test_garbage_past_the_count_is_ignored_and_shapes_are_checked(detector):
    run, layout = detector
    outputs = _spoiled(run({0: (0, 0.9)}), layout, "boxes", 3, np.nan)  # slot 3 is past count = 1
    assert len(decode_detections(outputs, layout, LABELS, FRAME, INPUT)) == 1
    outputs[layout.scores] = np.zeros((1, 3))
    with pytest.raises(DetectionOutputError, match=r"output \d \(scores, found by the TFLite_Detection_PostProcess"):
        decode_detections(outputs, layout, LABELS, FRAME, INPUT)
    with pytest.raises(DetectionOutputError, match="detects 4 classes but the labels name 3"):
        check_labels(layout, LABELS[:3], DetectOptions())


def _facts(shapes, signature=None, op_outputs=None) -> GraphFacts:
    return GraphFacts(outputs=(10, 11, 12, 13), shapes=tuple(shapes), op_outputs=op_outputs, op_options={},
                      signature_outputs=signature or {})


def test_without_the_op_pycorals_rules_decide_the_order():
    count_last = detection_layout(_facts([(1, 20, 4), (1, 20), (1, 20), (1,)]), "m")
    assert (count_last.boxes, count_last.classes, count_last.scores, count_last.count) == (0, 1, 2, 3)
    tf2 = detection_layout(_facts([(1, 20), (1, 20, 4), (1,), (1, 20)]), "m")
    assert (tf2.scores, tf2.boxes, tf2.count, tf2.classes) == (0, 1, 2, 3)
    signed = detection_layout(_facts([(1, 20)] * 4, {"output_0": 12, "output_1": 10, "output_2": 13, "output_3": 11}),
                              "m")
    assert (signed.count, signed.scores, signed.classes, signed.boxes) == (2, 0, 3, 1)
    assert signed.found_by == "the signature (pycoral's rule)"
    # An op whose outputs are not the model's outputs (more ops follow it) does not decide.
    later = detection_layout(_facts([(1, 20, 4), (1, 20), (1, 20), (1,)], op_outputs=(1, 2, 3, 4)), "m")
    assert later.found_by == "the output order (pycoral's rule)"
    with pytest.raises(DetectionOutputError, match="m has 2 outputs"):
        detection_layout(GraphFacts((1, 2), ((1, 5), (1, 5)), None, {}, {}), "m")


def test_coral_compiled_ssd_tail_is_read_from_its_op(coral_test_data):
    path = coral_test_data / CORAL_SSD_TAIL
    layout = find_detection_outputs(path.read_bytes(), path.name)
    assert layout.found_by == "the TFLite_Detection_PostProcess op"
    assert (layout.boxes, layout.classes, layout.scores, layout.count) == (0, 1, 2, 3)
    assert (layout.num_classes, layout.max_detections) == (90, 20)
    pycoral = pycoral_layout(path.read_bytes(), path.name)  # Coral's own order is what pycoral reads
    assert (pycoral.boxes, pycoral.classes, pycoral.scores, pycoral.count) == (0, 1, 2, 3)
    assert pycoral.found_by == "the output order (pycoral's rule)"


def test_a_damaged_model_is_one_line():
    with pytest.raises(UserError, match=r"m\.tflite is a truncated or damaged TFLite model"):
        find_detection_outputs(b"\x10\x00\x00\x00TFL3" + b"\xff" * 20, "m.tflite")


LAYOUT = DetectionLayout(0, 1, 2, 3, "the output order (pycoral's rule)", "m.tflite")
numbers = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(-0.25, 1.25, width=32)


@settings(max_examples=200, deadline=None)
@given(rows=st.integers(0, 6), data=st.data(), frame=st.tuples(st.integers(1, 2000), st.integers(1, 2000)),
       resize=st.sampled_from(["stretch", "letterbox", "center_crop"]))
def test_any_outputs_give_boxes_inside_the_frame_or_one_error(rows, data, frame, resize):
    """The four outputs are untrusted numbers: whatever they hold, the result is boxes inside the frame
    with known labels, or one DetectionOutputError line."""
    boxes = np.array(data.draw(st.lists(st.lists(numbers, min_size=4, max_size=4), min_size=rows, max_size=rows)),
                     np.float32).reshape(1, rows, 4)
    classes = np.array(data.draw(st.lists(st.integers(-1, 5) | numbers, min_size=rows, max_size=rows)), np.float32)
    scores = np.array(data.draw(st.lists(numbers, min_size=rows, max_size=rows)), np.float32)
    count = np.array([data.draw(st.integers(-1, 7) | numbers)], np.float32)
    outputs = [boxes, classes[None], scores[None], count]
    try:
        found = decode_detections(outputs, LAYOUT, LABELS, frame, INPUT, DetectOptions(score_threshold=0.0, resize=resize))
    except DetectionOutputError as exc:
        assert str(exc).startswith("m.tflite: ") and "\n" not in str(exc)
        return
    for d in found:
        x0, y0, x1, y1 = d.box
        assert 0 <= x0 < x1 <= frame[0] and 0 <= y0 < y1 <= frame[1]
        assert d.label == LABELS[d.index] and 0 <= d.score <= 1
