"""The machine the device runtime runs on: its cores, its Edge TPU runtime and, on a
Raspberry Pi, the SoC temperature and the firmware's throttle state.

One reader each, shared by the runtime (the Edge TPU probe), `run --serve`'s
metrics and `bench`'s environment record, so the same fact is read and spelt one
way everywhere. Every probe is best effort: what is absent gives None, never an
error, because the same code runs on a Pi, a Coral Dev Board, a laptop and CI.
This module imports nothing of the device's rooms: they all stand on it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
from pathlib import Path

EDGETPU_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
EDGETPU_DEVICE_TYPES = {0: "pci", 1: "usb"}
THERMAL_ZONE = Path("/sys/class/thermal/thermal_zone0/temp")  # the SoC on a Raspberry Pi
PI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")  # Raspberry Pi OS kernels
# `get_throttled` bits (Raspberry Pi firmware documentation): the state now; the same bit
# plus SINCE_BOOT_SHIFT says whether it has happened since boot.
THROTTLE_FLAGS = {0: "under_voltage", 1: "arm_frequency_capped", 2: "throttled", 3: "soft_temperature_limit"}
SINCE_BOOT_SHIFT = 16


def default_threads() -> int:
    """The cores this process may use (respects taskset/cgroup affinity, unlike cpu_count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def edgetpu_library() -> str:
    """The name the dynamic loader resolves (LD_LIBRARY_PATH, then the system's directories)."""
    return EDGETPU_LIBRARY.get(platform.system(), "libedgetpu.so.1")


class _EdgeTpuDevice(ctypes.Structure):
    """`struct edgetpu_device` from libedgetpu's edgetpu_c.h."""

    _fields_ = [("type", ctypes.c_int), ("path", ctypes.c_char_p)]


def _load_edgetpu_library() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(edgetpu_library())
    except OSError:
        return None


def edgetpu_runtime_version() -> str | None:
    """libedgetpu's own version string, e.g. '... RuntimeVersion(14)', or None when not installed.

    Asks the library itself (its C API) rather than a package manager,
    because the Pi may have it from Coral's apt repository, a tarball or a
    Docker image.
    """
    library = _load_edgetpu_library()
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
    library = _load_edgetpu_library()
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


def _read_int(path: Path, base: int = 10) -> int | None:
    """A number from a sysfs file, None where it does not exist (not a Pi, no thermal zone)."""
    try:
        return int(path.read_text().strip(), base)
    except (OSError, ValueError):
        return None


def soc_temperature_c(zone: Path = THERMAL_ZONE) -> float | None:
    """The SoC's temperature; the kernel reports millidegrees."""
    millidegrees = _read_int(zone)
    return round(millidegrees / 1000, 1) if millidegrees is not None else None


def throttled_bits(sysfs: Path = PI_THROTTLED) -> int | None:
    """The Pi firmware's `get_throttled` word, None off a Pi.

    The kernel's sysfs file is read first (no process to start, cheap enough for
    every metrics scrape); `vcgencmd get_throttled` answers where the kernel has none.
    """
    value = _read_int(sysfs, base=16)
    if value is not None:
        return value
    vcgencmd = shutil.which("vcgencmd")
    if not vcgencmd:
        return None
    try:
        out = subprocess.run([vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=5).stdout
        return int(out.strip().partition("=")[2], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def throttle_flags(bits: int) -> dict[str, dict[str, bool]]:
    """Each throttle flag, now and since boot: {"under_voltage": {"now": False, "since_boot": True}, ...}."""
    return {flag: {"now": bool(bits >> bit & 1), "since_boot": bool(bits >> (bit + SINCE_BOOT_SHIFT) & 1)}
            for bit, flag in THROTTLE_FLAGS.items()}
