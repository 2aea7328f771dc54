"""Benchmark of `edgepipe run` with a detector: throughput against the model's bare limit, the cost of
the tracker and the outputs, and that `run --json`'s boxes score the mAP that evaluating them gives.

The detector is the trained int8 raccoon SSDLite (320x320, ends in
TFLite_Detection_PostProcess): a bundle, or --model/--labels. The video is the
40 raccoon test photos of ../shared, each stretched to 640x480 and held for
--hold frames (MJPG-like mp4v, decoded as a camera's frames would be).

  - throughput: `edgepipe run --workers 2 --threads 1 --json` (stdout to a pipe, as a
    service's journal) over the video, against back-to-back `invoke()` loops of the same model, on the
    video's first frame (its NMS costs what it does in run), on the same cores (the best of 2x1 and 1x2
    interpreters x threads), interleaved
    for --rounds rounds; the ratio is each round's run over that round's best bare rate,
    median over rounds. Target >= 0.85.
  - tracker + outputs: the emitting thread's own CPU per frame for decoding the detector's
    outputs, tracking (with two zones), the JSON line, Prometheus' observe and the MQTT
    states computed (no broker: their cost, not the network's), as a share of the frame time
    at the measured run rate. Target <= 5 %.
  - mAP: `run --json --threshold 0.01` over the 40 photos held one frame each against the
    COCO evaluator fed the same decoded frames through the device's own detect(); they must
    agree within 0.01 (they share preprocessing and postprocess op, so they should be equal).

    python benchmarks/bench_detect_run.py [--bundle B | --model M --labels L] [--rounds 3]
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

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT.parent), str(ROOT.parent / "tests")]  # benchmarks/, and the detection tests' photo helpers
from raccoon_data import DETECT_SAMPLE, RACCOON, VIDEO_SIZE, raccoon_truth, write_raccoon_video  # noqa: E402

from benchmarks.bench_run import bare_loop, load_average  # noqa: E402

TARGETS = {"throughput_ratio": 0.85, "tracker_outputs_share": 0.05, "map_difference": 0.01}
RESULTS = ROOT / "results"


def run_json(model_args: list[str], video: Path, flags: list[str]) -> tuple[list[dict], dict]:
    """`edgepipe run ... --json` in a child: its rows and its --stats-json summary."""
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        proc = subprocess.run([sys.executable, "-m", "edgepipe", "run", *model_args, "--source", str(video),
                               "--accelerator", "cpu", "--json", "--stats-interval", "0", "--stats-json", str(stats),
                               *flags], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"edgepipe run failed ({proc.returncode}):\n{proc.stderr}")
        return [json.loads(line) for line in proc.stdout.splitlines()], json.loads(stats.read_text())


def tracker_outputs_ms(detector, video: Path) -> float:
    """CPU ms per frame of what the emitting thread does for a detector besides waiting for results."""
    from edgepipe.device.model.postprocess import Detection  # noqa: F401 - documents what is decoded
    from edgepipe.device.run.regions import parse_region, region_boxes
    from edgepipe.device.run.results import FrameResult
    from edgepipe.device.run.sink import RunInfo
    from edgepipe.device.run.tracker import Tracker
    from edgepipe.device.sinks.metrics import RunMetrics
    from edgepipe.device.sinks.mqtt import states, topic_names

    zones = [parse_region("gate=0,0,0.5,1"), parse_region("lawn=0.5,0,0.5,1")]
    run = RunInfo("bench", None, "model.tflite", "cpu", "litert", 1, tuple(detector.labels), lambda r, c: None,
                  regions=("gate", "lawn"), detector=True)
    metrics, tracker, slugs = RunMetrics(), Tracker(), topic_names(run.labels)
    metrics.start(run)
    capture = cv2.VideoCapture(str(video))
    outputs = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        outputs.append((frame, detector.invoke(detector.preprocess(frame))))
    started = time.process_time()
    for index, (frame, raw) in enumerate(outputs):
        size = (frame.shape[1], frame.shape[0])
        boxes = region_boxes(zones, *size)
        tracked = tracker.update(detector.detections(raw, size), boxes)
        result = FrameResult(index, time.time(), [], {"inference": 1.0}, 10.0, None, frame, boxes=boxes,
                             detections=tracked.detections, counts=tracked.counts, zones=tracked.zones,
                             events=tracked.events)
        json.dumps(result.to_json())
        metrics.observe(result)
        states("cam", result, run, slugs)
    return (time.process_time() - started) * 1000.0 / len(outputs)


def frame_truth(names: list[str]) -> list:
    """The true boxes of each photo, in the video's 640x480 pixels, as the evaluator's BoxedImages."""
    from edgepipe.train.detect.boxes import BoxedImage

    truth = raccoon_truth()
    images = []
    for name in names:
        w, h = (int(v) for v in cv2.imread(str(RACCOON / "images" / name)).shape[1::-1])
        sx, sy = VIDEO_SIZE[0] / w, VIDEO_SIZE[1] / h
        boxes = np.array([[x0 * sx, y0 * sy, x1 * sx, y1 * sy] for x0, y0, x1, y1 in truth[name]], np.float32)
        images.append(BoxedImage(Path(name), VIDEO_SIZE[0], VIDEO_SIZE[1], boxes, np.zeros(len(boxes), np.int32)))
    return images


def map_agreement(model_args: list[str], detector, work: Path) -> dict:
    from edgepipe.train.detect.metrics import PredictedBox, evaluate_detections

    video = work / "test-photos.mp4"
    write_raccoon_video(video, photos=40, hold=1)
    names = sorted(raccoon_truth())[:40]
    truth = frame_truth(names)
    rows, _ = run_json(model_args, video, ["--threshold", "0.01", "--workers", "2", "--threads", "1"])
    from_run = [[PredictedBox(d["index"], d["score"], *d["box"]) for d in row["detections"]] for row in rows]
    capture, from_eval = cv2.VideoCapture(str(video)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        from_eval.append([PredictedBox(d.index, d.score, *d.box) for d in detector.detect(frame)])
    run_map = evaluate_detections(truth, from_run, detector.labels).map50
    eval_map = evaluate_detections(truth, from_eval, detector.labels).map50
    return {"frames": len(rows), "run_json_map50": round(run_map, 4), "evaluate_map50": round(eval_map, 4),
            "difference": round(abs(run_map - eval_map), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--model", type=Path, default=DETECT_SAMPLE / "model.tflite")
    parser.add_argument("--labels", type=Path, default=DETECT_SAMPLE / "labels.txt")
    parser.add_argument("--hold", type=int, default=4, help="frames each photo is held in the throughput video")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each bare invoke loop")
    args = parser.parse_args()
    from edgepipe.device.model.classifier import open_classifier
    from edgepipe.device.model.detect_postprocess import DetectOptions

    model_args = [str(args.bundle)] if args.bundle else [str(args.model), "--labels", str(args.labels)]
    model_file = args.bundle / "model.tflite" if args.bundle else args.model
    detector = open_classifier(args.bundle or args.model, labels=None if args.bundle else args.labels,
                               accelerator="cpu", threads=2, detect=DetectOptions(score_threshold=0.01))
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "raccoons.mp4"
        write_raccoon_video(video, photos=40, hold=args.hold)
        ok, frame = cv2.VideoCapture(str(video)).read()
        tensor = work / "frame.npy"  # the bare loops invoke on a real frame: the op's NMS costs what it does in run
        np.save(tensor, detector.preprocess(frame))
        rounds = []
        for _ in range(args.rounds):
            bare = {f"{w}x{t}": bare_loop(model_file, w, t, args.seconds, tensor)["per_s"] for w, t in ((2, 1), (1, 2))}
            _, summary = run_json(model_args, video, ["--workers", "2", "--threads", "1", "--roi", "gate=0,0,0.5,1",
                                                      "--roi", "lawn=0.5,0,0.5,1"])
            rounds.append({"bare_per_s": bare, "run_fps": summary["fps"], "frames": summary["frames"],
                           "ratio": round(summary["fps"] / max(bare.values()), 3),
                           "postprocess_p50_ms": summary["latency_ms"]["postprocess"]["p50"]})
        ratio = statistics.median(r["ratio"] for r in rounds)
        run_fps = statistics.median(r["run_fps"] for r in rounds)
        outputs_ms = tracker_outputs_ms(detector, video)
        share = outputs_ms * run_fps / 1000.0
        agreement = map_agreement(model_args, detector, work)
    report = {
        "model": str(model_file), "video": f"40 raccoon test photos, 640x480, {args.hold} frames each",
        "load_average_before": load_before, "load_average_after": load_average(), "cores": os.cpu_count(),
        "rounds": rounds, "throughput_ratio": ratio, "run_fps": run_fps,
        "tracker_outputs_ms_per_frame": round(outputs_ms, 3), "tracker_outputs_share": round(share, 4),
        "map": agreement, "targets": TARGETS,
        "met": {"throughput_ratio": ratio >= TARGETS["throughput_ratio"],
                "tracker_outputs_share": share <= TARGETS["tracker_outputs_share"],
                "map_difference": agreement["difference"] <= TARGETS["map_difference"]},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_detect_run.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
