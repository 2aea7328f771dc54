"""Per-frame latency of `edgepipe run --workers 1 --threads 1` on a paced video, this checkout
against another (e.g. main before a change), alternated round by round.

A video paced to --fps (`--realtime`) below what one interpreter sustains behaves like a
camera: each frame is read, preprocessed and inferred while no other waits, so `total`
(capture start to result) is the latency a live user sees. Prints each checkout's medians
over rounds of the per-run p50 of every stage, and the CPU time per frame.

    python benchmarks/bench_run_latency.py MODEL VIDEO --other /work/main [--rounds 3] [--fps 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from checkouts import RUN, checkout_python  # noqa: E402  (a sibling module of this script)


def paced_run(checkout: Path, model: str, video: str, fps: float, frames: int, stats: Path) -> dict:
    argv = [checkout_python(checkout), "-c", RUN, "run", model, "--source", video, "--workers", "1", "--threads", "1",
            "--realtime", "--fps", str(fps), "--max-frames", str(frames), "--json", "--stats-interval", "0",
            "--stats-json", str(stats)]
    stats.unlink(missing_ok=True)
    proc = subprocess.Popen(argv, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"edgepipe run failed in {checkout}:\n{err}")
    summary = json.loads(stats.read_text())
    row = {stage: v["p50"] for stage, v in summary["latency_ms"].items()}
    row["cpu_ms_per_frame_with_startup"] = (usage.ru_utime + usage.ru_stime) * 1000 / summary["frames"]
    row["dropped"] = summary["dropped"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("video")
    parser.add_argument("--other", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    checkouts = {"this": ROOT.parent, "other": args.other}
    rows: dict[str, list[dict]] = {name: [] for name in checkouts}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name, checkout in checkouts.items():
                rows[name].append(paced_run(checkout, args.model, args.video, args.fps, args.frames,
                                            Path(tmp) / "stats.json"))
    print(f"--workers 1 --threads 1, {args.frames} frames paced at {args.fps:g} fps, medians of {args.rounds} rounds "
          f"of per-run p50 (ms); load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}")
    for name, checkout in checkouts.items():
        med = {key: statistics.median(r[key] for r in rows[name]) for key in rows[name][0]}
        print(f"{name} ({checkout}): " + ", ".join(f"{k} {v:.2f}" for k, v in med.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
