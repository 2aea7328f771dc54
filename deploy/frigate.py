"""`edgepipe export frigate BUNDLE --out DIR`: a detection bundle as a Frigate custom model.

Frigate (frigate/detectors/plugins/edgetpu_tfl.py and cpu_tfl.py, through
detector_utils.tflite_detect_raw) reads an SSD's outputs by position: 0
boxes (ymin, xmin, ymax, xmax, fractions of the input), 1 class ids, 2
scores, 3 count; it feeds the model raw uint8 RGB pixels of a region resized
to model.width x model.height (input_dtype int, nhwc); and it reads the label
map as `index label` per line (frigate/util/builtin.load_labels). So the
export checks exactly those: the postprocess op's outputs at those positions,
a 1xHxWx3 uint8 input whose quantization passes pixels through unchanged
(edgepipe's MobileNet preprocessing, mean = std = 127.5, does: within one
step), RGB. A model that fails one is refused in one line, never exported to
give wrong boxes in someone's NVR.

DIR gets the model (the Edge TPU one when the bundle has it, unless
--accelerator cpu), `labelmap.txt` and `frigate.yml`, the config snippet
(model path, width, height, input type, labelmap path, the detector and the
objects to track) with paths as Frigate's container will see them (--model-dir).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_directory
from edgepipe.device.model.bundle import Bundle, load_bundle
from edgepipe.device.model.classifier import pixel_table
from edgepipe.device.model.detect_postprocess import OUTPUTS, find_detection_outputs
from edgepipe.device.model.modelinfo import model_info

FRIGATE_ORDER = OUTPUTS  # boxes, classes, scores, count: what tflite_detect_raw reads at positions 0..3
LABELMAP = "labelmap.txt"
CONFIG = "frigate.yml"
DEFAULT_MODEL_DIR = "/config/model_cache/edgepipe"  # inside Frigate's container: /config is its volume


@dataclass(frozen=True)
class FrigateExport:
    bundle: Path
    out: Path
    accelerator: str = "auto"  # auto: the Edge TPU model when the bundle has one; cpu; edgetpu
    model_dir: str = DEFAULT_MODEL_DIR
    force: bool = False


def labelmap(labels: list[str]) -> str:
    """Frigate's label map: `index label` per line (load_labels splits each line at its first space)."""
    for label in labels:
        if not label.strip() or "\n" in label or label != label.strip():
            raise UserError(f"label {label!r} cannot be written to a Frigate label map (blank, or spaces at its "
                            "ends); rename the class and re-train")
    return "".join(f"{i} {label}\n" for i, label in enumerate(labels))


def check_for_frigate(model: bytes, bundle: Bundle, source: str) -> tuple[int, int]:
    """The model's (width, height), once it is checked to be what Frigate reads right; else one line."""
    layout = find_detection_outputs(model, source)
    found = tuple(sorted(OUTPUTS, key=lambda name: getattr(layout, name)))
    if found != FRIGATE_ORDER:
        raise UserError(f"{source} outputs {', '.join(found)} (found by {layout.found_by}); Frigate reads "
                        f"{', '.join(FRIGATE_ORDER)} by position: re-convert it with `edgepipe convert`")
    if layout.num_classes is not None and layout.num_classes > len(bundle.labels):
        raise UserError(f"{source} detects {layout.num_classes} classes but the bundle's labels name "
                        f"{len(bundle.labels)}; re-create the bundle")
    info = model_info(model, source)
    tensor = info.tensors[info.inputs[0]]
    shape = tuple(tensor.shape)
    if len(info.inputs) != 1 or len(shape) != 4 or shape[0] != 1 or shape[3] != 3 or tensor.dtype != "uint8":
        raise UserError(f"{source} takes {tensor.dtype}{list(shape)}; Frigate feeds one 1xHxWx3 uint8 image "
                        "(input_dtype int, nhwc): convert with uint8 input")
    spec = bundle.input_spec
    passes_pixels = np.abs(pixel_table(spec).astype(int) - np.arange(256)).max() <= 1
    if spec.channel_order != "RGB" or not passes_pixels:
        raise UserError(f"{source} expects {spec.channel_order} pixels normalised with mean {spec.mean:g}, "
                        f"std {spec.std:g} at input scale {spec.scale:g}; Frigate feeds raw RGB pixels, which "
                        "only a model whose input quantization passes them through reads right")
    return shape[2], shape[1]


def frigate_config(model_file: str, width: int, height: int, labels: list[str], edgetpu: bool, model_dir: str) -> str:
    """The snippet of Frigate's config.yml for this model (YAML, by hand: a few fixed keys, quoted labels)."""
    detector = ("  coral:\n    type: edgetpu\n    device: usb\n" if edgetpu
                else "  cpu1:\n    type: cpu\n    num_threads: 3\n")
    track = "".join(f"    - {_yaml_string(label)}\n" for label in labels)
    return (f"# Frigate config snippet from `edgepipe export frigate`: merge into your config.yml and copy this\n"
            f"# folder's {model_file} and {LABELMAP} to {model_dir}/ inside Frigate's container.\n"
            f"detectors:\n{detector}"
            f"model:\n"
            f"  path: {model_dir}/{model_file}\n"
            f"  labelmap_path: {model_dir}/{LABELMAP}\n"
            f"  width: {width}\n  height: {height}\n"
            f"  input_tensor: nhwc\n  input_pixel_format: rgb\n  input_dtype: int\n  model_type: ssd\n"
            f"objects:\n  track:\n{track}")


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def export_frigate(request: FrigateExport) -> dict[str, Any]:
    """Check the bundle's detector against Frigate's reading rules and write DIR; what was written."""
    bundle = load_bundle(request.bundle, verify=True)
    if bundle.task != "detect":
        raise UserError(f"{request.bundle} is a {bundle.task} bundle; Frigate runs detectors: export a bundle "
                        "made by `edgepipe convert` from `train --task detect`")
    edgetpu = request.accelerator == "edgetpu" or (request.accelerator == "auto" and "edgetpu" in bundle.models)
    if edgetpu and "edgetpu" not in bundle.models:
        raise UserError(f"{request.bundle} has no Edge TPU model; compile it (`edgepipe convert --edgetpu`) or "
                        "pass --accelerator cpu")
    chosen = "edgetpu" if edgetpu else "cpu"
    model_file = bundle.models[chosen]
    # The CPU model is the one the compiler started from: its graph shows the outputs the TPU model keeps.
    width, height = check_for_frigate(bundle.read_model("cpu"), bundle, str(bundle.model_path("cpu")))
    data = bundle.read_model(chosen)
    with atomic_directory(request.out, force=request.force) as root:
        (root / Path(model_file).name).write_bytes(data)
        (root / LABELMAP).write_text(labelmap(bundle.labels), encoding="utf-8")
        (root / CONFIG).write_text(frigate_config(Path(model_file).name, width, height, bundle.labels, edgetpu,
                                                  request.model_dir.rstrip("/")), encoding="utf-8")
    return {"out": str(request.out), "model": Path(model_file).name, "accelerator": chosen, "width": width,
            "height": height, "labels": len(bundle.labels), "files": [Path(model_file).name, LABELMAP, CONFIG]}
