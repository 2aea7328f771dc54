"""How a command opens and reads a model (classify, run) and checks a bundle (verify): each
option once, with its default, flag and help (edgepipe.core.options).

Light on purpose (no numpy, no runtime): the command line imports it to build its parsers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.accelerators import ACCELERATORS, VERIFY_ACCELERATORS
from edgepipe.core.args import positive_int, unit_interval
from edgepipe.core.options import flag

from .imageheader import DEFAULT_MAX_PIXELS

EDGETPU_DEVICE_HELP = "which Edge TPU when there are several: usb:0, pci:0, usb or pci (default: the first)"


def unknown_mode(text: str) -> str | float:
    """--unknown: auto, off, or a threshold in [0, 1]."""
    if text in ("auto", "off"):
        return text
    try:
        return unit_interval(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, off or a threshold between 0 and 1") from None


def label_list(text: str) -> frozenset[str]:
    """--classes: comma-separated labels (checked against the model's when it is opened)."""
    labels = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not labels:
        raise argparse.ArgumentTypeError(f"{text!r} names no label; give LABEL[,LABEL...]")
    return labels


def percentage(text: str) -> float:
    """'95' or '95%' -> 0.95."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage like 95") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 100")
    return value / 100


@dataclass(frozen=True)
class ModelOptions:
    """The model a command classifies with, where it runs, and what it reports (classify and run)."""

    labels: Path | None = flag("--labels", default=None, parse=Path, metavar="FILE",
                               help="labels for a bare .tflite: one per line, or `index label` per line (a bundle "
                                    "has its own)")
    top_k: int = flag("--top-k", default=5, parse=positive_int, metavar="K", help="how many classes to report")
    threads: int | None = flag("--threads", default=None, parse=positive_int, metavar="N",
                               help="CPU threads per interpreter (default: all cores; for run, see --workers)")
    accelerator: str = flag("--accelerator", default="auto", choices=ACCELERATORS,
                            help="cpu; edgetpu (Coral, needs libedgetpu.so.1); imx500 (run: the Raspberry Pi AI "
                                 "Camera, whose sensor runs the bundle's IMX500 model); auto: (run) the AI Camera when "
                                 "one is attached and the bundle has an IMX500 model, else the Edge TPU model when a "
                                 "TPU is usable, else the CPU model, and say which")
    edgetpu_device: str | None = flag("--edgetpu-device", default=None, metavar="DEVICE", help=EDGETPU_DEVICE_HELP)
    max_image_pixels: int = flag("--max-image-pixels", default=DEFAULT_MAX_PIXELS, parse=positive_int, metavar="N",
                                 help="skip an image file whose header declares more pixels (checked before decoding)")
    threshold: float | None = flag("--threshold", default=None, parse=unit_interval, metavar="P",
                                   help="report only classes (a detector: objects) scoring at least P, 0-1 (default: "
                                        "0 for a classifier, 0.5 for a detector: its score floor)")
    classes: frozenset[str] | None = flag("--classes", default=None, parse=label_list, metavar="LABEL[,LABEL...]",
                                          help="a detector: report only objects of these labels (default: all)")
    max_objects: int = flag("--max-objects", default=20, parse=positive_int, metavar="N",
                            help="a detector: report at most the N best objects a frame")
    unknown: str | float = flag(
        "--unknown", default="auto", parse=unknown_mode, metavar="auto|off|P",
        help='report "label": "unknown" (best class still in top) when the confidence is below the threshold: auto = '
             "the one convert calibrated into the bundle (none for a bare .tflite); off; or P in [0, 1] on the "
             "bundle's score (max softmax for a bare .tflite)")


@dataclass(frozen=True)
class VerifyOptions:
    bundle: Path
    accelerator: str = flag("--accelerator", default="all", choices=VERIFY_ACCELERATORS,
                            help="which model to check: all (every model in the bundle; the Edge TPU model is "
                                 "skipped when no Edge TPU is usable here), cpu or edgetpu; imx500: the golden set "
                                 "injected into the AI Camera's sensor")
    min_agreement: float | None = flag(
        "--min-agreement", default=None, parse=percentage, metavar="PERCENT",
        help="minimum top-1 agreement for every model checked (default: the bundle's, 100 cpu / 95 edgetpu)")
    edgetpu_device: str | None = flag("--edgetpu-device", default=None, metavar="DEVICE", help=EDGETPU_DEVICE_HELP)
    threads: int | None = flag("--threads", default=None, parse=positive_int, metavar="N",
                               help="CPU threads (default: all cores)")
