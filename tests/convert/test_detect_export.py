"""The detector's int8 export: the postprocess op at the end, outputs in the order Frigate reads
(by index) and pycoral reads (by signature name), and a graph inspect predicts maps to the Edge TPU
but for Coral's CPU tail. One real conversion of a small SSDLite (alpha 0.35, 160x160) is shared."""

from __future__ import annotations

import numpy as np
import pytest

CLASSES = 2
SIZE = 160


@pytest.fixture(scope="module")
def detector():
    import tf_keras as keras

    from edgepipe.train.detect.model import DetectorConfig, build_detector

    keras.utils.set_random_seed(3)
    model = build_detector(DetectorConfig(input_size=SIZE, weights="none", alpha=0.35), CLASSES)
    # Make the class scores depend on the image, so detections differ between photos.
    rng = np.random.default_rng(3)
    for layer in model.layers:
        if layer.name.startswith(("classes_", "boxes_")) and layer.weights:
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """Photos-like uint8 inputs: smooth gradients plus a bright square at a different place each."""
    rng = np.random.default_rng(4)
    images = []
    for k in range(8):
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        base = ((yy + xx * (k + 1)) % 255).astype(np.uint8)
        image = np.stack([base, base[::-1], base.T], axis=-1)
        y, x = rng.integers(0, SIZE - 60, 2)
        image[y: y + 60, x: x + 60] = 250
        images.append(image)
    return np.stack(images)


@pytest.fixture(scope="module")
def exported(detector, pixels) -> bytes:
    from edgepipe.convert.detect_export import export_detector
    from edgepipe.device.model.preprocess import InputSpec
    from edgepipe.train.detect.anchors import make_anchors
    from edgepipe.train.detect.decode import PostprocessConfig

    return export_detector(detector, InputSpec(SIZE, SIZE), make_anchors(SIZE), PostprocessConfig(), pixels, "uint8")


def _interpreter(data: bytes):
    from edgepipe.device.model.backends import find_backend

    interpreter = find_backend().interpreter_class(model_content=data)
    interpreter.allocate_tensors()
    return interpreter


def test_outputs_by_index_are_boxes_classes_scores_count(exported, pixels):
    interpreter = _interpreter(exported)
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"] == np.uint8 and list(detail["shape"]) == [1, SIZE, SIZE, 3]
    outputs = interpreter.get_output_details()
    assert [list(o["shape"]) for o in outputs] == [[1, 20, 4], [1, 20], [1, 20], [1]]
    assert all(o["dtype"] == np.float32 for o in outputs)
    interpreter.set_tensor(detail["index"], pixels[:1])
    interpreter.invoke()
    boxes, classes, scores, count = (interpreter.get_tensor(o["index"])[0] for o in outputs)
    n = int(count)
    assert 0 < n <= 20
    assert set(classes[:n].astype(int)) <= set(range(CLASSES))
    assert (np.diff(scores[:n]) <= 1e-6).all() and (scores[:n] >= 0.01).all()  # best first, above the threshold
    assert (boxes[:n, 2] >= boxes[:n, 0]).all() and (boxes[:n, 3] >= boxes[:n, 1]).all()


def test_the_device_and_pycoral_find_the_same_four_outputs(exported):
    """The device's decoder (from the op) and pycoral's rules (from the signature) agree on every position."""
    from edgepipe.device.model.detect_postprocess import find_detection_outputs, pycoral_layout

    by_op, by_pycoral = find_detection_outputs(exported, "export"), pycoral_layout(exported, "export")
    positions = lambda layout: (layout.boxes, layout.classes, layout.scores, layout.count)
    assert positions(by_op) == positions(by_pycoral) == (0, 1, 2, 3)
    assert "signature" in by_pycoral.found_by
    assert (by_op.num_classes, by_op.max_detections) == (CLASSES, 20)


def test_pycoral_reads_the_signature_names(exported, pixels):
    """pycoral's adapters/detect.py: with a signature, output_0 = count, output_1 = scores,
    output_2 = classes, output_3 = boxes; without one, by index (boxes, classes, scores, count)."""
    interpreter = _interpreter(exported)
    signatures = interpreter._get_full_signature_list()
    assert len(signatures) == 1
    names = next(iter(signatures.values()))["outputs"]
    assert sorted(names) == ["output_0", "output_1", "output_2", "output_3"]
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[1:2])
    interpreter.invoke()
    by_index = [interpreter.get_tensor(o["index"])[0] for o in interpreter.get_output_details()]
    by_name = {k: interpreter.get_tensor(v)[0] for k, v in names.items()}
    np.testing.assert_array_equal(by_name["output_0"], by_index[3])
    np.testing.assert_array_equal(by_name["output_1"], by_index[2])
    np.testing.assert_array_equal(by_name["output_2"], by_index[1])
    np.testing.assert_array_equal(by_name["output_3"], by_index[0])


def test_graph_is_int8_and_ends_in_coral_cpu_tail(exported, tmp_path):
    from edgepipe.device.inspect.report import inspect_file

    path = tmp_path / "model.tflite"
    path.write_bytes(exported)
    report = inspect_file(path)
    ops = report["ops"]
    assert [op["op"] for op in ops[-3:]] == ["DEQUANTIZE", "DEQUANTIZE", "CUSTOM"]
    assert all(op["edgetpu"] == "mapped" for op in ops[:-3]), [op for op in ops[:-3] if op["edgetpu"] != "mapped"]
    assert all(op["edgetpu"] == "cpu" and op.get("expected") for op in ops[-3:])
    assert report["prediction"]["expected_cpu"] == report["cpu"] == 3
    assert report["prediction"]["warnings"] == []
    assert {t["dtype"] for t in report["tensors"] if t["producer"] < len(ops) - 3} <= {"int8", "uint8"}


@pytest.mark.e2e  # a second conversion (float): a minute or two
def test_the_op_decodes_as_the_training_decoder(detector, pixels):
    """A float export's postprocess op and train/detect/decode.py give the same detections."""
    from edgepipe.convert.detect_export import export_detector
    from edgepipe.device.model.classifier import open_model_data
    from edgepipe.device.model.preprocess import InputSpec, normalize
    from edgepipe.train.detect.anchors import iou_matrix, make_anchors
    from edgepipe.train.detect.decode import PostprocessConfig, detections
    from edgepipe.train.detect.measure import detections_in

    spec, anchors, cfg = InputSpec(SIZE, SIZE), make_anchors(SIZE), PostprocessConfig()
    data = export_detector(detector, spec, anchors, cfg, None)
    detector_op = open_model_data(data, "float export")
    from_op = [detections_in(detector_op, p) for p in pixels[:3]]
    boxes, scores = detector(normalize(pixels[:3], spec), training=False)
    for k in range(3):
        ours = detections(boxes.numpy()[k], scores.numpy()[k], anchors, cfg)
        assert len(ours) == len(from_op[k])
        top = min(5, len(ours))
        assert [c for c, _, _ in ours[:top]] == [c for c, _, _ in from_op[k][:top]]
        np.testing.assert_allclose([s for _, s, _ in ours[:top]], [s for _, s, _ in from_op[k][:top]], atol=1e-5)
        iou = iou_matrix(np.stack([b for _, _, b in ours[:top]]), np.stack([b for _, _, b in from_op[k][:top]]))
        assert np.diag(iou).min() > 0.999
