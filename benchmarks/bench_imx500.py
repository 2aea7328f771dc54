"""Does `edgepipe convert --imx500` make a model that fits the AI Camera and keeps the accuracy?

On the flowers run trained with defaults (benchmarks/results/train_run/, made by
benchmarks/bench_train.py when missing; or --run RUN), this script:
1. makes (or finds) the Sony venv and reports its time and disk cost (first use only);
2. runs the real command `edgepipe convert RUN --out benchmarks/results/imx500_bundle
   --method ptq --imx500 --json --force` and reports its wall time;
3. reads, from bundle.json, the converter's memory report (target: fits the sensor's memory)
   and the simulated-sensor accuracy on the run's held-out split (the MCT model fed p/128 - 1,
   its softmax read as uint8) against the float model on the same images (target: within 1.0 point);
4. reports the disk cost in the bundle (packerOut.zip, the MCT model kept for evaluate).
Prints a table (with the load average: 2 shared cores); writes benchmarks/results/imx500.json.

    python benchmarks/bench_imx500.py [--run RUN] [--fresh-venv DIR] [extra convert flags]

--fresh-venv DIR makes the Sony venv anew in DIR (which must not exist), so step 1 measures the
first-use install (pip from the package index) instead of finding the cached one.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from edgepipe.cli import main as edgepipe
from edgepipe.convert.imx500_toolchain import CACHE_ENV, ensure_toolchain

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_RUN = RESULTS / "train_run"
BUNDLE = RESULTS / "imx500_bundle"
TARGET_POINTS = 1.0


def disk_bytes(path: Path) -> int:
    """Bytes on disk under `path` (links not followed, as du counts them)."""
    out = subprocess.run(["du", "-sb", str(path.resolve())], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--fresh-venv", type=Path, metavar="DIR", help="make the Sony venv anew in DIR (must not exist)")
    args, extra = parser.parse_known_args()
    if args.fresh_venv:
        if args.fresh_venv.exists():
            raise SystemExit(f"--fresh-venv {args.fresh_venv} exists; name a new folder")
        os.environ[CACHE_ENV] = str(args.fresh_venv)
    if not (args.run / "model.keras").is_file():
        if args.run != DEFAULT_RUN:
            raise SystemExit(f"{args.run} is not a training run")
        print(f"{args.run} missing: running benchmarks/bench_train.py first", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py")], check=True)

    load = {"before": [round(v, 2) for v in os.getloadavg()]}
    started = time.perf_counter()
    toolchain = ensure_toolchain()
    venv_s = time.perf_counter() - started
    venv_bytes = disk_bytes(toolchain.root)

    started = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = edgepipe(["convert", str(args.run), "--out", str(BUNDLE), "--method", "ptq", "--imx500", "--json",
                       "--force", *extra])
    convert_s = time.perf_counter() - started
    load["after"] = [round(v, 2) for v in os.getloadavg()]
    if rc != 0 and not out.getvalue().strip():
        print(f"edgepipe convert failed (exit {rc})", file=sys.stderr)
        return 1
    manifest = json.loads((BUNDLE / "bundle.json").read_text())
    block = manifest["imx500"]
    memory, accuracy = block["memory"], block["accuracy"]
    points = round((accuracy["simulated_sensor"] - accuracy["float"]) * 100, 2)
    result = {
        "run": str(args.run),
        "venv_made_here": bool(args.fresh_venv),
        "held_out_images": accuracy["n"],
        "accuracy": {"float": accuracy["float"], "simulated_sensor": accuracy["simulated_sensor"],
                     "float_on_sensor_input": accuracy["float_sensor_input"],
                     "tflite_int8_ptq": manifest["accuracy"]["ptq"]},
        "points_vs_float": points,
        "memory": memory,
        "toolchain": block["toolchain"],
        "seconds": {"venv_ready": round(venv_s, 1), "convert_total": round(convert_s, 1), **block["seconds"]},
        "disk_bytes": {"venv": venv_bytes, "packerOut.zip": (BUNDLE / block["package"]).stat().st_size,
                       "quantized.keras": (BUNDLE / block["quantized_model"]).stat().st_size},
        "load_average": load,
        "cpu_count": os.cpu_count(),
        "targets": {"fits": "memory used <= available", "points_vs_float": f">= -{TARGET_POINTS}"},
        "met": {"fits": memory["fits"], "accuracy": points >= -TARGET_POINTS},
        "convert_exit_code": rc,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "imx500.json").write_text(json.dumps(result, indent=2))
    mib = 1024 * 1024
    rows = [
        ("float (Keras) accuracy", f"{accuracy['float'] * 100:.2f}% on {accuracy['n']} held-out", ""),
        ("IMX500 simulated-sensor accuracy", f"{accuracy['simulated_sensor'] * 100:.2f}% ({points:+.2f})",
         f">= float - {TARGET_POINTS}"),
        ("float on the sensor's p/128 - 1 input", f"{accuracy['float_sensor_input'] * 100:.2f}%", "reported"),
        ("TFLite int8 PTQ (CPU bundle)", f"{manifest['accuracy']['ptq'] * 100:.2f}%", "reported"),
        ("sensor memory used", f"{memory['used_bytes'] / mib:.2f} of {memory['available_bytes'] / mib:.2f} MiB",
         "fits"),
        ("venv ready (made or found)", f"{venv_s:.0f} s, {venv_bytes / 1e9:.2f} GB on disk", "reported"),
        ("convert --imx500 wall time", f"{convert_s:.0f} s (MCT {block['seconds']['quantize']:.0f} s, imxconv-tf "
                                       f"{block['seconds']['convert']:.0f} s)", "reported"),
        ("bundle: packerOut.zip + quantized.keras", f"{result['disk_bytes']['packerOut.zip'] / 1e6:.2f} + "
                                                    f"{result['disk_bytes']['quantized.keras'] / 1e6:.2f} MB", "reported"),
        ("load average (1 min) before / after", f"{load['before'][0]:.1f} / {load['after'][0]:.1f} on "
                                                f"{os.cpu_count()} cores", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for what, measured, target in rows:
        print(f"{what:<{width}}  {measured:<44} {target}")
    print(f"wrote {RESULTS / 'imx500.json'}; bundle in {BUNDLE}")
    return 0 if all(result["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
