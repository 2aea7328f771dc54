"""Does the default `edgepipe train` recipe meet its targets?

Runs the real command, default recipe, on ../shared/datasets/flowers12/train at
224x224 from ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 into
benchmarks/results/train_run/ (replaced on every run; the convert benchmark
reuses it as its input), then `edgepipe evaluate RUN --split val`, i.e. on the
stratified 20% of the folder the run held out. Targets: held-out accuracy
>= 95%, wall time of the whole train command <= 6 minutes on a 2-core CPU.
CPU time (user + system of the train process) is reported too: on a shared
machine it is the number that does not depend on other people's load.
Prints a table; writes benchmarks/results/train.json.

    python benchmarks/bench_train.py [--shared ../shared] [extra train flags...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUN = RESULTS / "train_run"
TARGET_ACCURACY = 0.95
TARGET_WALL_S = 360.0


def timed(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run a command; its wall seconds and the CPU seconds (user + sys) of it and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}")
    return proc, wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(os.environ.get("EDGEPIPE_SHARED", ROOT.parent / "shared")))
    args, extra = parser.parse_known_args()
    data = args.shared / "datasets" / "flowers12" / "train"
    weights = args.shared / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
    for path in (data, weights):
        if not path.exists():
            raise SystemExit(f"missing {path}: put ../shared beside the checkout or pass --shared")
    edgepipe = [sys.executable, "-m", "edgepipe"]
    train_cmd = [*edgepipe, "train", str(data), "--out", str(RUN), "--weights", str(weights), "--force", *extra]
    print("$ " + " ".join(train_cmd), file=sys.stderr)
    _, wall, cpu = timed(train_cmd)
    proc, eval_wall, _ = timed([*edgepipe, "evaluate", str(RUN), "--split", "val", "--json"])
    report = json.loads(proc.stdout)
    config = json.loads((RUN / "config.json").read_text())
    result = {
        "benchmark": "train",
        "command": " ".join(train_cmd[1:]),
        "data": str(data),
        "recipe": {k: config[k] for k in ("architecture", "alpha", "input_size", "epochs", "fine_tune_epochs",
                                          "fine_tune_layers_effective", "augment_copies", "learning_rate",
                                          "fine_tune_learning_rate", "optimizer", "batch_size", "seed")},
        "best": config["best"],
        "n_train": config["num_train"],
        "n_val": report["n"],
        "accuracy": report["accuracy"],
        "top_5": report["top_k"].get("5"),
        "macro_f1": report["macro_f1"],
        "train_wall_s": round(wall, 1),
        "train_cpu_s": round(cpu, 1),
        "evaluate_wall_s": round(eval_wall, 1),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "targets": {"accuracy": TARGET_ACCURACY, "train_wall_s": TARGET_WALL_S},
        "meets_targets": report["accuracy"] >= TARGET_ACCURACY and wall <= TARGET_WALL_S,
        "run_dir": str(RUN),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(result, indent=2))
    rows = [
        ("held-out accuracy", f"{result['accuracy']:.4f}", f">= {TARGET_ACCURACY}"),
        ("top-5 accuracy", f"{result['top_5']:.4f}", ""),
        ("macro F1", f"{result['macro_f1']:.4f}", ""),
        ("validation images", str(result["n_val"]), "20% stratified"),
        ("train wall time (s)", f"{wall:.1f}", f"<= {TARGET_WALL_S:.0f}"),
        ("train CPU time (s)", f"{cpu:.1f}", f"{os.cpu_count()} CPUs"),
        ("load average after", f"{result['load_average_1m_after']:.2f}", "idle ~0"),
    ]
    print(f"{'metric':<22} {'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<22} {value:>10}  {target}")
    print(f"wrote {RESULTS / 'train.json'}; model in {RUN}")
    return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
