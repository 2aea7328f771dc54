"""The single-host deploy: check, upload, verify on the device, switch, service, health, rollback.

The steps that change the device run inside the device agent (deploy/agent/);
this module orders them and decides, from the device report, whether to go on.
Uploads go to a `.partial` directory that only the on-device verification
renames into `releases/`, so a cut transfer never becomes a release. What is
uploaded is exactly the manifest's files, copied from the bytes verified here
into a private staging folder (never the user's folder: no unlisted file, no
symlink followed). The whole deploy holds the device's prefix lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

from edgepipe.device.model.bundle import MANIFEST, MAX_MODEL_BYTES, Bundle, load_bundle
from edgepipe.core import progress
from edgepipe.core.errors import UserError
from edgepipe.core.safetext import safe_line
from edgepipe.device.model.golden import has_golden

from .agent import protocol
from .device_check import assess, format_report, uses_camera
from .options import ServiceSettings
from .remote import DiskFull, Remote

RELEASE_ID_CHARS = 16


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


# The service's --accelerator -> which models `edgepipe verify` checks on the device before the switch:
# auto may fall back to the CPU model, so both are checked (the Edge TPU one where one is usable);
# imx500: the golden set injected into the AI Camera's sensor.
VERIFY_ACCELERATOR = {"cpu": "cpu", "edgetpu": "edgetpu", "imx500": "imx500", "auto": "all"}


@dataclass(frozen=True)
class LocalBundle:
    root: Path
    sha256: str
    size: int  # of exactly what is uploaded: the listed files and the manifest
    has_edgetpu_model: bool
    bundle: Bundle
    has_golden: bool = False

    @property
    def release_id(self) -> str:
        return self.sha256[:RELEASE_ID_CHARS]


def read_local_bundle(path: Path) -> LocalBundle:
    """Verify the bundle here first: shipping a broken bundle would only fail later, on the device."""
    bundle = load_bundle(path, verify=True)
    files = [bundle.root / name for name in bundle.manifest["files"]]
    return LocalBundle(
        root=bundle.root,
        sha256=bundle.sha256,
        size=sum(f.stat().st_size for f in files) + len(bundle.manifest_bytes),
        has_edgetpu_model=bundle.model_path("edgetpu") is not None,
        bundle=bundle,
        has_golden=has_golden(bundle.manifest),
    )


@contextlib.contextmanager
def staged_bundle(local: LocalBundle) -> Iterator[Path]:
    """A private temporary folder holding exactly the manifest's files, written from bytes hashed
    as they were read: what is shipped is what was verified, and nothing else."""
    with tempfile.TemporaryDirectory(prefix="edgepipe-upload-") as tmp:
        root = Path(tmp) / local.root.name
        root.mkdir()
        for name in local.bundle.manifest["files"]:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(local.bundle.read_member(name, max_bytes=MAX_MODEL_BYTES))
        (root / MANIFEST).write_bytes(local.bundle.manifest_bytes)
        yield root


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
    prepared = remote.agent(protocol.PREPARE, bundle.release_id, bundle.sha256)
    report = prepared["report"]
    for line in format_report(str(remote.target), report):
        say(safe_line(line))
    if prepared["removed_partials"]:
        say(safe_line(f"removed interrupted uploads: {', '.join(map(str, prepared['removed_partials']))}"))
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
    try:
        with staged_bundle(bundle) as staged:
            upload(remote, staged, prepared["partial"])
    except UserError as exc:
        raise _upload_failure(remote, bundle, exc) from None
    if commit:
        remote.agent(protocol.COMMIT, bundle.release_id, bundle.sha256)
        say(f"verified every file's sha256 on the device: release {bundle.release_id}")
    return prepared


def _upload_failure(remote: Remote, bundle: LocalBundle, error: UserError) -> UserError:
    """Remove the partial upload (nothing half-copied stays behind) and say why the upload failed:
    a device left with less free space than the bundle needs ran out of disk, whatever scp printed."""
    try:
        discarded = remote.agent(protocol.DISCARD, bundle.release_id)
    except UserError:  # the link is gone: the next deploy's `prepare` removes the partial upload
        return error
    free = discarded["disk_free"]
    if isinstance(error, DiskFull) or free < bundle.size:
        return DiskFull(f"{remote.target}: the device's disk under {remote.prefix} filled up during the upload "
                        f"({free / 1e6:.1f} MB free, the bundle needs {bundle.size / 1e6:.1f} MB); the partial upload "
                        "was removed and the device keeps its current release; free some space and deploy again")
    return type(error)(f"{error}; the partial upload was removed")


def verify_accelerator(bundle: LocalBundle, accelerator: str, verify: bool, say: Callable[[str], None]) -> str | None:
    """Which models the device verifies before the switch (None: not verified, with a warning saying why)."""
    if not verify:
        say("warning: --no-verify: the bundle's answers are not checked on the device before it goes live")
        return None
    if not bundle.has_golden:
        say(f"warning: {bundle.root} has no golden set (converted with --no-golden): its answers are not checked "
            "on the device before it goes live")
        return None
    return VERIFY_ACCELERATOR[accelerator]


def deploy(remote: Remote, bundle_path: Path, service: ServiceSettings | None, keep: int,
           upload: Uploader = scp_upload, say: Callable[[str], None] = progress.say, verify: bool = True) -> dict:
    """Deploy one bundle to one device; raises UserError (one line) when it does not end healthy."""
    bundle = read_local_bundle(bundle_path)
    with remote.locked():
        return _deploy_locked(remote, bundle, service, keep, upload, say, verify)


def _deploy_locked(remote: Remote, bundle: LocalBundle, service: ServiceSettings | None, keep: int,
                   upload: Uploader, say: Callable[[str], None], verify: bool) -> dict:
    accelerator = service.accelerator if service else "auto"
    needs_camera = service is not None and uses_camera(service.source)
    systemd_scope = service.scope if service and service.manager == "systemd" else None
    prepared = ensure_release(remote, bundle, accelerator, needs_camera, upload, say, commit=False,
                              systemd_scope=systemd_scope)
    args = [protocol.ACTIVATE, bundle.release_id, "--sha", bundle.sha256, "--keep", str(keep)]
    checked = verify_accelerator(bundle, accelerator, verify, say)  # after the device checks: warnings come last
    if checked:
        args += ["--verify", checked]
        say(f"running the golden set on the device (`edgepipe verify --accelerator {checked}`) before switching")
    if service:
        template = resources.files("edgepipe.deploy").joinpath("templates", "edgepipe.service")
        args += ["--template-text", template.read_text(encoding="utf-8"), "--manager", service.manager, "--scope", service.scope, "--accelerator", service.accelerator,
                 "--health-timeout", f"{service.health_timeout:g}"]
        if service.source:
            args += ["--source", service.source]
        for flag, value in (("--mqtt", service.mqtt), ("--serve", service.serve)):
            if value:
                args += [flag, value]
        for region in service.roi:
            args += ["--roi", region]
        if service.secrets:
            env_upload = f"{prepared['prefix']}/.{protocol.ENV_FILE}.upload"
            upload_secrets(remote, service.secrets, env_upload, upload)
            args += ["--env-upload", env_upload]
        if service.collect:
            args += ["--collect"]
        if service.serve_public:
            args += ["--serve-public"]
        say(f"verifying on the device, switching {prepared['prefix']}/current to {bundle.release_id}, "
            f"restarting the service and waiting up to {service.health_timeout:g}s for a result")
    else:
        args += ["--manager", "none"]
    result = remote.agent(*args)
    return {"host": str(remote.target), "prefix": prepared["prefix"], "release": bundle.release_id,
            "bundle_sha256": bundle.sha256, "report": prepared["report"], **result}


def upload_secrets(remote: Remote, secrets: dict[str, str], remote_path: str, upload: Uploader) -> None:
    """The service's secrets as an environment file, created 0600 here and copied with its mode,
    so they never appear on a command line (ours or the device's) or in the unit."""
    for name, value in secrets.items():
        if "\n" in value or "\r" in value:
            raise UserError(f"{name} may not contain a line break")
    fd, local = tempfile.mkstemp(prefix="edgepipe-env-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{name}={value}\n" for name, value in secrets.items()))
        upload(remote, Path(local), remote_path)
    finally:
        os.unlink(local)


def status(remote: Remote) -> dict:
    return {"host": str(remote.target), **remote.agent(protocol.STATUS)}


def rollback(remote: Remote, health_timeout: float) -> dict:
    with remote.locked():
        result = remote.agent(protocol.ROLLBACK, "--health-timeout", f"{health_timeout:g}")
        return {"host": str(remote.target), **result}


def describe(result: dict) -> str:
    """The human summary of a deploy or rollback."""
    health = _obj(result.get("health"))
    if health:
        top = _obj(health.get("result")).get("top")
        first = _obj(top[0]) if isinstance(top, list) and top else {}
        score = first.get("score")
        service = (f"service {_obj(health.get('state')).get('state')}, first result: {first.get('label')} "
                   + (f"{score:.3f}" if isinstance(score, (int, float)) else "?"))
    else:
        service = "no service restarted"
    previous = result.get("previous") or "none"
    removed = result.get("removed")
    removed = f"; removed old releases {', '.join(map(str, removed))}" if isinstance(removed, list) and removed else ""
    verification = result.get("verification")
    verified = f"; {describe_verification(verification)}" if isinstance(verification, dict) else ""
    return safe_line(f"{result['host']}: running release {result['release']} (previous {previous}); "
                     f"{service}{verified}{removed}{_imx500_phrase(result.get('imx500'))}")


def _imx500_phrase(imx500: Any) -> str:
    """The AI Camera's network.rpk, when the bundle has an IMX500 model (device data: types checked)."""
    imx500 = _obj(imx500)
    if imx500.get("packaged") is True:
        return "; AI Camera network.rpk made with imx500-package"
    reason = imx500.get("reason")
    if not isinstance(reason, str) or reason == "no IMX500 model in the bundle":
        return ""
    return f"; AI Camera network.rpk NOT made ({reason}): `edgepipe deploy setup HOST --imx500`"


def describe_verification(verification: Any) -> str:
    """One phrase: what the device's golden-set check found, model by model (device data: types checked)."""
    verification = _obj(verification)
    if not verification:
        return "not verified on the device (--no-verify, no golden set, or deployed by an older edgepipe)"
    parts = []
    checks = verification.get("checks")
    for check in map(_obj, checks if isinstance(checks, list) else []):
        numbers = [check.get(k) for k in ("top1_agreement", "agreed", "n", "max_abs_diff")]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            agreement, agreed, n, diff = numbers
            measure = check.get("measure") if isinstance(check.get("measure"), str) else "top-1 agreement"
            parts.append(f"{check.get('accelerator')} {check.get('status')} {measure} {agreement:.1%} "
                         f"({agreed}/{n}, max score diff {diff:.3f})")
        else:
            parts.append(f"{check.get('accelerator')} {check.get('status')} ({check.get('reason')})")
    verdict = "verified" if verification.get("passed") is True else "FAILED verification"
    return safe_line(f"{verdict} on the device at {verification.get('checked_at')}: "
                     + (", ".join(parts) or str(verification.get("reason") or "no checks")))


def describe_status(result: dict) -> list[str]:
    service = _obj(result.get("service"))
    uptime = service.get("uptime_s")
    lines = [
        f"{result['host']}: current release {result.get('current') or 'none'} under {result['prefix']}",
        f"  releases   {', '.join(map(str, result['releases'])) or 'none'} (history, oldest first: "
        f"{', '.join(map(str, result['history'])) or 'none'})",
        f"  service    {service.get('state', 'not installed')} ({service.get('manager', '-')})"
        + (f", up {uptime:.0f}s" if isinstance(uptime, (int, float)) else ""),
    ]
    if result.get("state_error"):
        lines.append(f"  warning    {result['state_error']}")
    lines.append(f"  answers    {describe_verification(result.get('verification'))}")
    config = _obj(result.get("service_config"))
    serve, mqtt = config.get("serve"), config.get("mqtt")
    if isinstance(serve, str) and ":" in serve:
        host, _, port = serve.rpartition(":")
        if host in ("0.0.0.0", "[::]"):  # listening on every interface: reach it by the device's name
            host = result["host"].rpartition("@")[2].split(":")[0]
        lines.append(f"  web page   http://{host}:{port}/")
    if isinstance(mqtt, str) and mqtt.count("/") >= 3:
        lines.append(f"  mqtt       {mqtt} (state: {mqtt.split('/', 3)[3]}/state)")
    last = result.get("last_result")
    lines.append(f"  last result {json.dumps(last)}" if last else "  last result none")
    return [safe_line(line) for line in lines]
