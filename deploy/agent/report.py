"""The device report: what the device has (Python, edgepipe, camera, Edge TPU, disk, systemd),
judged on the workstation (deploy/device_check.py) before anything on the device changes."""

from __future__ import annotations

import glob
import json
import os
import platform
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

from .layout import Layout
from .protocol import AgentError

# Coral USB Accelerator before (1a6e:089a) and after (18d1:9302) its firmware is loaded.
CORAL_USB_IDS = ("1a6e:089a", "18d1:9302")

# Asks the Python that will run the service what it can import: in that
# interpreter (the venv), or in this process when it is the same one.
EDGEPIPE_PROBE = """
import importlib.util, sys
out = {"python": sys.version.split()[0]}
try:
    import edgepipe, edgepipe.device
    out["version"] = edgepipe.__version__
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
out["modules"] = {m: importlib.util.find_spec(m) is not None
                  for m in ("numpy", "cv2", "ai_edge_litert", "tflite_runtime", "picamera2")}
"""


def probe_edgepipe(python: str) -> dict:
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: a venv links to its base
        namespace = {}
        exec(EDGEPIPE_PROBE, namespace)  # a fixed string of this module, not input
        return namespace["out"]
    code = EDGEPIPE_PROBE + "import json\nprint(json.dumps(out))\n"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": "cannot run %s: %s" % (python, exc)}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "%s failed: %s" % (python, (proc.stderr.strip().splitlines() or ["no output"])[-1])}


def coral_usb_devices() -> list:
    found = []
    for device in glob.glob("/sys/bus/usb/devices/*"):
        try:
            ident = "%s:%s" % (Path(device, "idVendor").read_text().strip(), Path(device, "idProduct").read_text().strip())
        except OSError:
            continue
        if ident in CORAL_USB_IDS:
            found.append(ident)
    return sorted(found)


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def libcamera_present() -> bool:
    return bool(
        shutil.which("rpicam-hello") or shutil.which("libcamera-hello")
        or glob.glob("/usr/lib/*/libcamera.so*") or glob.glob("/usr/lib/libcamera.so*")
    )


def linger_enabled() -> bool | None:
    """Whether this user's systemd manager outlives their SSH sessions (and starts at boot)."""
    try:
        proc = subprocess.run(["loginctl", "show-user", pwd.getpwuid(os.geteuid()).pw_name, "-p", "Linger",
                               "--value"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired, KeyError):
        return None
    return {"yes": True, "no": False}.get(proc.stdout.strip())


def existing_ancestor(path: Path) -> Path:
    """PREFIX, or the directory it will be made in (a fresh device has no PREFIX yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def device_report(layout: Layout, python: str) -> dict:
    """protocol.DEVICE_REPORT, measured here."""
    edgepipe = probe_edgepipe(python)
    systemd = bool(shutil.which("systemctl")) and os.path.isdir("/run/systemd/system")
    return {
        "hostname": platform.node(),
        "os": os_name(),
        "machine": platform.machine(),
        "agent_python": platform.python_version(),
        "python_path": python,
        "edgepipe": edgepipe,
        "camera": {
            "video_devices": sorted(glob.glob("/dev/video*")),
            "libcamera": libcamera_present(),
            "picamera2": bool(edgepipe.get("modules", {}).get("picamera2")),
        },
        "edgetpu": {"usb": coral_usb_devices(), "pcie": os.path.exists("/dev/apex_0")},
        "disk_free": shutil.disk_usage(str(existing_ancestor(layout.root))).free,
        "systemd": systemd,
        "linger": linger_enabled() if systemd else None,
    }


def edgepipe_python(layout: Layout, requested: str | None) -> str:
    """The interpreter that runs edgepipe: --python, else PREFIX/venv (pi-setup.sh), else this one."""
    if requested:
        found = shutil.which(os.path.expanduser(requested))
        if not found:
            raise AgentError("remote python %s does not exist on the device" % requested)
        return os.path.abspath(found)
    venv = layout.root / "venv" / "bin" / "python"
    return str(venv) if os.access(str(venv), os.X_OK) else sys.executable
