"""`edgepipe bench BUNDLE --host user@host`: measure on the device, compare with here.

The bundle goes through the same checked upload as a deploy (into
PREFIX/releases/<id>/, verified on the device) without touching `current` or
the service, so benchmarking never changes what the device runs. The device's
own `edgepipe bench --json` does the measuring; its JSON comes back and is
shown beside the same plan measured on this machine, as `bench compare` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from edgepipe.core.progress import say
from edgepipe.core.ssh import Connection
from edgepipe.device.bench.measure import run_bench
from edgepipe.device.bench.options import BenchPlan

from .agent.protocol import EDGEPIPE, summarise_verify_run
from .release import ensure_release, read_local_bundle
from .remote import Remote, remote_for

# bench's --accelerator -> what the device check should demand.
CHECK_ACCELERATOR = {"cpu": "cpu", "edgetpu": "edgetpu", "all": "auto"}


@dataclass(frozen=True)
class RemoteBench:
    bundle: Path
    plan: BenchPlan
    connection: Connection


def device_bench_args(plan: BenchPlan, release_dir: str) -> list[str]:
    """The same measurement plan, as `edgepipe bench` flags for the device."""
    argv = ["bench", release_dir, "--json", "--runs", str(plan.runs), "--warmup", str(plan.warmup),
            "--accelerator", plan.accelerator]
    threads = [str(t) for t in plan.threads if t]
    if threads:
        argv += ["--threads", ",".join(threads)]
    if plan.workers != BenchPlan.workers:  # a device with an older edgepipe may not know --workers
        argv += ["--workers", ",".join(map(str, plan.workers))]
    if plan.duration_s:
        argv += ["--duration", f"{plan.duration_s:g}"]
    if plan.edgetpu_device:
        argv += ["--edgetpu-device", plan.edgetpu_device]
    return argv


def bench_on_device(request: RemoteBench) -> dict[str, Any]:
    remote = remote_for(request.connection)
    bundle = read_local_bundle(request.bundle)
    with remote.locked():
        prepared = ensure_release(remote, bundle, CHECK_ACCELERATOR[request.plan.accelerator], needs_camera=False)
    say(f"running `edgepipe bench` on {remote.target} ...")
    proc = remote.run_agent_raw(EDGEPIPE, *device_bench_args(request.plan, prepared["release_dir"]))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        raise UserError(f"{remote.target}: `edgepipe bench` failed on the device: {last}")
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise UserError(f"{remote.target}: `edgepipe bench --json` printed no JSON; is edgepipe on the device "
                        "older than this one? upgrade it there") from None
    report["environment"]["ssh_host"] = str(remote.target)
    if bundle.has_golden:
        report["verification"] = verify_on_device(remote, prepared["release_dir"], request.plan.accelerator)
    return report


def verify_on_device(remote: Remote, release_dir: str, accelerator: str) -> dict[str, Any]:
    """The golden-set check of the benchmarked release on the device, reported beside its latency."""
    say(f"running `edgepipe verify` on {remote.target} ...")
    proc = remote.run_agent_raw(EDGEPIPE, "verify", release_dir, "--accelerator", accelerator, "--json")
    return summarise_verify_run(proc.returncode, proc.stdout, proc.stderr, accelerator)


def bench_here(request: RemoteBench) -> dict[str, Any] | None:
    """The same plan on this machine, for the side-by-side; None when it cannot run here (e.g. no Edge TPU)."""
    say("running the same measurement on this machine ...")
    try:
        report = run_bench(request.bundle, None, request.plan)
    except UserError as exc:
        say(f"not measured here: {exc}")
        return None
    return report if report.get("results") else None
