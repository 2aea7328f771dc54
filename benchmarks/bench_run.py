"""Benchmark of `edgepipe run` against the limit of the model on this machine (issue 26).

For an int8 image model (default: MobileNetV2 1.0 224 with uint8 I/O, built once;
--model for another, e.g. Coral's mobilenet_v2_1.0_224_quant.tflite) and a 640x480
MJPG video (real photos from flowers12 when ../shared is present, else synthetic
shapes), each measurement in a fresh subprocess, alternating for --rounds rounds so
that load drifting on a shared machine hits every setting alike. Each round:
  - bare invoke: back-to-back `interpreter.invoke()` loops, no decoding, all
    interpreters at once (1x1, 1x2 and 2x1 on 2 cores: interpreters x threads),
    each interleaved with a run; wall throughput and CPU ms per inference;
  - bare capture: OpenCV decoding the video and preprocessing every frame (the
    shared definition, straight into an input tensor) in one thread: CPU ms per frame;
    and the same with each JPEG decoded at the reduced size `run` decodes it at when
    only the model sees the frames (device/run/sources.py);
  - run: `edgepipe run MODEL --source video.avi` with default flags (--workers
    auto, measured once into a fresh cache, then read from it), with
    `--workers 1 --threads 1`, and the explicit 2x1 and 1x2 for the curve:
    throughput (frames / duration from --stats-json), p50/p99 of `total`
    latency (capture start to result), CPU ms per frame (the child's CPU time less
    that of the same command stopped after one frame, i.e. without its start-up),
    peak RSS, time to the first result, whether TensorFlow was imported.
The limit (issue 26) is what the cores can do counting the decode no pipeline
avoids: cores / (core time per inference at the best bare rate, best of 1x2 and
2x1, + decode + preprocess CPU per frame). Each run is reported as a fraction of
that limit and of the best bare rate (each round's run against the same round's
loops; medians over rounds). The CPU view, steadier than wall-clock fps on a
shared machine: bare CPU per frame (CPU per inference of the run's own
workers x threads loop + decode + preprocess) over run's CPU per frame.
The same limit with run's own reduced decode in place of the whole decode (limit') is
the stricter measure of what the pipeline around the interpreters costs; both are reported.
Targets: run / limit >= 0.95 and run / best bare >= 0.82 with default flags,
peak RSS <= 200 MB, TensorFlow never imported.

    python benchmarks/bench_run.py [--model M.tflite] [--frames 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

RESULTS = ROOT / "results"
TARGETS = {"ratio_vs_limit": 0.95, "ratio_vs_best_bare": 0.82, "peak_rss_mb": 200.0}
HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")
BARE = ((1, 1), (1, 2), (2, 1))  # (interpreters, threads each)
# (name, extra flags of `edgepipe run`)
SETTINGS = (
    ("default (--workers auto)", []),
    ("--workers 1 --threads 1", ["--workers", "1", "--threads", "1"]),
    ("--workers 2 --threads 1", ["--workers", "2", "--threads", "1"]),
    ("--workers 1 --threads 2", ["--workers", "1", "--threads", "2"]),
)

# Every interpreter in its own thread (LiteRT releases the GIL in invoke), all starting together.
BARE_LOOP = """
import json, sys, threading, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
model, workers, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
given = np.load(sys.argv[5]) if len(sys.argv) > 5 else None  # a real frame's tensor: a detector's NMS depends on it
interpreters = []
for _ in range(workers):
    interpreter = Interpreter(model_path=model, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    pixels = given if given is not None else np.random.default_rng(0).integers(
        0, 256, detail["shape"], dtype=np.uint8).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], pixels)
    for _ in range(10):
        interpreter.invoke()
    interpreters.append(interpreter)
counts = [0] * workers
barrier = threading.Barrier(workers + 1)
cpu0 = time.process_time()
def loop(i):
    barrier.wait()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        interpreters[i].invoke()
        counts[i] += 1
pool = [threading.Thread(target=loop, args=(i,)) for i in range(workers)]
for t in pool:
    t.start()
barrier.wait()
start = time.perf_counter()
for t in pool:
    t.join()
print(json.dumps({"per_s": sum(counts) / (time.perf_counter() - start),
                  "cpu_ms_per_inference": (time.process_time() - cpu0) * 1000 / sum(counts)}))
"""

# Decode, then preprocess every frame straight into an input tensor, in one thread: CPU ms per frame, for
# whole frames (OpenCV's own decoding) and for frames decoded as `run` decodes them when only the model sees
# them (device/run/sources.py: each JPEG at 1/2, 1/4 or 1/8 size when the preprocessing allows).
CAPTURE_LOOP = """
import json, sys, time
import cv2
cv2.setNumThreads(1)
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.preprocess import frame_block_factor
from edgepipe.device.run.sources import OpenCVSource
clf = open_classifier(sys.argv[1], threads=1)

def cost(shrunk):
    source = OpenCVSource(sys.argv[2], live=False)
    if shrunk:
        source.shrink_for(lambda w, h: frame_block_factor(w, h, clf.input_spec))
    source.open()
    frames, decode, preprocess = 0, 0.0, 0.0
    while True:
        t0 = time.process_time()
        frame = source.read()
        t1 = time.process_time()
        if frame is None:
            break
        clf.load_frame(frame)
        preprocess += time.process_time() - t1
        decode += t1 - t0
        frames += 1
    source.close()
    return decode * 1000 / frames, preprocess * 1000 / frames, source.reduction

decode, preprocess, _ = cost(False)
shrunk_decode, shrunk_preprocess, reduction = cost(True)
print(json.dumps({"decode_ms": decode, "preprocess_ms": preprocess, "shrunk_decode_ms": shrunk_decode,
                  "shrunk_preprocess_ms": shrunk_preprocess, "reduction": reduction}))
"""

# `edgepipe run` exactly as the console script runs it, reporting afterwards which heavy modules got imported.
RUN_WRAPPER = """
import json, sys
from edgepipe.cli import main
code = main(sys.argv[1:])
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
sys.stderr.write("CHILD_REPORT " + json.dumps({"heavy": heavy}) + "\\n")
sys.exit(code)
""" % (HEAVY,)

PREPARE = """
import sys
sys.path.insert(0, sys.argv[1])
from benchmarks.models import PHOTOS, mobilenet_v2_int8
from benchmarks.video import write_photo_video
model, video, frames = sys.argv[2], sys.argv[3], int(sys.argv[4])
if model != "-":
    mobilenet_v2_int8(model)
print(write_photo_video(video, PHOTOS, frames=frames))
"""


def bare_loop(model: Path, workers: int, threads: int, seconds: float, tensor: Path | None = None) -> dict[str, float]:
    """Bare invoke() throughput (per_s) and CPU ms per inference (cpu_ms_per_inference); on random pixels,
    or on `tensor` (a .npy input: a detector's NMS costs what its real frames make it cost)."""
    extra = [str(tensor)] if tensor is not None else []
    out = subprocess.run([sys.executable, "-c", BARE_LOOP, str(model), str(workers), str(threads), str(seconds),
                          *extra], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def capture_cost(model: Path, video: Path) -> dict[str, float]:
    """CPU ms per frame of decoding and of preprocessing (a raw camera such as Picamera2 has no decoding)."""
    out = subprocess.run([sys.executable, "-c", CAPTURE_LOOP, str(model), str(video)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def edgepipe_run(model: Path, video: Path, flags: list[str], work: Path, cache: Path) -> dict:
    stats = work / "stats.json"
    stats.unlink(missing_ok=True)
    argv = [sys.executable, "-c", RUN_WRAPPER, "run", str(model), "--source", str(video), *flags,
            "--json", "--stats-interval", "0", "--stats-json", str(stats)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    first_line = proc.stdout.readline()
    first_result_s = time.perf_counter() - started
    frames = [json.loads(first_line)["frame"]] + [json.loads(line)["frame"] for line in proc.stdout]
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"edgepipe run failed ({code}):\n{err}")
    summary = json.loads(stats.read_text())
    child = json.loads(err.split("CHILD_REPORT ")[1].splitlines()[0])
    auto = [line.split("--workers auto: ", 1)[1] for line in err.splitlines() if "--workers auto: " in line]
    return {
        "frames": summary["frames"],
        "in_order": frames == sorted(frames) and len(frames) == summary["frames"],
        "workers": summary["workers"],
        "threads": summary["threads"],
        "auto_choice": auto[0] if auto else None,
        "throughput_fps": summary["fps"],
        "total_p50_ms": summary["latency_ms"]["total"]["p50"],
        "total_p99_ms": summary["latency_ms"]["total"]["p99"],
        "stage_p50_ms": {stage: v["p50"] for stage, v in summary["latency_ms"].items()},
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "first_result_s": round(first_result_s, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
        "tensorflow_imported": bool(child["heavy"]),
        "dropped": summary["dropped"],
    }


def run_cpu_ms_per_frame(model: Path, video: Path, flags: list[str], work: Path, cache: Path, run: dict) -> float:
    """The run's CPU per frame without its start-up: less the CPU of the same command stopped after one frame."""
    startup = edgepipe_run(model, video, [*flags, "--max-frames", "1"], work, cache)
    return (run["cpu_s"] - startup["cpu_s"]) * 1000 / max(1, run["frames"] - 1)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def limit_fps(best_bare: float, capture_ms: float, cores: int) -> float:
    """Issue 26's limit: the cores' time per frame is an inference at the best bare rate plus decode and preprocess."""
    return cores / (cores / best_bare + capture_ms / 1000.0)


def one_round(model: Path, video: Path, seconds: float, work: Path, cache: Path, cores: int, number: int) -> dict:
    """Bare loops, bare capture and runs interleaved (bare, run, bare, run, ...) so drift hits all alike.

    The settings' order turns by one each round (round `number`), so that no setting always runs
    first, or always after the same bare loop: on a virtual machine, a run right after a two-core
    loop was seen to be about 10% slower than the same run after a one-core loop."""
    bare: dict[str, list[dict[str, float]]] = {f"{w}x{t}": [] for w, t in BARE}
    runs: dict[str, dict] = {}
    capture = capture_cost(model, video)
    turn = number % len(SETTINGS)
    for i, (name, flags) in enumerate(SETTINGS[turn:] + SETTINGS[:turn]):
        w, t = BARE[i % len(BARE)]
        bare[f"{w}x{t}"].append(bare_loop(model, w, t, seconds))
        runs[name] = edgepipe_run(model, video, flags, work, cache)
        runs[name]["cpu_ms_per_frame"] = round(run_cpu_ms_per_frame(model, video, flags, work, cache, runs[name]), 3)
    for w, t in BARE:
        if not bare[f"{w}x{t}"]:
            bare[f"{w}x{t}"].append(bare_loop(model, w, t, seconds))
    rates = {key: statistics.median(v["per_s"] for v in values) for key, values in bare.items()}
    cpu = {key: statistics.median(v["cpu_ms_per_inference"] for v in values) for key, values in bare.items()}
    best = max(rates["1x2"], rates["2x1"])
    limit = limit_fps(best, capture["decode_ms"] + capture["preprocess_ms"], cores)
    shrunk_ms = capture["shrunk_decode_ms"] + capture["shrunk_preprocess_ms"]  # what these runs decode
    shrunk_limit = limit_fps(best, shrunk_ms, cores)
    for run in runs.values():
        run["ratio_vs_limit"] = round(run["throughput_fps"] / limit, 3)
        run["ratio_vs_shrunk_limit"] = round(run["throughput_fps"] / shrunk_limit, 3)
        run["ratio_vs_best_bare"] = round(run["throughput_fps"] / best, 3)
        own = f"{run['workers']}x{run['threads']}"
        bare_cpu = cpu.get(own, min(cpu.values())) + shrunk_ms
        run["cpu_ratio"] = round(bare_cpu / run["cpu_ms_per_frame"], 3)
    return {"bare_per_s": {k: round(v, 2) for k, v in rates.items()},
            "bare_cpu_ms_per_inference": {k: round(v, 3) for k, v in cpu.items()},
            "best_bare_per_s": round(best, 2), "capture_cpu_ms_per_frame": {k: round(v, 3) for k, v in capture.items()},
            "limit_fps": round(limit, 2), "shrunk_limit_fps": round(shrunk_limit, 2), "runs": runs,
            "load_average": load_average()}


def summarise(rounds: list[dict], cores: int) -> dict:
    def med(values):
        return round(statistics.median(values), 3)

    rows = {}
    for name, _ in SETTINGS:
        per_round = [r["runs"][name] for r in rounds]
        rows[name] = {
            "workers": per_round[-1]["workers"],
            "threads": per_round[-1]["threads"],
            "auto_choice": per_round[0]["auto_choice"],
            **{key: med(r[key] for r in per_round) for key in (
                "throughput_fps", "ratio_vs_limit", "ratio_vs_shrunk_limit", "ratio_vs_best_bare", "cpu_ms_per_frame", "cpu_ratio",
                "total_p50_ms", "total_p99_ms", "first_result_s")},
            "stage_p50_ms": {stage: med(r["stage_p50_ms"][stage] for r in per_round)
                             for stage in per_round[0]["stage_p50_ms"]},
            "peak_rss_mb": max(r["peak_rss_mb"] for r in per_round),
            "in_order": all(r["in_order"] for r in per_round),
            "tensorflow_imported": any(r["tensorflow_imported"] for r in per_round),
        }
    keys = rounds[0]["bare_per_s"]
    return {"cores": cores,
            "bare_per_s": {k: med(r["bare_per_s"][k] for r in rounds) for k in keys},
            "bare_cpu_ms_per_inference": {k: med(r["bare_cpu_ms_per_inference"][k] for r in rounds) for k in keys},
            "best_bare_per_s": med(r["best_bare_per_s"] for r in rounds),
            "capture_cpu_ms_per_frame": {k: med(r["capture_cpu_ms_per_frame"][k] for r in rounds)
                                         for k in rounds[0]["capture_cpu_ms_per_frame"]},
            "limit_fps": med(r["limit_fps"] for r in rounds),
            "shrunk_limit_fps": med(r["shrunk_limit_fps"] for r in rounds),
            "settings": rows}


def print_table(summary: dict) -> None:
    bare, cpu = summary["bare_per_s"], summary["bare_cpu_ms_per_inference"]
    best = summary["best_bare_per_s"]
    cost = summary["capture_cpu_ms_per_frame"]
    print("bare invoke(), inferences/s and CPU ms per inference (interpreters x threads): "
          + ", ".join(f"{k} {v:.1f}/s {cpu[k]:.2f} ms" for k, v in bare.items())
          + f"; best {best:.1f}/s = {summary['cores'] * 1000 / best:.2f} ms of core time")
    print(f"bare decode {cost['decode_ms']:.2f} + bare preprocess {cost['preprocess_ms']:.2f} ms CPU per frame; "
          f"limit {summary['cores']} cores / ({summary['cores'] * 1000 / best:.2f} + {cost['decode_ms']:.2f} + "
          f"{cost['preprocess_ms']:.2f} ms) = {summary['limit_fps']:.1f} fps = "
          f"{summary['limit_fps'] / best:.3f} of the best bare rate (a run at 0.95 of the limit is "
          f"{0.95 * summary['limit_fps'] / best:.3f} of bare)")
    print(f"run decodes each JPEG at 1/{cost['reduction']:.0f} size when only the model sees the frames: decode "
          f"{cost['shrunk_decode_ms']:.2f} + preprocess {cost['shrunk_preprocess_ms']:.2f} ms; the same limit with "
          f"that decode: {summary['shrunk_limit_fps']:.1f} fps (/limit' below)")
    shrunk = "/limit'"
    print(f"{'setting':<26} {'w x t':>5} {'run fps':>8} {'/limit':>7} {shrunk:>7} {'/best bare':>10} {'CPU ms/fr':>9} "
          f"{'bare/run CPU':>12} {'total p50':>9} {'p99 ms':>7} {'RSS MB':>7} {'1st s':>6} {'order':>5}")
    for name, row in summary["settings"].items():
        print(f"{name:<26} {row['workers']}x{row['threads']:<3} {row['throughput_fps']:>8.1f} "
              f"{row['ratio_vs_limit']:>7.3f} {row['ratio_vs_shrunk_limit']:>7.3f} {row['ratio_vs_best_bare']:>10.3f} "
              f"{row['cpu_ms_per_frame']:>9.2f} "
              f"{row['cpu_ratio']:>12.3f} {row['total_p50_ms']:>9.1f} {row['total_p99_ms']:>7.1f} "
              f"{row['peak_rss_mb']:>7.1f} {row['first_result_s']:>6.2f} {'yes' if row['in_order'] else 'NO':>5}")
        print(f"{'':<26} stage p50 ms: " + ", ".join(f"{k} {v:.2f}" for k, v in row["stage_p50_ms"].items()))
    auto = summary["settings"][SETTINGS[0][0]]["auto_choice"]
    print(f"--workers auto said: {auto}")
    print(f"targets (default flags): run / limit >= {TARGETS['ratio_vs_limit']}, run / best bare >= "
          f"{TARGETS['ratio_vs_best_bare']}; peak RSS <= {TARGETS['peak_rss_mb']:.0f} MB; medians over rounds, RSS the max")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: build MobileNetV2 1.0 224 once, cached)")
    parser.add_argument("--frames", type=int, default=300, help="frames in the 640x480 test video")
    parser.add_argument("--bare-seconds", type=float, default=2.0, help="length of each bare loop")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternated bare loops and runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "run.json")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    model = args.model or RESULTS / "mobilenet_v2_1.0_224_int8.tflite"
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "video_640x480.avi"
        build = "-" if args.model else str(model)
        content = subprocess.run([sys.executable, "-c", PREPARE, str(ROOT.parent), build, str(video), str(args.frames)],
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        cores = len(os.sched_getaffinity(0))
        rounds = []
        for i in range(args.rounds):
            rounds.append(one_round(model, video, args.bare_seconds, work, work / "cache", cores, i))
            print(f"round {i + 1}/{args.rounds}: limit {rounds[-1]['limit_fps']:.1f} fps, best bare "
                  f"{rounds[-1]['best_bare_per_s']:.1f}/s, " + ", ".join(
                      f"{n}: {r['throughput_fps']:.1f} fps ({r['ratio_vs_limit']:.3f})" for n, r in rounds[-1]["runs"].items()),
                  file=sys.stderr, flush=True)
    load_after = load_average()
    summary = summarise(rounds, cores)
    print_table(summary)
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}")
    result = {
        "benchmark": "run",
        "model": str(model),
        "video": {"size": [640, 480], "frames": args.frames, "fps": 30.0, "codec": "MJPG", "content": content},
        "cores": cores,
        "load_average": {"before": load_before, "after": load_after},
        "targets": TARGETS,
        "summary": summary,
        "rounds": rounds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
