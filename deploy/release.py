"""The single-host deploy: check, upload, verify on the device, switch, service, health, rollback.

The steps that change the device run inside remote_agent.py on the device;
this module orders them and decides, from the device report, whether to go on.
Uploads go to a `.partial` directory that only the on-device verification
renames into `releases/`, so a cut transfer never becomes a release.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from edgepipe.device.bundle import MANIFEST, load_bundle, sha256_file
from edgepipe.core import progress
from edgepipe.core.errors import UserError

from .device_check import assess, format_report, uses_camera
from .remote import Remote

RELEASE_ID_CHARS = 16


@dataclass(frozen=True)
class LocalBundle:
    root: Path
    sha256: str
    size: int
    has_edgetpu_model: bool

    @property
    def release_id(self) -> str:
        return self.sha256[:RELEASE_ID_CHARS]


@dataclass(frozen=True)
class ServiceSettings:
    manager: str = "systemd"
    scope: str = "user"
    source: str | None = None
    accelerator: str = "auto"
    health_timeout: float = 60.0


def read_local_bundle(path: Path) -> LocalBundle:
    """Verify the bundle here first: shipping a broken bundle would only fail later, on the device."""
    bundle = load_bundle(path, verify=True)
    files = [bundle.root / name for name in bundle.manifest["files"]] + [bundle.root / MANIFEST]
    return LocalBundle(
        root=bundle.root,
        sha256=sha256_file(bundle.root / MANIFEST),
        size=sum(f.stat().st_size for f in files),
        has_edgetpu_model=bundle.model_path("edgetpu") is not None,
    )


Uploader = Callable[[Remote, Path, str], None]


def scp_upload(remote: Remote, local: Path, remote_path: str) -> None:
    remote.upload(local, remote_path)


def ensure_release(remote: Remote, bundle: LocalBundle, accelerator: str, needs_camera: bool,
                   upload: Uploader = scp_upload, say: Callable[[str], None] = progress.say,
                   commit: bool = True, systemd_scope: str | None = None) -> dict:
    """Check the device, then make sure PREFIX/releases/<id> holds this bundle, verified there.

    Returns the `prepare` answer (prefix, device report, ...). Nothing on the
    device changes before the checks pass, apart from removing stale partial
    uploads. With commit=False the caller's `activate --sha` verifies the upload.
    """
    prepared = remote.agent("prepare", bundle.release_id, bundle.sha256)
    report = prepared["report"]
    for line in format_report(str(remote.target), report):
        say(line)
    if prepared["removed_partials"]:
        say(f"removed interrupted uploads: {', '.join(prepared['removed_partials'])}")
    verdict = assess(report, bundle.size, accelerator, bundle.has_edgetpu_model, needs_camera,
                     already_uploaded=prepared["have_release"], systemd_scope=systemd_scope)
    for warning in verdict.warnings:
        say(f"warning: {warning}")
    if verdict.errors:
        raise UserError(f"{remote.target}: " + "; ".join(verdict.errors))
    if prepared["have_release"]:
        say(f"release {bundle.release_id} already on the device (verified)")
        return prepared
    say(f"uploading {bundle.root} ({bundle.size / 1e6:.1f} MB) to {prepared['release_dir']}")
    upload(remote, bundle.root, prepared["partial"])
    if commit:
        remote.agent("commit", bundle.release_id, bundle.sha256)
        say(f"verified every file's sha256 on the device: release {bundle.release_id}")
    return prepared


def deploy(remote: Remote, bundle_path: Path, service: ServiceSettings | None, keep: int,
           upload: Uploader = scp_upload, say: Callable[[str], None] = progress.say) -> dict:
    """Deploy one bundle to one device; raises UserError (one line) when it does not end healthy."""
    bundle = read_local_bundle(bundle_path)
    accelerator = service.accelerator if service else "auto"
    needs_camera = service is not None and uses_camera(service.source)
    systemd_scope = service.scope if service and service.manager == "systemd" else None
    prepared = ensure_release(remote, bundle, accelerator, needs_camera, upload, say, commit=False,
                              systemd_scope=systemd_scope)
    args = ["activate", bundle.release_id, "--sha", bundle.sha256, "--keep", str(keep)]
    if service:
        template = resources.files("edgepipe.deploy").joinpath("templates", "edgepipe.service")
        args += ["--template-text", template.read_text(encoding="utf-8"), "--manager", service.manager, "--scope", service.scope, "--accelerator", service.accelerator,
                 "--health-timeout", f"{service.health_timeout:g}"]
        if service.source:
            args += ["--source", service.source]
        say(f"verifying on the device, switching {prepared['prefix']}/current to {bundle.release_id}, "
            f"restarting the service and waiting up to {service.health_timeout:g}s for a result")
    else:
        args += ["--manager", "none"]
    result = remote.agent(*args)
    return {"host": str(remote.target), "prefix": prepared["prefix"], "release": bundle.release_id,
            "bundle_sha256": bundle.sha256, "report": prepared["report"], **result}


def status(remote: Remote) -> dict:
    return {"host": str(remote.target), **remote.agent("status")}


def rollback(remote: Remote, health_timeout: float) -> dict:
    return {"host": str(remote.target), **remote.agent("rollback", "--health-timeout", f"{health_timeout:g}")}


def describe(result: dict) -> str:
    """The human summary of a deploy or rollback."""
    health = result.get("health")
    if health:
        top = (health.get("result") or {}).get("top") or [{}]
        service = f"service {health['state']['state']}, first result: {top[0].get('label')} {top[0].get('score', 0):.2f}"
    else:
        service = "no service restarted"
    previous = result.get("previous") or "none"
    removed = f"; removed old releases {', '.join(result['removed'])}" if result.get("removed") else ""
    return f"{result['host']}: running release {result['release']} (previous {previous}); {service}{removed}"


def describe_status(result: dict) -> list[str]:
    service = result.get("service") or {}
    uptime = service.get("uptime_s")
    lines = [
        f"{result['host']}: current release {result.get('current') or 'none'} under {result['prefix']}",
        f"  releases   {', '.join(result.get('releases') or []) or 'none'} (history, oldest first: "
        f"{', '.join(result.get('history') or []) or 'none'})",
        f"  service    {service.get('state', 'not installed')} ({service.get('manager', '-')})"
        + (f", up {uptime:.0f}s" if uptime is not None else ""),
    ]
    last = result.get("last_result")
    lines.append(f"  last result {json.dumps(last)}" if last else "  last result none")
    return lines
