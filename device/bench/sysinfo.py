"""What a latency number was measured on.

A number without its board, CPU, runtime and thermal state cannot be compared
with another one, so bench records all of it. Every probe is best effort: a
file or tool that is absent gives None, never an error, because the same code
runs on a Pi, a Coral Dev Board, a laptop and CI. What the runtime and `run
--serve` read too (Edge TPU runtime, temperature, throttling) is read once, in
device/host.py.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import socket
import sys
from pathlib import Path
from typing import Any

from ..host import (default_threads, edgetpu_devices, edgetpu_runtime_version, soc_temperature_c, throttle_flags,
                    throttled_bits)

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
CPUINFO = Path("/proc/cpuinfo")
STATM = Path("/proc/self/statm")
STATUS = Path("/proc/self/status")

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


def throttled_state() -> dict[str, Any] | None:
    """The Pi firmware's throttle word and the flags set in it, now and since boot (None off a Pi)."""
    bits = throttled_bits()
    if bits is None:
        return None
    flags = throttle_flags(bits)
    return {"raw": hex(bits), "flags": [name for name, state in flags.items() if state["now"]]
            + [f"{name}_since_boot" for name, state in flags.items() if state["since_boot"]]}


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
