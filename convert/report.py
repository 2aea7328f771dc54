"""The human-readable result of `edgepipe convert` (stdout; --json prints the dict itself)."""

from __future__ import annotations

from typing import Any

from edgepipe.device.inspect.report import format_totals


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _format_detect_accuracy(summary: dict[str, Any]) -> list[str]:
    acc = summary["accuracy"]
    test, val = acc["test"], acc["validation"]

    def row(label: str, name: str) -> str:
        t = test.get(name)
        v = val.get(name)
        return (f"  {label:<14} {t['map50']:.3f} / {t['map50_95']:.3f}" if t else f"  {label:<14} -") + (
            f"   (validation {v['map50']:.3f})" if v else "")

    return [
        f"test mAP@0.5 / mAP@[.5:.95] ({acc['n']} photos, through the device runtime):",
        row("float (Keras)", "float"), row("int8 PTQ", "ptq"), row("int8 QAT", "qat"),
        *([row("float32 tflite", "float32_tflite")] if "float32_tflite" in test else []),
        f"drop float -> shipped int8: {summary['drop_points']:.2f} points of mAP@0.5 (max {summary['max_drop']:g}); "
        f"agreement with float {_pct(acc['agreement_with_float'])}",
    ]


def _format_classify_accuracy(summary: dict[str, Any]) -> list[str]:
    acc = summary["accuracy"]
    lines = [
        f"held-out accuracy ({acc['n']} images, through the device runtime):",
        f"  float (Keras)  {_pct(acc['float'])}",
        f"  int8 PTQ       {_pct(acc['ptq'])}",
        f"  int8 QAT       {_pct(acc['qat'])}",
    ]
    for name in ("float32_tflite", "float16_tflite"):
        if name in acc:
            lines.append(f"  {name:<14} {_pct(acc[name])}")
    lines.append(f"  Edge TPU       {_pct(acc['edgetpu'])}")
    if summary.get("imx500"):
        memory = summary["imx500"]["memory"]
        lines.append(f"  IMX500 (sim.)  {_pct(acc['imx500'])}  (sensor input p/128 - 1, uint8 output; "
                     f"{summary['imx500']['package']} uses {memory['used_bytes'] / 2**20:.2f} of "
                     f"{memory['available_bytes'] / 2**20:.2f} MiB)")
    lines.append(
        f"drop float -> shipped int8: {summary['drop_points']:.2f} points (max {summary['max_drop']:g}); "
        f"top-1 agreement {_pct(acc['top1_agreement'])}"
    )
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    detect = summary.get("task") == "detect"
    lines = [
        f"bundle: {summary['bundle']}  ({summary['status']})",
        f"shipped: {summary['method']} int8 (requested: {summary['requested_method']})",
        *(_format_detect_accuracy(summary) if detect else _format_classify_accuracy(summary)),
    ]
    unknown = summary.get("unknown")
    if unknown:
        far = unknown.get("false_accept")
        lines.append(
            f"unknown: {unknown['score']}" + (" (distance in feature space)" if unknown.get("features") else "")
            + f" below {unknown['threshold']:.4f}" + (" (fallback)" if unknown.get("threshold_rule") == "fallback" else "")
            + f" (accepts {_pct(unknown['accepted'])} of "
            f"{unknown['n']} held-out in-class images); false-accept rate "
            + (f"{_pct(far['false_accept_rate'])} on {far['n']} images" if far else "not measured (--unknown-dir)")
        )
    lines.append("sizes: " + ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in summary["sizes"].items()))
    edgetpu = summary["edgetpu"]
    compiler = edgetpu.get("compiler") or {}
    if edgetpu["compiled"]:
        lines.append(f"Edge TPU: compiled ({compiler.get('where')}, compiler {compiler.get('version')}):")
        lines += ["  " + line if line else "" for line in format_totals({**edgetpu["prediction"], **_compiled_totals(compiler)})]
    else:
        lines.append("Edge TPU: not compiled; offline prediction (edgepipe inspect):")
        lines += ["  " + line if line else "" for line in format_totals(edgetpu["prediction"])]
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)


def _compiled_totals(compiler: dict[str, Any]) -> dict[str, Any]:
    """The compiler's own numbers, where it printed them, over the prediction's."""
    keys = ("edgetpu_subgraphs", "total", "mapped", "cpu", "table")
    return {key: compiler[key] for key in keys if compiler.get(key) not in (None, [])}
