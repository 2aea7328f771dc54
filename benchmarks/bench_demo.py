"""Does `edgepipe demo` keep its promise? (foundation issue)

Runs the real `edgepipe demo` (offline: Keras cannot download here, so it
falls back to the ImageNet backbone shipped with edgepipe) in a temporary
work dir and reports its wall time (target: under 10 minutes on a laptop
CPU; here 2 cores) and its own held-out accuracy, float vs int8 (target:
int8 within 2 points of float). Prints a table; writes
benchmarks/results/demo.json.

    python benchmarks/bench_demo.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "demo"
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "edgepipe", "demo", "--workdir", str(work), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"edgepipe demo exited {proc.returncode}")
        summary = json.loads(proc.stdout)
    drop = 100 * (summary["accuracy_float"] - summary["accuracy_int8"])
    result = {
        "benchmark": "demo",
        "wall_s": round(wall, 1),
        "summary": summary,
        "int8_drop_points": round(drop, 2),
        "targets": {"wall_s": 600, "int8_drop_points": 2.0},
        "pass": wall <= 600 and drop <= 2.0,
        "load_average_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    rows = [
        ("demo wall time", f"{wall:.0f} s", "< 600 s"),
        ("held-out accuracy float / int8", f"{100 * summary['accuracy_float']:.1f}% / {100 * summary['accuracy_int8']:.1f}%"
         f" ({summary['heldout_n']} images)", "int8 >= float - 2 points"),
        ("int8 latency p50 / p99", f"{summary['latency_p50_ms']:.2f} / {summary['latency_p99_ms']:.2f} ms", ""),
        ("edgepipe run on 640x480 video", f"{summary['run_fps']:.0f} FPS", ""),
    ]
    for name, value, target in rows:
        print(f"{name:32} {value:36} {target}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'demo.json'}", file=sys.stderr)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
