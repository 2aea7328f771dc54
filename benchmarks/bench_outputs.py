"""What publishing results costs `edgepipe run`: MQTT + the web page vs nothing.

For an int8 MobileNetV2 1.0 224 (uint8 I/O) and a 640x480 video file, each run
in a fresh subprocess, same video, same --threads, alternating for --rounds
rounds (plain, outputs, plain, outputs, ...) so that load drifting on a shared
machine hits both sides alike:
  - plain:   edgepipe run MODEL --source video.mp4 --threads T
  - outputs: the same with --mqtt (a real Mosquitto on 127.0.0.1, a result
             message per frame: --mqtt-rate 1000) and --serve (one client
             reading /stream.mjpg for the whole run, as a browser would)
Throughput is frames / duration from each run's --stats-json; the reported
ratio is median(outputs) / median(plain). Target (issue 12): >= 0.95.

Latency from frame capture to the MQTT message arriving at a subscriber on
the same machine: a --realtime run (paced like a camera at the video's 30 fps)
publishing every result; a subscriber takes arrival time - the result's `ts`
(the capture's wall-clock time). p50 and p99 over every message.

    python benchmarks/bench_outputs.py [--model M.tflite] [--threads 2] [--frames 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from mqtt_broker import Mosquitto, Subscriber  # noqa: E402  (the tests' real-broker helper)

RESULTS = HERE / "results"
TARGET_RATIO = 0.95
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
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def watch_stream(url: str, stop: threading.Event, counts: dict) -> None:
    """One MJPEG client: read the stream until the run ends."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            while not stop.is_set():
                chunk = response.read(65536)
                if not chunk:
                    break
                counts["bytes"] += len(chunk)
    except OSError:
        pass  # the run ended and closed the stream


def edgepipe_run(model: Path, video: Path, threads: int, work: Path, extra: list[str]) -> dict:
    stats = work / "stats.json"
    stats.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "edgepipe", "run", str(model), "--source", str(video), "--threads", str(threads),
            "--json", "--stats-interval", "0", "--stats-json", str(stats), *extra]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop, counts, watcher = threading.Event(), {"bytes": 0}, None
    err_lines = []
    for line in proc.stderr:  # the serving line comes before the first frame
        err_lines.append(line)
        served = re.search(r"serving (http://\S+/)", line)
        if served:
            watcher = threading.Thread(target=watch_stream, args=(served.group(1) + "stream.mjpg", stop, counts))
            watcher.start()
            break
        if "--serve" not in extra:
            break
    err_lines += proc.stderr.readlines()
    if proc.wait() != 0:
        raise SystemExit(f"edgepipe run failed:\n{''.join(err_lines)}")
    stop.set()
    if watcher:
        watcher.join(timeout=10)
    summary = json.loads(stats.read_text())
    return {"fps": summary["fps"], "frames": summary["frames"], "mjpeg_bytes": counts["bytes"],
            "mqtt": summary.get("mqtt"), "serve": summary.get("serve")}


def measure_latency(model: Path, video: Path, threads: int, work: Path, broker: Mosquitto) -> dict:
    arrivals: list[float] = []
    subscriber = Subscriber(broker.port, ["bench/latency/result"])
    subscriber.client.on_message = lambda c, u, m: arrivals.append(time.time() - json.loads(m.payload)["ts"])
    time.sleep(0.5)  # let the subscription reach the broker before the run starts
    run = edgepipe_run(model, video, threads, work, ["--realtime", "--mqtt-rate", "1000", "--no-ha-discovery",
                                                     "--mqtt", f"mqtt://127.0.0.1:{broker.port}/bench/latency"])
    deadline = time.monotonic() + 5
    while len(arrivals) < run["mqtt"]["published"] and time.monotonic() < deadline:
        time.sleep(0.05)
    subscriber.close()
    ms = [a * 1000 for a in arrivals]
    return {"messages": len(ms), "frames": run["frames"], "p50_ms": round(percentile(ms, 50), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="an int8 .tflite (default: build MobileNetV2 1.0 224 once, cached)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--frames", type=int, default=300, help="frames in the 640x480 test video")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of plain and outputs runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "outputs.json")
    args = parser.parse_args()

    RESULTS.mkdir(parents=True, exist_ok=True)
    model = args.model or RESULTS / "mobilenet_v2_1.0_224_int8.tflite"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        video = work / "video_640x480.mp4"
        subprocess.run([sys.executable, "-c", PREPARE, str(HERE.parent), "-" if args.model else str(model),
                        str(video), str(args.frames)], check=True)
        broker = Mosquitto(work).start()
        try:
            outputs = ["--mqtt", f"mqtt://127.0.0.1:{broker.port}/bench/cam", "--mqtt-rate", "1000",
                       "--serve", "127.0.0.1:0"]
            plain, published = [], []
            for _ in range(args.rounds):
                plain.append(edgepipe_run(model, video, args.threads, work, []))
                published.append(edgepipe_run(model, video, args.threads, work, outputs))
            latency = measure_latency(model, video, args.threads, work, broker)
        finally:
            broker.stop()
    plain_fps = percentile([r["fps"] for r in plain], 50)
    outputs_fps = percentile([r["fps"] for r in published], 50)
    report = {
        "threads": args.threads, "frames": args.frames, "rounds": args.rounds,
        "plain_fps_median": plain_fps, "outputs_fps_median": outputs_fps,
        "ratio": round(outputs_fps / plain_fps, 3), "target_ratio": TARGET_RATIO,
        "plain": plain, "outputs": published, "mqtt_latency": latency,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for name, rows, fps in (("plain  ", plain, plain_fps), ("outputs", published, outputs_fps)):
        print(f"{name} fps per round: " + ", ".join(f"{r['fps']:.1f}" for r in rows) + f"  (median {fps:.2f})")
    print(f"MJPEG bytes read per outputs run: {', '.join(str(r['mjpeg_bytes']) for r in published)}")
    print(f"ratio outputs/plain: {report['ratio']:.3f} (target >= {TARGET_RATIO}): "
          + ("met" if report["ratio"] >= TARGET_RATIO else "MISSED"))
    print(f"capture -> MQTT message at a subscriber (--realtime, {latency['messages']} messages of "
          f"{latency['frames']} frames): p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms, "
          f"max {latency['max_ms']:.1f} ms")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
