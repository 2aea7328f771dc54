"""Does `edgepipe train --task detect` + `edgepipe convert` make a detector worth shipping, in time?

Runs the real commands with defaults on the raccoon photos (../shared/datasets/raccoon:
Pascal VOC, fixed 160/40 train/test split; 24 of the 160 training photos are
kept for validation by the trainer):

    edgepipe train --task detect RACCOON --out benchmarks/results/detect_run --json
    edgepipe convert benchmarks/results/detect_run --out benchmarks/results/detect_bundle --json
    edgepipe convert benchmarks/results/detect_run --out benchmarks/results/detect_bundle_ptq --method ptq --json

and reports, on the 40 test photos (never used for training or any choice):
- int8 mAP@0.5 of the bundle, measured again as a user measures it,
  `edgepipe evaluate BUNDLE RACCOON --split test --json` (the device runtime and the
  model's own TFLite_Detection_PostProcess op; target >= 0.70);
- float mAP@0.5 and the drop to int8 (target <= 0.03);
- train + convert wall time (target <= 15 min on the 2-core machine; the load
  averages before and after and the CPU time spent are in the JSON, since a shared
  machine stretches the wall time), and the same with a PTQ-only convert;
- the ops `edgepipe inspect` predicts on the CPU (target: only the postprocess tail).
Prints a table; writes benchmarks/results/detect.json.

    python benchmarks/bench_detect.py [--data DIR] [extra train flags, e.g. --epochs 10]
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from edgepipe.cli import main as edgepipe
from edgepipe.device.inspect.report import inspect_file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN = RESULTS / "detect_run"
BUNDLE = RESULTS / "detect_bundle"
PTQ_BUNDLE = RESULTS / "detect_bundle_ptq"
RACCOON = Path(os.environ.get("EDGEPIPE_SHARED", ROOT.parent / "shared")) / "datasets" / "raccoon"
TARGETS = {"int8_map50": 0.70, "max_drop": 0.03, "max_seconds": 15 * 60}


def run_command(args: list[str], accept_rejected: bool = False) -> tuple[dict, float, float]:
    """The command's --json summary, its wall time and the CPU time this process spent on it (all threads):
    on a shared machine the wall time stretches, the CPU time does not. With `accept_rejected`, a convert
    that measured too large a drop and kept its bundle as BUNDLE.rejected returns its summary too."""
    started, cpu_started = time.perf_counter(), time.process_time()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = edgepipe(args)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    rejected = accept_rejected and out.getvalue().strip() and json.loads(out.getvalue()).get("status") == "rejected"
    if rc != 0 and not rejected:
        raise SystemExit(f"edgepipe {args[0]} failed (exit {rc}): {out.getvalue()[-500:]}")
    return json.loads(out.getvalue()), wall, cpu


def main(argv: list[str]) -> int:
    data = RACCOON
    if argv[:1] == ["--data"]:
        data, argv = Path(argv[1]), argv[2:]
    if not data.is_dir():
        print(f"{data} is missing: the raccoon photos live in ../shared/datasets/raccoon", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    trained, train_s, train_cpu = run_command(["train", "--task", "detect", str(data), "--out", str(RUN), "--force",
                                               "--json", *argv])
    converted, convert_s, convert_cpu = run_command(["convert", str(RUN), "--out", str(BUNDLE), "--force", "--json"])
    ptq_only, ptq_s, ptq_cpu = run_command(["convert", str(RUN), "--out", str(PTQ_BUNDLE), "--method", "ptq",
                                            "--force", "--json"])
    load_after = os.getloadavg()

    # The shipped bundle measured again the way a user measures it: `edgepipe evaluate` on the data set's
    # fixed test split, through the device runtime and the model's own postprocess op.
    evaluated, _, _ = run_command(["evaluate", str(BUNDLE), str(data), "--split", "test", "--json"])
    shipped = SimpleNamespace(map50=evaluated["map50"], map50_95=evaluated["map50_95"])
    acc = converted["accuracy"]
    prediction = inspect_file(BUNDLE / "model.tflite")["prediction"]
    result = {
        "data": str(data),
        "test_photos": evaluated["n_images"],
        "validation_photos": trained["n_val"],
        "map50": {"float": acc["float"], "ptq": acc["ptq"], "qat": acc["qat"], "shipped": acc["int8"],
                  "shipped_remeasured": shipped.map50},
        "map50_95": {"float": acc["map50_95"]["float"], "shipped": shipped.map50_95},
        "shipped_method": converted["method"],
        "drop": round(acc["float"] - shipped.map50, 4),
        "seconds": {"train": round(train_s, 1), "convert": round(convert_s, 1), "total": round(train_s + convert_s, 1),
                    "convert_ptq_only": round(ptq_s, 1), "total_ptq_only": round(train_s + ptq_s, 1)},
        "cpu_seconds": {"train": round(train_cpu, 1), "convert": round(convert_cpu, 1),
                        "convert_ptq_only": round(ptq_cpu, 1)},
        "ptq_only_map50": ptq_only["accuracy"]["int8"],
        "edgetpu_prediction": {"mapped": prediction["mapped"], "cpu": prediction["cpu"],
                               "expected_cpu": prediction["expected_cpu"]},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "cores": os.cpu_count(),
        "targets": TARGETS,
    }
    result["met"] = {
        "int8_map50": shipped.map50 >= TARGETS["int8_map50"],
        "drop": result["drop"] <= TARGETS["max_drop"],
        "time": result["seconds"]["total"] <= TARGETS["max_seconds"],
        "cpu_tail_only": prediction["cpu"] == prediction["expected_cpu"],
    }
    (RESULTS / "detect.json").write_text(json.dumps(result, indent=2))
    rows = [
        ("test mAP@0.5 int8 (shipped, `edgepipe evaluate`)", f"{shipped.map50:.3f}", ">= 0.70", result["met"]["int8_map50"]),
        ("test mAP@0.5 float", f"{acc['float']:.3f}", "", None),
        ("float - int8", f"{result['drop']:.3f}", "<= 0.03", result["met"]["drop"]),
        ("PTQ / QAT test mAP@0.5", f"{acc['ptq']:.3f} / {acc['qat'] if acc['qat'] is None else round(acc['qat'], 3)}",
         f"shipped {converted['method']}", None),
        ("train + convert (PTQ and QAT), wall", f"{train_s:.0f} + {convert_s:.0f} s", "<= 900 s", result["met"]["time"]),
        ("  CPU time of this process (2 cores)", f"{train_cpu:.0f} + {convert_cpu:.0f} s", "", None),
        ("train + convert --method ptq, wall", f"{train_s:.0f} + {ptq_s:.0f} s (CPU {ptq_cpu:.0f} s)", "", None),
        ("ops on the CPU (predicted)", f"{prediction['cpu']} ({prediction['expected_cpu']} postprocess tail)",
         "tail only", result["met"]["cpu_tail_only"]),
    ]
    for name, value, target, met in rows:
        mark = "" if met is None else ("  ok" if met else "  MISSED")
        print(f"{name:<42} {value:<28} {target}{mark}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on {os.cpu_count()} cores; "
          f"wrote {RESULTS / 'detect.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
