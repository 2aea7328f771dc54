"""Does `edgepipe bench` tell the truth?

On the Coral-style int8 MobileNetV2 1.0 224 (benchmarks/models.py), in this
one process and at the same thread count:
- `edgepipe bench`'s p50 (the real CLI, `edgepipe.cli.main([... '--out', f])`)
  agrees within 5% with a bare `timeit` loop of `interpreter.invoke()` on a
  plain LiteRT interpreter (target);
- repeated bench runs agree within 5% on p50 (target);
- p50/p99 at 1 and 2 threads.
Bench and bare runs alternate, and "bench vs bare" is the median over
those pairs, so load from elsewhere on the machine hits both alike. Prints a table; writes benchmarks/results/bench.json.

    python benchmarks/bench_bench.py [--runs 200] [--repeats 3] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import mobilenet_v2_int8  # noqa: E402

from edgepipe.cli import main as edgepipe  # noqa: E402
from edgepipe.device.bench.report import render_table  # noqa: E402
from edgepipe.device.bench.sysinfo import environment  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODEL = RESULTS / "models" / "mobilenet_v2_1.0_224_int8.tflite"
TARGET = 0.05


def bench_cli(model: Path, threads: int, runs: int, warmup: int, out_dir: Path, tag: str) -> dict:
    """One `edgepipe bench` run through the real CLI; its result (the --out JSON)."""
    out = out_dir / f"bench-t{threads}-{tag}.json"
    with contextlib.redirect_stdout(io.StringIO()):
        code = edgepipe(["bench", str(model), "--threads", str(threads), "--runs", str(runs),
                         "--warmup", str(warmup), "--out", str(out)])
    if code != 0:
        raise SystemExit(f"edgepipe bench exited {code}")
    return json.loads(out.read_text())["results"][0]


def bare_invoke_p50(model: Path, threads: int, runs: int, warmup: int) -> float:
    """The physical reference: a plain interpreter, random uint8 input, timeit of invoke() alone (ms)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    data = np.random.default_rng(1).integers(0, 256, size=detail["shape"], dtype=np.uint8)
    interpreter.set_tensor(detail["index"], data)
    for _ in range(warmup + 1):
        interpreter.invoke()
    seconds = timeit.repeat(interpreter.invoke, number=1, repeat=runs)  # timeit disables gc, as bench does
    return statistics.median(seconds) * 1000


def spread(values: list[float]) -> float:
    """(max - min) / median of repeated p50s."""
    return (max(values) - min(values)) / statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    print(f"model: {mobilenet_v2_int8(MODEL)}", file=sys.stderr)
    load_before = os.getloadavg()

    rows, per_threads = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for threads in [int(t) for t in args.threads.split(",")]:
            bench, bare = [], []
            for repeat in range(args.repeats):
                print(f"threads={threads}: repeat {repeat + 1}/{args.repeats}", file=sys.stderr)
                bench.append(bench_cli(MODEL, threads, args.runs, args.warmup, Path(tmp), str(repeat)))
                bare.append(bare_invoke_p50(MODEL, threads, args.runs, args.warmup))
            bench_p50 = [r["latency_ms"]["p50"] for r in bench]
            bench_p99 = [r["latency_ms"]["p99"] for r in bench]
            # Each bench run is paired with the bare loop right after it, so a change in the
            # machine's load between pairs does not count against bench.
            agreement = abs(statistics.median(b / r for b, r in zip(bench_p50, bare)) - 1)
            repeatability = spread(bench_p50)
            per_threads[str(threads)] = {
                "bench_p50_ms": bench_p50,
                "bench_p99_ms": bench_p99,
                "bare_invoke_p50_ms": [round(v, 4) for v in bare],
                "bench_vs_bare": round(agreement, 4),
                "bench_repeat_spread": round(repeatability, 4),
                # The machine's own drift: if the bare loop varies as much, the spread is not bench's.
                "bare_repeat_spread": round(spread(bare), 4),
                "pass": agreement <= TARGET and repeatability <= TARGET,
            }
            rows.append([threads, statistics.median(bench_p50), statistics.median(bench_p99),
                         statistics.median(bare), f"{agreement:.1%}", f"{repeatability:.1%}",
                         f"{spread(bare):.1%}",
                         "yes" if per_threads[str(threads)]["pass"] else "NO"])

    print(render_table(
        ["threads", "bench p50 ms", "bench p99 ms", "bare invoke p50 ms", "bench vs bare", "repeat spread",
         "bare spread",
         f"both <= {TARGET:.0%}"],
        rows,
    ))
    result = {
        "benchmark": "bench",
        "model": "int8 MobileNetV2 1.0 224 (uint8 I/O), benchmarks/models.py",
        "runs": args.runs,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "target": {"bench_vs_bare": TARGET, "bench_repeat_spread": TARGET},
        "threads": per_threads,
        "pass": all(t["pass"] for t in per_threads.values()),
        "environment": environment(),
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }
    if max(result["load_average_before_after"]) > 0.5:
        print(f"note: the machine was busy (1-minute load {result['load_average_before_after']}); "
              "re-run on an idle machine for numbers to publish", file=sys.stderr)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'bench.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
