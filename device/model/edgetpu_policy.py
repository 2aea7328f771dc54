"""Which model file and delegate a run gets under the user's --accelerator, and whether the
Edge TPU may be loaded in this process at all.

The Edge TPU probe (edgetpu_probe) tries the delegate and model once in a child
process and caches its verdict; this policy reads that verdict, so a libedgetpu
that crashes, hangs or answers wrong costs a fallback to the CPU model (auto) or
one error line (edgetpu), never the service.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError

from ..host import edgetpu_library
from .backends import Backend, EdgeTpuUnavailable, load_edgetpu_delegate
from .bundle import Bundle

EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"


class EdgeTpuRefused(EdgeTpuUnavailable):
    """The probe saw the Edge TPU stack crash, hang or answer wrong: this process must not load it."""


def is_edgetpu_model(data: bytes) -> bool:
    """Compiled models run their mapped part as one custom op with this code."""
    return EDGETPU_CUSTOM_OP in data


def probe_verdict(target: Path, model_sha256: str, backend: Backend, device: str | None, bundle: Bundle | None):
    """The Edge TPU probe's outcome for this model here (cached; see edgetpu_probe), None without libedgetpu."""
    from .edgetpu_probe import checked_edgetpu
    from .golden import DEFAULT_MIN_AGREEMENT, read_golden

    def golden():
        found = read_golden(bundle) if bundle is not None else None
        return found, (found.min_agreement if found else DEFAULT_MIN_AGREEMENT)["edgetpu"]

    return checked_edgetpu(target, model_sha256, edgetpu_library(), device, f"{backend.name} {backend.version}", golden)


def _edgetpu_refusal(verdict: Any) -> str | None:
    """Why the probe says the Edge TPU must not be used in this process, or None when it may be.

    "unavailable" (no device, library refuses) is a clean failure the normal
    load reports with its install hint, so it is not a refusal.
    """
    from .edgetpu_probe import cache_path

    if verdict is None or verdict.status in ("ok", "unavailable"):
        return None
    return verdict.reason + (f" (cached probe result: delete {cache_path()} to probe again)" if verdict.cached else "")


def choose_bundle_model(bundle: Bundle, accelerator: str, backend: Backend, edgetpu_device: str | None, probe: bool):
    """(model path, accelerator, delegate, note) for a bundle under the user's --accelerator."""
    tpu_model = bundle.model_path("edgetpu")
    cpu_model = bundle.model_path("cpu")
    refusal = None
    if probe and tpu_model is not None and accelerator in ("edgetpu", "auto"):
        sha = str(bundle.manifest.get("files", {}).get(bundle.models["edgetpu"], ""))
        refusal = _edgetpu_refusal(probe_verdict(bundle.root, sha, backend, edgetpu_device, bundle))
    if accelerator == "cpu":
        if cpu_model is None:
            raise UserError(f"bundle {bundle.root} has no CPU model; use --accelerator edgetpu")
        return cpu_model, "cpu", None, ""
    if accelerator == "edgetpu":
        if tpu_model is None:
            raise UserError(
                f"bundle {bundle.root} has no Edge TPU model (model_edgetpu.tflite); compile it with "
                "`edgepipe convert` on a machine with edgetpu_compiler, or use --accelerator cpu"
            )
        if refusal:
            raise EdgeTpuRefused(f"cannot use the Edge TPU: {refusal}")
        return tpu_model, "edgetpu", load_edgetpu_delegate(backend, edgetpu_device), ""
    if tpu_model is None:
        return cpu_model, "cpu", None, "auto: the bundle has no Edge TPU model"
    if refusal and cpu_model is not None:
        return cpu_model, "cpu", None, f"auto: Edge TPU not usable, using the CPU model: {refusal}"
    if refusal:
        raise EdgeTpuRefused(f"cannot use the Edge TPU: {refusal}")
    try:
        delegate = load_edgetpu_delegate(backend, edgetpu_device)
    except EdgeTpuUnavailable as exc:
        if cpu_model is None:
            raise
        return cpu_model, "cpu", None, f"auto: Edge TPU not usable, using the CPU model ({exc})"
    return tpu_model, "edgetpu", delegate, "auto: Edge TPU found"


def choose_file_delegate(path: Path, data: bytes, accelerator: str, backend: Backend, edgetpu_device: str | None,
                          probe: bool):
    """(accelerator, delegate, note) for a bare .tflite under the user's --accelerator."""
    compiled = is_edgetpu_model(data)
    if not compiled:
        if accelerator == "edgetpu":
            raise UserError(
                f"{path} is not compiled for the Edge TPU (no edgetpu-custom-op); compile it with "
                "edgetpu_compiler, or use --accelerator cpu"
            )
        return "cpu", None, "auto: not an Edge TPU model" if accelerator == "auto" else ""
    if accelerator == "cpu":
        raise UserError(
            f"{path} is compiled for the Edge TPU (it contains edgetpu-custom-op) and cannot run on the CPU; "
            "use --accelerator edgetpu, or the CPU model (model.tflite)"
        )
    if probe:
        verdict = probe_verdict(path, hashlib.sha256(data).hexdigest(), backend, edgetpu_device, None)
        if refusal := _edgetpu_refusal(verdict):
            raise EdgeTpuRefused(f"cannot use the Edge TPU: {refusal}")
    return "edgetpu", load_edgetpu_delegate(backend, edgetpu_device), "auto: Edge TPU model" if accelerator == "auto" else ""

