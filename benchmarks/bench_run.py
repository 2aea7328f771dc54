"""Benchmark of `edgepipe run` against the physical limit of the model.

For an int8 MobileNetV2 1.0 224 (uint8 I/O) and a 640x480 video file, per
thread count, each in a fresh subprocess, alternating for --rounds rounds
(bare, run, bare, run, ..., bare) so that load drifting on a shared machine
hits both sides alike:
  - bare: p50 of a bare `interpreter.invoke()` loop (the limit: 1/p50 per s),
    from the bare loops on either side of each run;
  - run: throughput of `edgepipe run MODEL --source video.mp4 --threads T`
    (frames / run duration from its --stats-json), time from process start to
    the first result line, peak RSS of the child (ru_maxrss via wait4, and
    VmHWM read by the child itself as a cross-check), and whether any
    TensorFlow module was imported.
The reported ratio is the median over rounds. The model and the video are
made in a subprocess: the parent stays a small stdlib-only process, because a
child's ru_maxrss includes the memory of the parent it was forked from.
Targets: run >= 0.85 x bare, first result <= 1.5 s, RSS <= 150 MB,
TensorFlow never imported.

    python benchmarks/bench_run.py [--model M.tflite] [--threads 1,2] [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

RESULTS = ROOT / "results"
TARGETS = {"throughput_ratio": 0.85, "first_result_s": 1.5, "peak_rss_mb": 150.0}
HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")

BARE_LOOP = """
import json, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interpreter = Interpreter(model_path=model, num_threads=threads)
interpreter.allocate_tensors()
detail = interpreter.get_input_details()[0]
pixels = np.random.default_rng(0).integers(0, 256, detail["shape"], dtype=np.uint8).astype(detail["dtype"])
interpreter.set_tensor(detail["index"], pixels)
for _ in range(10):
    interpreter.invoke()
samples = []
for _ in range(runs):
    start = time.perf_counter()
    interpreter.invoke()
    samples.append((time.perf_counter() - start) * 1000)
print(json.dumps(samples))
"""

# `edgepipe run` exactly as the console script runs it, reporting afterwards which heavy modules got imported.
RUN_WRAPPER = """
import json, sys
from edgepipe.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
sys.stderr.write("CHILD_REPORT " + json.dumps({"heavy": heavy, "vm_hwm_mb": round(hwm_kb / 1024, 1)}) + "\\n")
sys.exit(code)
""" % (HEAVY,)

PREPARE = """
import sys
sys.path.insert(0, sys.argv[1])
from benchmarks.models import mobilenet_v2_int8
from edgepipe.synthetic import write_video
model, video, frames = sys.argv[2], sys.argv[3], int(sys.argv[4])
if model != "-":
    mobilenet_v2_int8(model)
write_video(video, frames=frames, size=(640, 480), fps=30.0)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bare_invoke(model: Path, threads: int, runs: int) -> list[float]:
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, str(model), str(threads), str(runs)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def edgepipe_run(model: Path, video: Path, threads: int, work: Path) -> dict:
    stats = work / f"stats-{threads}.json"
    stats.unlink(missing_ok=True)
    argv = [sys.executable, "-c", RUN_WRAPPER, "run", str(model), "--source", str(video), "--threads", str(threads),
            "--json", "--stats-interval", "0", "--stats-json", str(stats)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_line = proc.stdout.readline()
    first_result_s = time.perf_counter() - started
    lines = 1 + sum(1 for _ in proc.stdout)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not first_line.startswith("{"):
        raise SystemExit(f"edgepipe run failed ({proc.returncode}):\n{err}")
    summary = json.loads(stats.read_text())
    child = json.loads(err.split("CHILD_REPORT ")[1].splitlines()[0])
    return {
        "frames": summary["frames"],
        "result_lines": lines,
        "throughput_fps": summary["fps"],
        "first_result_s": round(first_result_s, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "vm_hwm_mb": child["vm_hwm_mb"],
        "tensorflow_imported": bool(child["heavy"]),
        "heavy_modules": child["heavy"],
        "latency_ms": summary["latency_ms"],
        "dropped": summary["dropped"],
    }


def median(values: list[float]) -> float:
    return percentile(values, 50)


def measure(model: Path, video: Path, threads: int, runs: int, rounds: int, work: Path) -> dict:
    bare = [bare_invoke(model, threads, runs)]
    round_results = []
    for _ in range(rounds):
        run = edgepipe_run(model, video, threads, work)
        bare.append(bare_invoke(model, threads, runs))
        p50 = percentile(bare[-2] + bare[-1], 50)  # the bare loops on either side of this run
        round_results.append({"bare_invoke_p50_ms": round(p50, 3), "run": run,
                              "throughput_ratio": round(run["throughput_fps"] * p50 / 1000.0, 3)})
    middle = sorted(round_results, key=lambda r: r["throughput_ratio"])[len(round_results) // 2]
    run_rows = [r["run"] for r in round_results]
    return {
        "threads": threads,
        "bare_invoke_p50_ms": middle["bare_invoke_p50_ms"],
        "bare_limit_fps": round(1000.0 / middle["bare_invoke_p50_ms"], 2),
        "run": middle["run"],
        "throughput_ratio": middle["throughput_ratio"],
        "first_result_s_median": round(median([r["first_result_s"] for r in run_rows]), 3),
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in run_rows),
        "rounds": round_results,
    }


def verdicts(row: dict) -> dict[str, bool]:
    return {
        "throughput_ratio": row["throughput_ratio"] >= TARGETS["throughput_ratio"],
        "first_result_s": row["first_result_s_median"] <= TARGETS["first_result_s"],
        "peak_rss_mb": row["peak_rss_mb_max"] <= TARGETS["peak_rss_mb"],
        "no_tensorflow": not any(r["run"]["tensorflow_imported"] for r in row["rounds"]),
    }


def print_table(rows: list[dict]) -> None:
    header = f"{'threads':>7} {'bare p50 ms':>11} {'limit fps':>9} {'run fps':>8} {'ratio':>6} " \
             f"{'1st result s':>12} {'peak RSS MB':>11} {'TF':>4}"
    print(header)
    for row in rows:
        run = row["run"]
        print(f"{row['threads']:>7} {row['bare_invoke_p50_ms']:>11.2f} {row['bare_limit_fps']:>9.1f} "
              f"{run['throughput_fps']:>8.1f} {row['throughput_ratio']:>6.3f} {row['first_result_s_median']:>12.3f} "
              f"{row['peak_rss_mb_max']:>11.1f} {'no' if row['verdicts']['no_tensorflow'] else 'yes':>4}")
    print("(median round by ratio; first result: median; peak RSS: max over rounds)")
    print(f"targets: ratio >= {TARGETS['throughput_ratio']}, first result <= {TARGETS['first_result_s']} s, "
          f"peak RSS <= {TARGETS['peak_rss_mb']:.0f} MB, TensorFlow never imported")
    for row in rows:
        failed = [name for name, ok in row["verdicts"].items() if not ok]
        print(f"threads {row['threads']}: {'all targets met' if not failed else 'MISSED: ' + ', '.join(failed)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: build MobileNetV2 1.0 224 once, cached)")
    parser.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts, e.g. 1,2")
    parser.add_argument("--frames", type=int, default=300, help="frames in the 640x480 test video")
    parser.add_argument("--runs", type=int, default=200, help="timed invokes per bare loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of run and bare loop per thread count")
    parser.add_argument("--out", type=Path, default=RESULTS / "run.json")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    model = args.model or RESULTS / "mobilenet_v2_1.0_224_int8.tflite"
    threads = sorted({int(t) for t in args.threads.split(",")})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "video_640x480.mp4"
        build = "-" if args.model else str(model)
        subprocess.run([sys.executable, "-c", PREPARE, str(ROOT.parent), build, str(video), str(args.frames)],
                       check=True)
        rows = []
        for t in threads:
            row = measure(model, video, t, args.runs, args.rounds, work)
            row["verdicts"] = verdicts(row)
            rows.append(row)
    print_table(rows)
    result = {
        "benchmark": "run",
        "model": str(model),
        "video": {"size": [640, 480], "frames": args.frames, "fps": 30.0},
        "cpu_count": os.cpu_count(),
        "targets": TARGETS,
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
