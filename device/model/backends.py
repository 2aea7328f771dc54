"""The TFLite runtimes a device may have, found lightest first, and the Edge TPU delegate
loaded through whichever was found.

Backends are tried in order: LiteRT, tflite_runtime (legacy; numpy < 2), then
TensorFlow's own interpreter, which is only the last resort on a workstation
that has neither LiteRT nor tflite_runtime and is never imported when one of
them is present.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterator

from edgepipe.core.errors import UserError

from ..host import edgetpu_library

EDGETPU_INSTALL_HINT = (
    "install the Edge TPU runtime (Coral's apt repository: sudo apt-get install libedgetpu1-std) "
    "and plug in the accelerator"
)

# (name reported, module holding Interpreter/load_delegate, distribution for the version)
_BACKENDS = (
    ("ai_edge_litert", "ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime", "tflite_runtime.interpreter", "tflite-runtime"),
    ("tensorflow.lite", "tensorflow", "tensorflow"),
)


class EdgeTpuUnavailable(UserError):
    """The Edge TPU runtime or device is missing; the message says how to get it."""


@dataclass(frozen=True)
class Backend:
    name: str
    version: str
    interpreter_class: Callable[..., Any]
    load_delegate: Callable[..., Any]


def find_backend() -> Backend:
    """The first importable TFLite runtime, lightest first."""
    for name, module_name, distribution in _BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if name == "tensorflow.lite":
            module = module.lite
            load_delegate = module.experimental.load_delegate
        else:
            load_delegate = module.load_delegate
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return Backend(name, version, module.Interpreter, load_delegate)
    raise UserError(
        "no TFLite runtime is installed; install one with: pip install 'edgepipe[device]' "
        "(or pip install tflite-runtime on older Pis)"
    )


def threads_text(threads: int, interpreters: int = 1) -> str:
    """"2 threads", or "2 interpreters x 1 thread" for several: one wording in every line that says it."""
    text = f"{threads} thread" + ("" if threads == 1 else "s")
    return text if interpreters == 1 else f"{interpreters} interpreters x {text}"


@contextlib.contextmanager
def _quiet_failed_delegate() -> Iterator[None]:
    """LiteRT's Delegate.__del__ prints an 'Exception ignored' traceback after a failed
    load; the user gets our one-line message instead."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if "Delegate.__del__" not in repr(unraisable.object):
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def load_edgetpu_delegate(backend: Backend, device: str | None = None) -> Any:
    """The Edge TPU delegate for `device` (usb:0, pci:0, usb, pci; None = the first found)."""
    library = edgetpu_library()
    options = {"device": device} if device else {}
    with _quiet_failed_delegate():
        try:
            return backend.load_delegate(library, options)
        except (OSError, ValueError, RuntimeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        which = f" {device}" if device else ""
        raise EdgeTpuUnavailable(
            f"cannot use the Edge TPU{which}: {library} did not load ({detail}); "
            f"{EDGETPU_INSTALL_HINT}, or run the CPU model with --accelerator cpu"
        )

