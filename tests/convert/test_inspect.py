"""`edgepipe inspect` on real .tflite files: what it lists and what it predicts
Edge TPU compiler 16 will map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from convert_helpers import SMALL_SIZE, small_mobilenet_like

from edgepipe.cli import main
from edgepipe.device.inspect.edgetpu_rules import AFTER_CUT, FIRST_REJECTED_VERSION
from edgepipe.device.inspect.report import inspect_file
from edgepipe.device.model.modelinfo import read_model_info
from edgepipe.device.model.preprocess import InputSpec

SPEC = InputSpec(height=SMALL_SIZE, width=SMALL_SIZE)


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real exports of small models: float32, and int8 with an op the Edge TPU lacks (LEAKY_RELU)."""
    from edgepipe.convert.quantize import export_tflite

    root = tmp_path_factory.mktemp("inspect_exports")
    pixels = np.random.default_rng(0).integers(0, 256, (4, SMALL_SIZE, SMALL_SIZE, 3), dtype=np.uint8)
    models = {
        "float32": export_tflite(small_mobilenet_like(), SPEC, None),
        "leaky_int8": export_tflite(small_mobilenet_like(activation="leaky"), SPEC, pixels, "uint8"),
        "float_io_int8": export_tflite(small_mobilenet_like(), SPEC, pixels, "float"),
    }
    for name, data in models.items():
        (root / f"{name}.tflite").write_bytes(data)
    return {name: root / f"{name}.tflite" for name in models}


def test_default_mobilenet_v2_export_is_predicted_fully_mapped(mobilenet_v2_export: Path) -> None:
    report = inspect_file(mobilenet_v2_export)
    assert report["cpu"] == 0 and report["mapped"] == len(report["ops"]) > 60
    assert report["prediction"]["mapped_fraction"] == 1.0
    assert report["prediction"]["edgetpu_subgraphs"] == 1 and report["prediction"]["warnings"] == []
    assert report["prediction"]["corrections"] == []  # documented rules alone decide a plain classifier
    assert report["input"]["dtype"] == "uint8" and report["input"]["shape_signature"] == [1, 96, 96, 3]
    assert report["output"]["dtype"] == "uint8" and report["output"]["shape"] == [1, 4]
    ops = {op["op"] for op in report["ops"]}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX", "QUANTIZE"} <= ops
    for op in report["ops"]:
        assert op["version"] < FIRST_REJECTED_VERSION.get(op["op"], 99)
    # Dense weights per tensor (compiler 16 rejects per-channel FULLY_CONNECTED weights).
    info = read_model_info(mobilenet_v2_export)
    fc = next(op for op in info.ops if op.op == "FULLY_CONNECTED")
    assert not info.tensors[fc.inputs[1]].per_channel


def test_dynamic_batch_model_is_predicted_on_cpu(tmp_path: Path) -> None:
    import tensorflow as tf

    # from_keras_model keeps Keras' batch dimension None (convert's export fixes it at 1).
    pixels = np.random.default_rng(0).integers(0, 256, (4, SMALL_SIZE, SMALL_SIZE, 3), dtype=np.uint8)
    converter = tf.lite.TFLiteConverter.from_keras_model(small_mobilenet_like())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([(p[np.newaxis] / 127.5 - 1).astype(np.float32)] for p in pixels)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.uint8
    model = tmp_path / "dynamic_batch.tflite"
    model.write_bytes(converter.convert())
    report = inspect_file(model)
    assert report["input"]["shape_signature"][0] == -1
    assert report["mapped"] == 0
    assert "dynamic shape" in report["ops"][0]["reason"]
    assert any("Model not quantized" in w for w in report["prediction"]["warnings"])


def test_float32_model_is_predicted_on_cpu_with_the_dtype_reason(exports: dict[str, Path]) -> None:
    report = inspect_file(exports["float32"])
    assert report["input"]["dtype"] == "float32" and report["input"]["scale"] is None
    assert report["mapped"] == 0 and report["edgetpu_compiled"] is False
    assert "float32, not 8-bit" in report["ops"][0]["reason"]
    # Nothing maps, so nothing is cut: every op is on the CPU for its own reason.
    assert all(op["edgetpu"] == "cpu" and "not 8-bit" in op["reason"] for op in report["ops"])
    assert any("not quantized" in w for w in report["prediction"]["warnings"])


def test_unsupported_op_cuts_the_graph_there(exports: dict[str, Path]) -> None:
    report = inspect_file(exports["leaky_int8"])
    names = [op["op"] for op in report["ops"]]
    first = names.index("LEAKY_RELU")
    assert [op["edgetpu"] for op in report["ops"][:first]] == ["mapped"] * first
    assert report["ops"][first]["edgetpu"] == "cpu" and "LEAKY_RELU is not supported" in report["ops"][first]["reason"]
    # A sequential model: every later op needs the LEAKY_RELU's output, so it is cut there.
    assert all(op["edgetpu"] == "cpu" and op["reason"].startswith(f"needs #{first} LEAKY_RELU") for op in report["ops"][first + 1 :])
    assert (report["mapped"], report["cpu"]) == (first, len(names) - first)
    table = {(row["op"], row["status"]): row["count"] for row in report["prediction"]["table"]}
    assert table[("LEAKY_RELU", "Operation not supported")] == 1
    assert sum(n for (op, status), n in table.items() if status == AFTER_CUT) == len(names) - first - 1


def test_float_io_leaves_edge_quantize_and_dequantize_on_cpu_without_cutting(exports: dict[str, Path]) -> None:
    report = inspect_file(exports["float_io_int8"])
    ops = report["ops"]
    assert (ops[0]["op"], ops[0]["edgetpu"]) == ("QUANTIZE", "cpu") and "float32, not 8-bit" in ops[0]["reason"]
    assert (ops[-1]["op"], ops[-1]["edgetpu"]) == ("DEQUANTIZE", "cpu") and "DEQUANTIZE is not supported" in ops[-1]["reason"]
    assert all(op["edgetpu"] == "mapped" for op in ops[1:-1])  # the graph is not cut at its edges
    assert (report["mapped"], report["cpu"], report["prediction"]["edgetpu_subgraphs"]) == (len(ops) - 2, 2, 1)


def test_inspect_json_has_the_documented_shape(mobilenet_v2_export: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(mobilenet_v2_export), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"ops", "edgetpu_compiled", "mapped", "cpu", "input", "output"} <= set(report)
    assert set(report["ops"][0]) == {"index", "op", "version", "edgetpu", "reason"}
    assert {"dtype", "scale", "zero_point", "shape"} <= set(report["input"])
    assert report["size_bytes"] == mobilenet_v2_export.stat().st_size


def test_inspect_text_prints_ops_io_and_the_compiler_totals(mobilenet_v2_export: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["inspect", str(mobilenet_v2_export)]) == 0
    out = capsys.readouterr().out
    assert "input  " in out and "uint8 1x96x96x3" in out
    assert "Number of Edge TPU subgraphs: 1" in out
    assert "Number of operations that will run on CPU: 0" in out
    assert "Edge TPU compiled: no" in out


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x00\x00\x00\x00TFL3" + b"\x00" * 4])
def test_non_tflite_or_damaged_file_is_one_line_error(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err


def test_truncated_model_is_one_line_error(mobilenet_v2_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = mobilenet_v2_export.read_bytes()
    for size in (len(data) // 3, len(data) - 100):
        path = tmp_path / f"cut_{size}.tflite"
        path.write_bytes(data[:size])
        assert main(["inspect", str(path)]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "truncated or damaged" in err




def test_corals_compiled_ssd_tail_is_expected_not_a_problem(coral_test_data: Path) -> None:
    """Coral's compiled SSD MobileNet v2 (its second segment): the Edge TPU part, then DEQUANTIZE x2 and
    TFLite_Detection_PostProcess on the CPU. inspect names that tail as expected."""
    report = inspect_file(coral_test_data / "pipeline" / "ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite")
    tail = report["ops"][1:]
    assert [op["op"] for op in tail] == ["DEQUANTIZE", "DEQUANTIZE", "CUSTOM"]
    assert all(op["edgetpu"] == "cpu" and op["expected"] for op in tail)
    assert report["ops"][0]["edgetpu"] == "mapped" and "expected" not in report["ops"][0]
    assert report["prediction"]["expected_cpu"] == report["cpu"] == 3
    assert [o["name"] for o in report["outputs"]] == [
        "TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1", "TFLite_Detection_PostProcess:2",
        "TFLite_Detection_PostProcess:3"]
