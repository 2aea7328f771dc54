"""Judging the agent's device report before anything on the device changes.

Blocking problems stop the deploy with one line; the rest are warnings in the
report (a camera may be absent when the source is a file or a stream).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Room for the copy plus the release it may replace while both exist.
DISK_MARGIN_BYTES = 20 * 1024 * 1024
MIN_PYTHON = (3, 10)
BACKENDS = ("ai_edge_litert", "tflite_runtime")


@dataclass
class Assessment:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2] if p.isdigit())


def uses_camera(source: str | None) -> bool:
    """Whether `edgepipe run --source` would open a camera (its default does)."""
    return source is None or source == "picamera2" or source.isdigit() or source.startswith("/dev/video")


def assess(report: dict, bundle_bytes: int, accelerator: str, has_edgetpu_model: bool,
           needs_camera: bool, already_uploaded: bool = False, systemd_scope: str | None = None) -> Assessment:
    """`systemd_scope`: "user" or "system" when the service will be a systemd unit, else None."""
    out = Assessment()
    edgepipe = report.get("edgepipe", {})
    python = report.get("python_path", "python3")
    if "error" in edgepipe:
        out.errors.append(
            f"edgepipe is not importable by {python} ({edgepipe['error']}); run deploy/pi-setup.sh on the device "
            "or pass --remote-python PATH"
        )
    elif _version(edgepipe.get("python", "0")) < MIN_PYTHON:
        out.errors.append(f"{python} is Python {edgepipe.get('python')}; edgepipe needs 3.10 or newer")
    else:
        modules = edgepipe.get("modules", {})
        missing = [m for m in ("numpy", "cv2") if not modules.get(m)]
        if not any(modules.get(b) for b in BACKENDS):
            missing.append("ai_edge_litert (or tflite_runtime)")
        if missing:
            out.errors.append(f"{python} lacks {', '.join(missing)}; run `pip install 'edgepipe[device]'` in it")
    needed = 0 if already_uploaded else bundle_bytes + DISK_MARGIN_BYTES
    if report.get("disk_free", 0) < needed:
        out.errors.append(
            f"not enough disk space: {report.get('disk_free', 0) / 1e6:.1f} MB free, the bundle needs "
            f"{needed / 1e6:.1f} MB; free space or lower --keep"
        )
    tpu = report.get("edgetpu", {})
    tpu_present = bool(tpu.get("usb") or tpu.get("pcie"))
    if accelerator == "edgetpu":
        if not has_edgetpu_model:
            out.errors.append("--accelerator edgetpu but the bundle has no model_edgetpu.tflite; "
                              "convert with --edgetpu")
        if not tpu_present:
            out.errors.append("--accelerator edgetpu but no Edge TPU is attached (no USB 1a6e/18d1 device, "
                              "no /dev/apex_0); plug it in or use --accelerator cpu")
    elif accelerator == "auto" and has_edgetpu_model and not tpu_present:
        out.warnings.append("no Edge TPU found: the service will use the CPU model")
    if systemd_scope and not report.get("systemd"):
        out.errors.append("the device does not run systemd; use --service-manager process or --no-service")
    elif systemd_scope == "user" and report.get("linger") is False:
        out.errors.append("lingering is off, so a user service would stop when SSH disconnects; run "
                          "`sudo loginctl enable-linger $USER` on the device (pi-setup.sh does) "
                          "or use --unit-scope system")
    camera = report.get("camera", {})
    if needs_camera and not (camera.get("picamera2") or camera.get("video_devices")):
        out.warnings.append("no camera found (no picamera2, no /dev/video*); pass --source for a file or stream")
    return out


def format_report(host: str, report: dict) -> list[str]:
    edgepipe = report.get("edgepipe", {})
    camera = report.get("camera", {})
    tpu = report.get("edgetpu", {})
    modules = edgepipe.get("modules", {})
    backends = [b for b in BACKENDS if modules.get(b)] or ["none"]
    return [
        f"device {host}: {report.get('os')} {report.get('machine')}, {report.get('hostname')}",
        f"  python     {report.get('python_path')} ({edgepipe.get('python', '?')}), "
        f"edgepipe {edgepipe.get('version') or 'MISSING'}, runtime {', '.join(backends)}",
        f"  camera     {', '.join(camera.get('video_devices') or []) or 'no /dev/video*'}; "
        f"libcamera {'yes' if camera.get('libcamera') else 'no'}; "
        f"picamera2 {'yes' if camera.get('picamera2') else 'no'}",
        f"  edge tpu   {'USB ' + ', '.join(tpu['usb']) if tpu.get('usb') else 'no USB'}; "
        f"{'/dev/apex_0' if tpu.get('pcie') else 'no PCIe'}",
        f"  disk free  {report.get('disk_free', 0) / 1e9:.2f} GB; systemd {'yes' if report.get('systemd') else 'no'}"
        + ("" if report.get("linger") is None else f", lingering {'on' if report['linger'] else 'off'}"),
    ]
