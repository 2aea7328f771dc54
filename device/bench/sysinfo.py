"""What a latency number was measured on.

A number without its board, CPU, runtime and thermal state cannot be compared
with another one, so bench records all of it. Every probe is best effort: a
file or tool that is absent gives None, never an error, because the same code
runs on a Pi, a Coral Dev Board, a laptop and CI.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from edgepipe.device.model.classifier import EDGETPU_LIBRARY, default_threads

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
CPUINFO = Path("/proc/cpuinfo")
STATM = Path("/proc/self/statm")
STATUS = Path("/proc/self/status")
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0")

# `vcgencmd get_throttled` bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage",
    1: "arm-frequency-capped",
    2: "throttled",
    3: "soft-temperature-limit",
    16: "under-voltage-occurred",
    17: "arm-frequency-capping-occurred",
    18: "throttling-occurred",
    19: "soft-temperature-limit-occurred",
}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def board_model() -> str | None:
    """'Raspberry Pi 4 Model B Rev 1.4' on a Pi or Coral Dev Board; None on a PC."""
    text = _read_text(DEVICE_TREE_MODEL)
    return (text.strip("\x00 \n") or None) if text else None


def cpu_model() -> str | None:
    """x86 says 'model name'; ARM kernels say 'Model' or 'Hardware' (or nothing)."""
    fields: dict[str, str] = {}
    for line in (_read_text(CPUINFO) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip().lower(), value.strip())
    for key in ("model name", "hardware", "model", "processor"):
        if key in fields and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or None


def os_name() -> str:
    try:
        return platform.freedesktop_os_release()["PRETTY_NAME"]
    except (OSError, KeyError, AttributeError):
        return platform.platform()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


class _EdgeTpuDevice(ctypes.Structure):
    """`struct edgetpu_device` from libedgetpu's edgetpu_c.h."""

    _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]


EDGETPU_DEVICE_TYPES = {0: "pci", 1: "usb"}


def _edgetpu_library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1"))
    except OSError:
        return None


def edgetpu_runtime_version() -> str | None:
    """libedgetpu's own version string, e.g. '... RuntimeVersion(14)', or None when not installed.

    Asks the library itself (its C API) rather than a package manager,
    because the Pi may have it from Coral's apt repository, a tarball or a
    Docker image.
    """
    library = _edgetpu_library()
    if library is None or not hasattr(library, "edgetpu_version"):
        return None
    library.edgetpu_version.restype = ctypes.c_char_p
    library.edgetpu_version.argtypes = []
    raw = library.edgetpu_version()
    return raw.decode("utf-8", "replace") if raw else None


def edgetpu_devices() -> list[str] | None:
    """The Edge TPUs libedgetpu sees ('usb:/sys/bus/usb/...', 'pci:/dev/apex_0'); None without the runtime.

    Tells "runtime not installed" (None) apart from "runtime installed, no
    device plugged in" ([]), which a failed delegate load does not.
    """
    library = _edgetpu_library()
    if library is None or not hasattr(library, "edgetpu_list_devices"):
        return None
    library.edgetpu_list_devices.restype = ctypes.POINTER(_EdgeTpuDevice)
    library.edgetpu_list_devices.argtypes = [ctypes.POINTER(ctypes.c_size_t)]
    library.edgetpu_free_devices.argtypes = [ctypes.POINTER(_EdgeTpuDevice)]
    count = ctypes.c_size_t(0)
    listed = library.edgetpu_list_devices(ctypes.byref(count))
    if not listed:
        return []
    try:
        return [
            f"{EDGETPU_DEVICE_TYPES.get(listed[i].type, listed[i].type)}:{(listed[i].path or b'').decode()}"
            for i in range(count.value)
        ]
    finally:
        library.edgetpu_free_devices(listed)


def edgetpu_absence() -> str:
    """Which half of the Edge TPU is missing, for the error a user sees."""
    devices = edgetpu_devices()
    if devices is None:
        return "the Edge TPU runtime (libedgetpu) is not installed"
    if not devices:
        return (
            f"the Edge TPU runtime is installed ({edgetpu_runtime_version() or 'version unknown'}) "
            "but no Edge TPU device is connected (check the USB cable, `lsusb`, or the PCIe driver)"
        )
    return f"Edge TPU runtime and device(s) {', '.join(devices)} are present but the delegate did not load"


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (it never goes down).

    Linux: VmHWM of /proc/self/status, the peak of this program's own memory.
    getrusage's ru_maxrss survives fork and exec, so a bench started by a big
    process (the demo, with TensorFlow loaded) would report that process's peak.
    """
    for line in (_read_text(STATUS) or "").splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(peak * scale / 2**20, 1)


def current_rss_mb() -> float | None:
    text = _read_text(STATM)
    if not text:
        return None
    resident_pages = int(text.split()[1])
    return round(resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def soc_temperature_c() -> float | None:
    """thermal_zone0 is the SoC on a Raspberry Pi; the kernel reports millidegrees."""
    text = _read_text(THERMAL_ZONE / "temp")
    try:
        return round(int(text.strip()) / 1000, 1) if text else None
    except ValueError:
        return None


def decode_throttled(value: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]


def throttled_state() -> dict[str, Any] | None:
    """`vcgencmd get_throttled` on a Pi: under-voltage and thermal throttling, now and since boot."""
    vcgencmd = shutil.which("vcgencmd")
    if not vcgencmd:
        return None
    try:
        out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        value = int(out.strip().partition("=")[2], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return {"raw": hex(value), "flags": decode_throttled(value)}


def thermal_snapshot() -> dict[str, Any]:
    return {"temperature_c": soc_temperature_c(), "throttled": throttled_state()}


def environment() -> dict[str, Any]:
    """The machine and software a bench ran on (per-run details such as threads sit in each result)."""
    return {
        "hostname": socket.gethostname(),
        "board": board_model(),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": default_threads(),
        "os": os_name(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": _package_version("numpy"),
        "edgepipe": _package_version("edgepipe"),
        "edgetpu_runtime": edgetpu_runtime_version(),
        "edgetpu_devices": edgetpu_devices(),
    }
