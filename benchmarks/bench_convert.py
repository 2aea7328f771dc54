"""Does `edgepipe convert` keep the accuracy and make an Edge TPU-ready model?

On the train benchmark's model (benchmarks/results/train_run/: MobileNetV2 1.0,
224x224, flowers12; made by benchmarks/bench_train.py, which this script runs
first when the run is missing), runs the real command
`edgepipe convert RUN --out benchmarks/results/convert_bundle --float32 --json`
(default method: PTQ and QAT both built and measured) and reports, on the
run's held-out split through the device runtime:
- int8 QAT accuracy vs float (target >= float - 1.0 point);
- int8 PTQ accuracy vs float (target >= float - 2.0 points);
- int8 model.tflite size vs the float32 .tflite (target <= 30%);
- the share of ops `edgepipe inspect` predicts the Edge TPU maps (target 100%);
- convert wall time (2 cores; contended numbers say so in the JSON's load average).
Prints a table; writes benchmarks/results/convert.json.

    python benchmarks/bench_convert.py [extra convert flags, e.g. --qat-epochs 3]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgepipe.cli import main as edgepipe
from edgepipe.device.inspect.report import inspect_file
from edgepipe.device.model.modelinfo import read_model_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN = RESULTS / "train_run"
BUNDLE = RESULTS / "convert_bundle"


def _ensure_run() -> None:
    if (RUN / "model.keras").is_file():
        return
    print(f"{RUN} missing: running benchmarks/bench_train.py first", file=sys.stderr)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py")], check=True)


def size_breakdown(path: Path) -> dict[str, int]:
    """Where an int8 file's bytes go: per-channel scales (float32) and zero points (int64) for
    every output channel are a visible share of a 12-class MobileNetV2."""
    info = read_model_info(path)
    by_type: dict[str, int] = {}
    for t in info.tensors:
        if t.constant and t.data is not None:
            by_type[t.dtype] = by_type.get(t.dtype, 0) + int(t.data.size)
    return {"file": info.size_bytes, **{f"{k}_constants": v for k, v in by_type.items()},
            "other (quantization parameters, names, graph)": info.size_bytes - sum(by_type.values())}


def main(extra: list[str]) -> int:
    _ensure_run()
    load_before = os.getloadavg()
    started = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = edgepipe(["convert", str(RUN), "--out", str(BUNDLE), "--float32", "--force", "--json", *extra])
    wall = time.perf_counter() - started
    if rc != 0 and not out.getvalue().strip():
        print(f"edgepipe convert failed (exit {rc})", file=sys.stderr)
        return 1
    summary = json.loads(out.getvalue())
    bundle = Path(summary["bundle"])
    acc = summary["accuracy"]
    int8_size = (bundle / "model.tflite").stat().st_size
    float_size = (bundle / "model_float32.tflite").stat().st_size
    prediction = inspect_file(bundle / "model.tflite")["prediction"]
    points = {k: round((acc[k] - acc["float"]) * 100, 2) for k in ("ptq", "qat", "int8", "float32_tflite")}
    result = {
        "model": "MobileNetV2 1.0 224, flowers12 (benchmarks/results/train_run)",
        "held_out_images": acc["n"],
        "accuracy": {k: acc[k] for k in ("float", "ptq", "qat", "int8", "float32_tflite")},
        "points_vs_float": points,
        "shipped_method": summary["method"],
        "top1_agreement": acc["top1_agreement"],
        "size_bytes": {"int8": int8_size, "float32": float_size},
        "size_ratio": round(int8_size / float_size, 4),
        "int8_size_breakdown": size_breakdown(bundle / "model.tflite"),
        "edgetpu_mapped_fraction": prediction["mapped_fraction"],
        "edgetpu_ops": {"mapped": prediction["mapped"], "total": prediction["total"]},
        "convert_wall_s": round(wall, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "targets": {
            "qat_vs_float_points": ">= -1.0",
            "ptq_vs_float_points": ">= -2.0",
            "size_ratio": "<= 0.30",
            "edgetpu_mapped_fraction": "== 1.0",
        },
        "met": {
            "qat": points["qat"] >= -1.0,
            "ptq": points["ptq"] >= -2.0,
            "size": int8_size / float_size <= 0.30,
            "edgetpu": prediction["mapped_fraction"] == 1.0,
        },
        "convert_exit_code": rc,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "convert.json").write_text(json.dumps(result, indent=2))
    rows = [
        ("float (Keras) accuracy", f"{acc['float'] * 100:.2f}%", ""),
        ("int8 QAT accuracy", f"{acc['qat'] * 100:.2f}% ({points['qat']:+.2f})", ">= float - 1.0"),
        ("int8 PTQ accuracy", f"{acc['ptq'] * 100:.2f}% ({points['ptq']:+.2f})", ">= float - 2.0"),
        ("shipped", f"{summary['method']} {acc['int8'] * 100:.2f}%", "better of the two"),
        ("int8 / float32 .tflite size", f"{int8_size / 1e6:.2f} / {float_size / 1e6:.2f} MB = {result['size_ratio']:.1%}", "<= 30%"),
        ("Edge TPU ops predicted mapped", f"{prediction['mapped']}/{prediction['total']} = {prediction['mapped_fraction']:.0%}", "100%"),
        ("convert wall time", f"{wall:.0f} s (load {load_before[0]:.1f})", "reported"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'what':<{width}}  {'measured':<34} target")
    for what, measured, target in rows:
        print(f"{what:<{width}}  {measured:<34} {target}")
    print(f"wrote {RESULTS / 'convert.json'}; bundle in {bundle}")
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
