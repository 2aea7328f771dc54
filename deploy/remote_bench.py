"""`edgepipe bench BUNDLE --host user@host`: measure on the device, compare with here.

The bundle goes through the same checked upload as a deploy (into
PREFIX/releases/<id>/, verified on the device) without touching `current` or
the service, so benchmarking never changes what the device runs. The device's
own `edgepipe bench --json` does the measuring; its JSON comes back and is
shown beside the same plan measured on this machine, as `bench compare` does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgepipe.device.bench_cli import COMPARE, bench_command
from edgepipe.device.errors import UserError
from edgepipe.device.fsutil import atomic_write_text, refuse_overwrite

from .cli import remote_from_args
from .release import ensure_release, progress, read_local_bundle

# bench's --accelerator -> what the device check should demand.
CHECK_ACCELERATOR = {"cpu": "cpu", "edgetpu": "edgetpu", "all": "auto"}
LOCAL_ONLY_FLAGS = ("image", "e2e", "csv", "plot", "labels")


def device_bench_args(args: argparse.Namespace, release_dir: str) -> list[str]:
    """The same measurement plan, as `edgepipe bench` flags for the device."""
    argv = ["bench", release_dir, "--json", "--runs", str(args.runs), "--warmup", str(args.warmup),
            "--accelerator", args.accelerator]
    threads = [str(t) for t in args.threads if t]
    if threads:
        argv += ["--threads", ",".join(threads)]
    if args.duration:
        argv += ["--duration", f"{args.duration:g}"]
    if args.edgetpu_device:
        argv += ["--edgetpu-device", args.edgetpu_device]
    return argv


def bench_on_device(args: argparse.Namespace) -> dict:
    remote = remote_from_args(args, args.host)
    bundle = read_local_bundle(Path(args.target))
    prepared = ensure_release(remote, bundle, CHECK_ACCELERATOR[args.accelerator], needs_camera=False)
    progress(f"running `edgepipe bench` on {remote.target} ...")
    proc = remote.run_agent_raw("edgepipe", *device_bench_args(args, prepared["release_dir"]))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"{remote.target}: `edgepipe bench` failed on the device: {last}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UserError(f"{remote.target}: `edgepipe bench --json` printed no JSON; is edgepipe on the device "
                        "older than this one? upgrade it there") from None
    report["environment"]["ssh_host"] = str(remote.target)
    return report


def bench_here(args: argparse.Namespace) -> dict | None:
    """The same plan on this machine, for the side-by-side; None when it cannot run here (e.g. no Edge TPU)."""
    from edgepipe.device.bench import BenchPlan, run_bench

    plan = BenchPlan(runs=args.runs, warmup=args.warmup, threads=args.threads, accelerator=args.accelerator,
                     duration_s=args.duration, edgetpu_device=args.edgetpu_device)
    progress("running the same measurement on this machine ...")
    try:
        report = run_bench(Path(args.target), None, plan)
    except UserError as exc:
        progress(f"not measured here: {exc}")
        return None
    return report if report.get("results") else None


def run(args: argparse.Namespace) -> int:
    """Entry point from `edgepipe bench ... --host` (hooked in edgepipe/cli.py)."""
    if args.target == COMPARE:  # `bench compare` explains itself why --host does not apply
        return bench_command(args)
    local_only = [f"--{flag}" for flag in LOCAL_ONLY_FLAGS if getattr(args, flag, None)]
    if local_only:
        raise UserError(f"{local_only[0]} is not supported with --host (it names a file here); "
                        "save the device's result with --out and use `edgepipe bench compare`")
    if args.out:
        refuse_overwrite(args.out, args.force)
    remote_report = bench_on_device(args)
    if args.out:
        atomic_write_text(args.out, json.dumps(remote_report, indent=2) + "\n")
    if args.json:
        print(json.dumps(remote_report, indent=2))
        return 0
    from edgepipe.device.bench_compare import compare_rows, format_comparison

    local_report = bench_here(args)
    reports = [local_report, remote_report] if local_report else [remote_report]
    print(format_comparison(compare_rows(reports)))
    return 0
