"""`edgepipe inspect`: what is in a .tflite and what the Edge TPU compiler will do with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .edgetpu_rules import COMPILER_VERSION, corrections_used, model_warnings, predict_ops, summarize
from edgepipe.device.model.modelinfo import ModelInfo, TensorInfo, read_model_info


def _io_spec(tensor: TensorInfo) -> dict[str, Any]:
    return {
        "name": tensor.name,
        "dtype": tensor.dtype,
        "shape": tensor.shape,
        "shape_signature": tensor.shape_signature,
        "scale": tensor.scale,
        "zero_point": tensor.zero_point,
    }


def _single(model: ModelInfo, indices: list[int]) -> dict[str, Any]:
    """The first input/output; classifiers have one."""
    return _io_spec(model.tensors[indices[0]]) if indices else {}


def inspect_report(model: ModelInfo) -> dict[str, Any]:
    """The `inspect --json` object: the issue's keys first, then totals and detail."""
    predictions = predict_ops(model)
    totals = summarize(predictions, compiled=model.edgetpu_compiled)
    return {
        "ops": [p.to_json() for p in predictions],
        "edgetpu_compiled": model.edgetpu_compiled,
        "mapped": totals["mapped"],
        "cpu": totals["cpu"],
        "input": _single(model, model.inputs),
        "output": _single(model, model.outputs),
        "path": str(model.path),
        "size_bytes": model.size_bytes,
        "inputs": [_io_spec(model.tensors[i]) for i in model.inputs],
        "outputs": [_io_spec(model.tensors[i]) for i in model.outputs],
        "tensors": [{**model.tensors[i].to_json(), "producer": op.index} for op in model.ops for i in op.outputs],
        "metadata": model.metadata,
        "compiled_by": [package.to_json() for package in model.edgetpu_packages],
        "prediction": {
            "compiler_version": COMPILER_VERSION,
            **totals,
            "warnings": model_warnings(model),
            "corrections": corrections_used(predictions),
        },
    }


def inspect_file(path: str | Path) -> dict[str, Any]:
    return inspect_report(read_model_info(path))


def _shape(spec: dict[str, Any]) -> str:
    dims = [str(s) if s >= 0 else "?" for s in spec["shape_signature"]]
    return "x".join(dims) or "scalar"


def _quant(spec: dict[str, Any]) -> str:
    if spec["scale"] is None:
        return ""
    return f" scale={spec['scale']:.6g} zero_point={spec['zero_point']}"


def format_totals(prediction: dict[str, Any]) -> list[str]:
    """The compiler's summary lines and log table, as it prints them."""
    lines = [
        f"Number of Edge TPU subgraphs: {prediction['edgetpu_subgraphs']}",
        f"Total number of operations: {prediction['total']}",
        f"Number of operations that will run on Edge TPU: {prediction['mapped']}",
        f"Number of operations that will run on CPU: {prediction['cpu']}",
        "",
        f"{'Operator':<28} {'Count':>5}  Status",
    ]
    lines += [f"{row['op']:<28} {row['count']:>5}  {row['status']}" for row in prediction["table"]]
    if prediction.get("expected_cpu"):
        lines += ["", f"Of the CPU operations, {prediction['expected_cpu']} are a detector's postprocess tail "
                      "(DEQUANTIZE + TFLite_Detection_PostProcess), expected: Coral's compiled SSDs end the same way."]
    return lines


def format_report(report: dict[str, Any]) -> str:
    produced: dict[int, list[str]] = {}
    for t in report["tensors"]:
        produced.setdefault(t["producer"], []).append(f"{t['dtype']} {_shape(t)}")
    lines = [f"{report['path']}  {report['size_bytes'] / 1024:.1f} KiB"]
    for kind in ("inputs", "outputs"):
        for spec in report[kind]:
            lines.append(f"{kind[:-1]:<6} {spec['name']}: {spec['dtype']} {_shape(spec)}{_quant(spec)}")
    compiled = report["edgetpu_compiled"]
    lines.append(f"Edge TPU compiled: {'yes (edgetpu-custom-op)' if compiled else 'no'}")
    for package in report["compiled_by"]:
        lines.append(
            f"  op #{package['op_index']}: compiler {package['compiler_version'] or '(unnamed)'}, "
            f"needs Edge TPU runtime {package['min_runtime_version']}"
        )
    lines.append("")
    lines.append(f"{'#':>4}  {'op':<26} {'ver':>3}  {'output':<22} {'edge tpu':<8} reason")
    for op in report["ops"]:
        output = ", ".join(produced.get(op["index"], []))
        lines.append(
            f"{op['index']:>4}  {op['op']:<26} {op['version']:>3}  {output:<22} {op['edgetpu']:<8} {op['reason']}".rstrip()
        )
    lines.append("")
    heading = "Edge TPU" if compiled else f"Predicted Edge TPU compile (compiler {report['prediction']['compiler_version']}, offline)"
    lines.append(f"{heading}:")
    lines += ["  " + line if line else "" for line in format_totals(report["prediction"])]
    corrections = report["prediction"]["corrections"]
    if corrections:
        lines += ["", "Rules measured against Coral's compiled models that this prediction rests on:"]
        lines += [f"  {c['rule']} (ops {', '.join(f'#{i}' for i in c['ops'])}); evidence: {c['source']}" for c in corrections]
    lines += [f"warning: {w}" for w in report["prediction"]["warnings"]]
    return "\n".join(lines)
