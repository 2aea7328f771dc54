"""The device runtime on real interpreters: bundles, bare .tflite files, labels,
Edge TPU selection without a TPU, and every damaged-input message."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import InputSpec, load_image, resize_to_input, shrink, to_model_input
from edgepipe.device.model.classifier import ModelError, open_classifier, pixel_table
from edgepipe.device.model.backends import EdgeTpuUnavailable
from edgepipe.device.host import default_threads
from edgepipe.synthetic import SHAPES



@pytest.fixture(scope="module")
def shape_image(shapes_dataset: Path) -> np.ndarray:
    return load_image(sorted(shapes_dataset.rglob("*.jpg"))[0])


def test_tflite_file_with_labels_gives_dequantised_softmax_scores(tiny_int8_model, shape_image):
    clf = open_classifier(tiny_int8_model["model"], tiny_int8_model["labels"], threads=1)
    assert clf.labels == list(SHAPES)
    assert clf.backend == "ai_edge_litert" and clf.backend_version[0].isdigit()
    assert clf.accelerator == "cpu" and clf.threads == 1 and clf.load_ms > 0
    assert clf.model_path == tiny_int8_model["model"]
    spec = clf.input_spec
    assert (spec.height, spec.width, spec.dtype) == (96, 96, "uint8") and spec.scale > 0
    tensor = clf.preprocess(shape_image)
    assert tensor.shape == (1, 96, 96, 3) and tensor.dtype == np.uint8
    np.testing.assert_array_equal(tensor, to_model_input(shape_image, spec))
    scores = clf.invoke(tensor)
    assert scores.shape == (4,) and scores.dtype == np.float32
    assert scores.sum() == pytest.approx(1.0, abs=0.02)
    top = clf.classify(shape_image, top_k=3)
    assert len(top) == 3
    assert [p.score for p in top] == sorted((p.score for p in top), reverse=True)
    assert top[0].index == int(np.argmax(scores)) and top[0].label == SHAPES[top[0].index]
    assert top[0].score == pytest.approx(float(scores.max()))


def test_tflite_without_labels_names_classes_by_index(tiny_int8_model):
    clf = open_classifier(tiny_int8_model["model"])
    assert clf.labels == ["class_0", "class_1", "class_2", "class_3"]
    assert clf.threads == default_threads()


def test_coral_style_indexed_labels_file(tiny_int8_model, tmp_path):
    labels = tmp_path / "coco_style.txt"
    labels.write_text("0  circle\n1  square\n2  triangle\n3  cross\n")
    assert open_classifier(tiny_int8_model["model"], labels).labels == list(SHAPES)


def test_bundle_uses_its_labels_spec_and_cpu_model(tiny_bundle, shape_image):
    clf = open_classifier(tiny_bundle, accelerator="auto")
    assert clf.labels == list(SHAPES)
    assert clf.model_path == tiny_bundle / "model.tflite"
    assert clf.accelerator == "cpu" and "no Edge TPU model" in clf.accelerator_note
    assert clf.input_spec.dtype == "uint8"
    assert len(clf.classify(shape_image, top_k=10)) == 4


def test_bundle_with_changed_file_is_refused(bundle_copy):
    with open(bundle_copy / "model.tflite", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="model.tflite does not match its sha256"):
        open_classifier(bundle_copy)


def test_labels_count_must_match_output_size(tiny_int8_model, tmp_path):
    labels = tmp_path / "three.txt"
    labels.write_text("a\nb\nc\n")
    with pytest.raises(ModelError, match="labels have 3 entries but .* outputs 4 scores"):
        open_classifier(tiny_int8_model["model"], labels)


def test_missing_empty_foreign_and_truncated_models_get_one_line(tiny_int8_model, tmp_path, shapes_dataset):
    data = tiny_int8_model["model"].read_bytes()
    cases = {
        "missing.tflite": (None, "does not exist"),
        "empty.tflite": (b"", "not a TFLite model"),
        "photo.tflite": (next(shapes_dataset.rglob("*.jpg")).read_bytes(), "not a TFLite model"),
        "truncated.tflite": (data[: len(data) // 2], "cannot be loaded"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelError, match=message) as info:
            open_classifier(path)
        assert "\n" not in str(info.value)


def test_directory_without_manifest_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="directory but not a bundle"):
        open_classifier(tmp_path)


def test_model_whose_input_is_not_an_image_is_refused(vector_model):
    with pytest.raises(ModelError, match=r"not an image classifier: its input is float32\[1, 10\]"):
        open_classifier(vector_model)


def test_edgetpu_model_without_runtime_gives_install_hint_not_unresolved_op(compiled_model, capfd):
    compiled = compiled_model
    with pytest.raises(EdgeTpuUnavailable, match="libedgetpu.so.1 did not load.*apt-get install libedgetpu1-std"):
        open_classifier(compiled, accelerator="auto", edgetpu_device="usb:0")
    with pytest.raises(UserError, match="compiled for the Edge TPU .* cannot run on the CPU"):
        open_classifier(compiled, accelerator="cpu")
    assert "Exception ignored" not in capfd.readouterr().err


def test_cpu_only_model_refuses_explicit_edgetpu(tiny_int8_model):
    with pytest.raises(UserError, match="not compiled for the Edge TPU"):
        open_classifier(tiny_int8_model["model"], accelerator="edgetpu")


def test_bundle_auto_falls_back_to_cpu_when_no_tpu_and_edgetpu_fails_clearly(edgetpu_bundle):
    clf = open_classifier(edgetpu_bundle, accelerator="auto")
    assert clf.accelerator == "cpu" and clf.model_path.name == "model.tflite"
    assert "Edge TPU not usable" in clf.accelerator_note
    with pytest.raises(EdgeTpuUnavailable, match="cannot use the Edge TPU pci:0"):
        open_classifier(edgetpu_bundle, accelerator="edgetpu", edgetpu_device="pci:0")


def test_bundle_without_edgetpu_model_refuses_explicit_edgetpu(tiny_bundle):
    with pytest.raises(UserError, match="has no Edge TPU model"):
        open_classifier(tiny_bundle, accelerator="edgetpu")


def test_unknown_accelerator_is_refused(tiny_bundle):
    with pytest.raises(UserError, match="not one of cpu, edgetpu, imx500, auto"):
        open_classifier(tiny_bundle, accelerator="gpu")



@pytest.mark.parametrize("dtype, scale, zero_point", [("uint8", 0.0078125, 128), ("int8", 0.0123, -3),
                                                      ("float32", 0.0, 0)])
@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_pixel_table_preprocessing_equals_the_shared_definition(shape_image, dtype, scale, zero_point, resize):
    spec = InputSpec(64, 80, resize=resize, mean=120.0, std=60.0).with_tensor(dtype, scale, zero_point)
    wide = np.concatenate([shape_image, shape_image[:, ::-1]], axis=1)
    fast = pixel_table(spec)[resize_to_input(wide, spec)][np.newaxis]
    np.testing.assert_array_equal(fast, to_model_input(wide, spec))


@pytest.mark.parametrize("channel_order", ["RGB", "BGR"])
@pytest.mark.parametrize("resize", ["stretch", "center_crop"])
def test_resizing_into_a_buffer_gives_the_same_pixels_and_reuses_it(shape_image, channel_order, resize):
    spec = InputSpec(64, 80, channel_order=channel_order, resize=resize)
    wide = np.concatenate([shape_image, shape_image[:, ::-1]], axis=1)
    out = np.empty((64, 80, 3), np.uint8)
    for frame in (wide, wide[::-1], cv2.resize(wide, (80, 64))):  # shrunk, another frame, already the size
        assert resize_to_input(frame, spec, out=out) is out
        np.testing.assert_array_equal(out, resize_to_input(frame, spec))


def test_shrinking_averages_whole_blocks_then_interpolates_the_rest(shape_image):
    """640x480 to 224x224: each pixel of the half-size frame is the mean of a 2x2 block; a frame
    one pixel wider and taller is cut to that multiple first, so it shrinks the same way."""
    frame = cv2.resize(shape_image, (640, 480))
    blocks = frame.reshape(240, 2, 320, 2, 3).astype(np.float32).mean(axis=(1, 3))
    expected = cv2.resize(np.rint(blocks).astype(np.uint8), (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(shrink(frame, 224, 224).astype(int) - expected).max() <= 2  # two roundings
    padded = cv2.copyMakeBorder(frame, 0, 1, 0, 1, cv2.BORDER_CONSTANT, value=(255, 0, 0))
    np.testing.assert_array_equal(shrink(padded, 224, 224), shrink(frame, 224, 224))


def test_frames_loaded_into_the_input_tensor_score_like_the_preprocessed_tensor(tiny_int8_model, shapes_dataset):
    """run's workers write each frame straight into the interpreter's input: the same scores as
    preprocess + invoke, frame after frame (the reused buffers carry nothing over)."""
    clf = open_classifier(tiny_int8_model["model"], tiny_int8_model["labels"], threads=1)
    for path in sorted(shapes_dataset.rglob("*.jpg"))[:6]:
        image = cv2.resize(load_image(path), (640, 480))
        clf.load_frame(image)
        np.testing.assert_array_equal(clf.invoke_loaded(), clf.invoke(clf.preprocess(image)))


def test_edgetpu_delegate_is_loaded_for_the_chosen_device_through_a_stand_in_loader():
    """No Edge TPU here: a stand-in for the backend's load_delegate records what it is asked."""
    from edgepipe.device.model.backends import Backend, load_edgetpu_delegate

    calls = []

    def load_delegate(library, options):
        calls.append((library, options))
        return "delegate"

    backend = Backend("stand-in", "0", interpreter_class=None, load_delegate=load_delegate)
    assert load_edgetpu_delegate(backend, "usb:0") == "delegate"
    assert load_edgetpu_delegate(backend) == "delegate"
    assert calls == [("libedgetpu.so.1", {"device": "usb:0"}), ("libedgetpu.so.1", {})]
