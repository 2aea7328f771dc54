"""What `edgepipe verify` costs, and whether the device runtime gives convert's answers (issue 13).

On the convert benchmark's flowers12 bundle (benchmarks/results/convert_bundle, made by
bench_convert.py, which this script runs first when it is missing), with its default golden set:
- wall time of `edgepipe verify BUNDLE --accelerator cpu --json` as a process (start to exit:
  what deploy pays on the device), and the time verify reports for its own work (bundle hashes,
  decoding, the golden images through the interpreter); median of --repeats;
- top-1 agreement and largest score difference between the golden set's expected outputs
  (convert's device-runtime verification, through LiteRT) and `verify` through LiteRT (must be
  100%), and through tflite_runtime when --tflite-runtime-python names a Python that has
  tflite_runtime (numpy < 2) and edgepipe but not LiteRT;
- the time a deploy adds by verifying: cold deploys (no service) of copies of the bundle over a
  loopback sshd with and without verification, alternated, median of --repeats.
Prints a table; writes benchmarks/results/verify.json.

    python benchmarks/bench_verify.py [--repeats 5] [--tflite-runtime-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "deploy"))

from sshd_server import running_sshd  # noqa: E402

from edgepipe.deploy import release  # noqa: E402
from edgepipe.core.ssh import SshOptions, Target  # noqa: E402
from edgepipe.deploy.remote import Remote  # noqa: E402
from edgepipe.device.model.bundle import MANIFEST  # noqa: E402

RESULTS = HERE / "results"
BUNDLE = RESULTS / "convert_bundle"


def ensure_bundle() -> None:
    if (BUNDLE / MANIFEST).is_file() and "golden" in json.loads((BUNDLE / MANIFEST).read_text()):
        return
    print(f"{BUNDLE} missing (or without a golden set): running benchmarks/bench_convert.py first", file=sys.stderr)
    subprocess.run([sys.executable, str(HERE / "bench_convert.py")], check=True)


def verify_process(python: str, bundle: Path) -> tuple[float, dict]:
    """Wall time of one `python -m edgepipe verify --json` process, and its report."""
    start = time.perf_counter()
    proc = subprocess.run([python, "-m", "edgepipe", "verify", str(bundle), "--accelerator", "cpu", "--json"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=""))
    seconds = time.perf_counter() - start
    if not proc.stdout.strip():
        raise SystemExit(f"{python}: edgepipe verify printed nothing: {proc.stderr.strip()[-300:]}")
    return seconds, json.loads(proc.stdout)


def agreement_row(report: dict) -> dict:
    [cpu] = report["checks"]
    m = cpu["comparison"]
    return {"runtime": cpu["runtime"], "n": m["n"], "agreed": m["agreed"], "top1_agreement": m["top1_agreement"],
            "max_abs_diff": m["max_abs_diff"], "mean_abs_diff": m["mean_abs_diff"], "accuracy": m["accuracy"],
            "passed": report["passed"]}


def variant(bundle: Path, root: Path, n: int) -> Path:
    """A copy whose manifest differs (hence a new release id): every deploy is a cold upload."""
    copy = Path(shutil.copytree(bundle, root / f"variant{n}"))
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["benchmark_variant"] = n
    (copy / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return copy


def deploy_times(repeats: int) -> dict[str, list[float]]:
    quiet = lambda _: None  # noqa: E731 - progress lines would drown the table
    times: dict[str, list[float]] = {"with_verify": [], "without_verify": []}
    with tempfile.TemporaryDirectory(prefix="bench_verify.") as tmp:
        tmp = Path(tmp)
        (tmp / "sshd").mkdir()
        with running_sshd(tmp / "sshd") as server:
            remote = Remote(Target.parse(server.host), SshOptions(config=str(server.client_config)),
                            prefix=str(tmp / "device" / "edgepipe"), python=sys.executable)
            for i in range(repeats):
                for key, verify in (("with_verify", True), ("without_verify", False)):
                    bundle = variant(BUNDLE, tmp, 2 * i + verify)
                    start = time.perf_counter()
                    result = release.deploy(remote, bundle, None, keep=2 * repeats + 2, say=quiet, verify=verify)
                    times[key].append(time.perf_counter() - start)
                    assert bool(result.get("verification")) == verify
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tflite-runtime-python", metavar="PY",
                        help="a Python with tflite_runtime (numpy < 2) and edgepipe installed, without ai_edge_litert")
    args = parser.parse_args()
    ensure_bundle()
    golden = len(json.loads((BUNDLE / MANIFEST).read_text())["golden"]["images"])
    runs = [verify_process(sys.executable, BUNDLE) for _ in range(args.repeats)]
    process_s = [seconds for seconds, _ in runs]
    own_s = [report["checks"][0]["seconds"] for _, report in runs]
    agreement = {"litert": agreement_row(runs[0][1])}
    if args.tflite_runtime_python:
        agreement["tflite_runtime"] = agreement_row(verify_process(args.tflite_runtime_python, BUNDLE)[1])
    deploys = deploy_times(args.repeats)
    added = [a - b for a, b in zip(deploys["with_verify"], deploys["without_verify"])]
    rows = [
        (f"verify process, {golden} golden images, cpu (median of {args.repeats})", f"{statistics.median(process_s):.2f} s"),
        ("  of which verify's own work (hashes, decode, inference)", f"{statistics.median(own_s):.2f} s"),
    ]
    for name, row in agreement.items():
        rows.append((f"golden set: convert's outputs vs verify through {row['runtime']}",
                     f"top-1 {row['top1_agreement']:.1%} ({row['agreed']}/{row['n']}), max score diff "
                     f"{row['max_abs_diff']:.4f}"))
    rows += [
        ("cold deploy without verification, no service (median)", f"{statistics.median(deploys['without_verify']):.2f} s"),
        ("cold deploy with verification, no service (median)", f"{statistics.median(deploys['with_verify']):.2f} s"),
        ("added by verification (median of paired differences)", f"{statistics.median(added):.2f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    load = os.getloadavg()
    result = {
        "bundle": str(BUNDLE), "golden_images": golden, "repeats": args.repeats,
        "verify_process_s": {"median": statistics.median(process_s), "all": process_s},
        "verify_own_s": {"median": statistics.median(own_s), "all": own_s},
        "agreement": agreement,
        "deploy_s": {key: {"median": statistics.median(v), "all": v} for key, v in deploys.items()},
        "deploy_added_by_verify_s": {"median": statistics.median(added), "all": added},
        "load_average_at_end": [round(x, 2) for x in load],
        "note": "loopback sshd on this machine, no service; the 'device' is this machine",
    }
    (RESULTS / "verify.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'verify.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
