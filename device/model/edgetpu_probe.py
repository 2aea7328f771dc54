"""Try the Edge TPU delegate and model once in a short-lived child process.

Coral's libedgetpu builds are tied to old TensorFlow versions and are known to
segfault or hang inside newer TFLite/LiteRT interpreters (google-coral/edgetpu
#812, #841; libedgetpu#67). In the service's own process that is a crash
loop; in a child it is a caught signal and a fallback. The child loads the
delegate, builds the interpreter and runs the bundle's golden set (or one
grey frame for a bare .tflite) and reports the scores; the parent compares
them with the expected answers. The outcome is cached per (runtime, libedgetpu
file, model, device) so a restarted service does not pay for it again.

The child is edgetpu_probe_child.py; library code calls `checked_edgetpu`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text
from edgepipe.core.cachedir import cache_dir

TIMEOUT_ENV = "EDGEPIPE_EDGETPU_PROBE_TIMEOUT"
DEFAULT_TIMEOUT_S = 30.0  # first use loads the USB accelerator's firmware and the model: seconds
CACHE_FILE = "edgetpu-probe.json"
EXIT_UNAVAILABLE = 3  # the child's code for "no Edge TPU here" (a clean failure, not a crash)
CHILD_MODULE = "edgepipe.device.model.edgetpu_probe_child"
KNOWN_FIX = "the known fix is a libedgetpu built for this runtime's TensorFlow version, or --accelerator cpu"


@dataclass
class ProbeOutcome:
    """What the child found. `status`: ok, unavailable, crash, hang, wrong_answers or error."""

    status: str
    reason: str
    runtime: str
    libedgetpu: str
    seconds: float
    comparison: dict[str, Any] | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def probe_timeout() -> float:
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"{TIMEOUT_ENV}={text!r} is not a positive number of seconds")
    return value


def cache_path() -> Path:
    return cache_dir(CACHE_FILE)


def _ldconfig_paths(name: str) -> list[str]:
    try:
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("=>", 1)[1].strip() for line in text.splitlines()
            if line.strip().startswith(name + " ") and "=>" in line]


def library_file(name: str) -> Path | None:
    """The file the dynamic loader would open for `name`, found without loading it.

    LD_LIBRARY_PATH first, then the loader's cache, then the default
    directories: the order of dlopen(3) for a library without RPATH.
    """
    if platform.system() != "Linux":
        return None
    dirs = [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    candidates = [os.path.join(d, name) for d in dirs] + _ldconfig_paths(name)
    multiarch = [f"/usr/lib/{platform.machine()}-linux-gnu", f"/lib/{platform.machine()}-linux-gnu"]
    candidates += [os.path.join(d, name) for d in multiarch + ["/lib", "/usr/lib", "/usr/local/lib"]]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return Path(os.path.realpath(candidate))
    return None


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cache_key(runtime: str, library: Path, model_sha256: str, device: str | None) -> str:
    """The library is identified by its content: a rebuilt libedgetpu is a new library, whatever its version says."""
    return "|".join([runtime, f"{library}@{_file_sha256(library)[:16]}", model_sha256, device or "default"])


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _cached(key: str) -> ProbeOutcome | None:
    entry = _read_cache().get(key)
    if not isinstance(entry, dict):
        return None
    try:
        outcome = ProbeOutcome(**{k: entry[k] for k in ("status", "reason", "runtime", "libedgetpu", "seconds")},
                               comparison=entry.get("comparison"), cached=True)
    except (KeyError, TypeError):
        return None
    return outcome if isinstance(outcome.status, str) and isinstance(outcome.reason, str) else None


def _store(key: str, outcome: ProbeOutcome) -> None:
    """Cache an outcome; a probe that could not be cached is only slower next time, so OSError is ignored."""
    entries = _read_cache()
    entries[key] = {k: v for k, v in asdict(outcome).items() if k != "cached"}
    try:
        atomic_write_text(cache_path(), json.dumps(entries, indent=2))
    except OSError:
        pass


def _child_lines(stdout: str) -> dict[str, Any]:
    """The child's JSON lines merged (later lines win); junk lines (a library's own prints) are ignored."""
    merged: dict[str, Any] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                merged.update(json.loads(line))
            except ValueError:
                continue
    return merged


def run_child(model: Path, device: str | None, runtime: str, timeout: float) -> tuple[ProbeOutcome, np.ndarray | None]:
    """Run the probe child once (no cache): the outcome, and the scores it reported when it ran."""
    argv = [sys.executable, "-m", CHILD_MODULE, str(model)] + (["--device", device] if device else [])
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        seen = _child_lines(exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or "")
        library = seen.get("libedgetpu", "unknown")
        return ProbeOutcome("hang", f"the Edge TPU probe hung for {timeout:g} s and was killed (libedgetpu {library}, "
                                    f"{runtime}); {KNOWN_FIX}", runtime, library, timeout), None
    seconds = time.perf_counter() - started
    seen = _child_lines(proc.stdout)
    library = seen.get("libedgetpu") or "unknown"
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else str(-proc.returncode)
        reason = f"the Edge TPU delegate crashed the probe process with {name} (libedgetpu {library}, {runtime}); {KNOWN_FIX}"
        return ProbeOutcome("crash", reason, runtime, library, seconds), None
    if proc.returncode == EXIT_UNAVAILABLE:
        return ProbeOutcome("unavailable", seen.get("error", "the Edge TPU is not usable"), runtime, library, seconds), None
    scores = seen.get("scores")
    if proc.returncode != 0 or not isinstance(scores, list):
        detail = seen.get("error") or (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return ProbeOutcome("error", f"the Edge TPU probe failed: {detail} (libedgetpu {library}, {runtime})",
                            runtime, library, seconds), None
    try:
        array = np.asarray(scores, dtype=np.float32)
    except (TypeError, ValueError):
        return ProbeOutcome("error", "the Edge TPU probe reported malformed scores", runtime, library, seconds), None
    if array.ndim != 2 or not np.isfinite(array).all():
        return ProbeOutcome("error", f"the Edge TPU model gave non-finite or misshaped scores {array.shape} "
                                     f"(libedgetpu {library}, {runtime})", runtime, library, seconds), None
    return ProbeOutcome("ok", "", runtime, library, seconds), array


def judge(outcome: ProbeOutcome, scores: np.ndarray | None, golden: Any, min_agreement: float) -> ProbeOutcome:
    """Compare the child's golden-set scores with the expected answers (golden: a GoldenSet or None)."""
    if not outcome.ok or golden is None or scores is None:
        return outcome
    from .golden import compare

    comparison = compare(golden, scores)
    outcome.comparison = comparison.to_json()
    if comparison.agreement < min_agreement:
        outcome.status = "wrong_answers"
        outcome.reason = (
            f"the Edge TPU model disagrees with the expected answers on the golden set: top-1 agreement "
            f"{comparison.agreement:.1%} ({comparison.agreed}/{comparison.n}) < {min_agreement:.0%}, largest score "
            f"difference {comparison.max_abs_diff:.3f} (libedgetpu {outcome.libedgetpu}, {outcome.runtime})"
        )
    return outcome


def checked_edgetpu(probe_target: Path, model_sha256: str, library_name: str, device: str | None, runtime: str,
                    golden: Callable[[], tuple[Any, float]], use_cache: bool = True) -> ProbeOutcome | None:
    """The probe's verdict on using the Edge TPU here, from the cache or a fresh child.

    `golden` gives (GoldenSet or None, minimum top-1 agreement); it is only
    called when the child ran. None when the library is not installed at all:
    loading it then fails cleanly (none of its code runs), so there is nothing
    to probe.
    """
    library = library_file(library_name)
    if library is None:
        return None
    key = cache_key(runtime, library, model_sha256, device)
    if use_cache and (hit := _cached(key)) is not None:
        return hit
    outcome, scores = run_child(probe_target, device, runtime, probe_timeout())
    outcome = judge(outcome, scores, *golden()) if outcome.ok else outcome
    if outcome.status != "unavailable":  # a device plugged in later must be found without clearing a cache
        _store(key, outcome)
    return outcome
