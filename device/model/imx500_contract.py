"""What the IMX500 sensor does to pixels and scores, defined once for convert, evaluate and the device.

On the sensor a pixel p becomes the int8 input p - 128 (scale 1/128) when the
network carries no normalisation of its own, so the network sees p/128 - 1,
not the p/127.5 - 1 the CPU model was trained on; the softmax comes back as
8-bit levels. Picamera2 hands the outputs over as float32 in `CnnOutputTensor`
(shapes in `CnnOutputTensorInfo`, Fortran order), and takes an injected input
tensor as planar 8-bit rows padded to 32 bytes, heights to 2 lines
(IMX500.prepare_tensor_for_injection's layout).

The bundle's "imx500" block names the files convert wrote; `imx500_block`
reads and checks it before the device trusts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepipe.core.errors import UserError

IMX500_DIR = "imx500"
PACKAGE = "packerOut.zip"
QUANTIZED_MODEL = "quantized.keras"
RPK = "network.rpk"
SENSOR_OFFSET = 128
OUTPUT_LEVELS = 255
SENSOR_INPUT = {
    "channel_order": "RGB",
    "mean": 128.0,
    "std": 128.0,
    "dtype": "int8",
    "scale": 1 / 128,
    "zero_point": 0,
    "rule": "the sensor feeds q = p - 128 (scale 1/128): the network sees p/128 - 1",
}
ROW_ALIGN = 32
HEIGHT_ALIGN = 2


def levels_to_scores(levels: np.ndarray) -> np.ndarray:
    """uint8 output levels as the [0, 1] scores they stand for."""
    return levels.astype(np.float32) / np.float32(OUTPUT_LEVELS)


@dataclass(frozen=True)
class Imx500Block:
    """bundle.json's "imx500", checked: the package for imx500-package and the simulated-sensor model."""

    package: str
    quantized_model: str
    package_sha256: str
    accuracy: float | None


def imx500_block(manifest: dict[str, Any], where: str) -> Imx500Block | None:
    """The bundle's IMX500 model, or None when it has none; a malformed block is a one-line error."""
    block = manifest.get("imx500")
    if block is None:
        return None
    files = manifest.get("files", {})
    if not isinstance(block, dict):
        raise UserError(f"{where}: \"imx500\" is not an object; re-convert with `edgepipe convert --imx500`")
    names = {key: block.get(key) for key in ("package", "quantized_model")}
    for key, name in names.items():
        if not isinstance(name, str) or name not in files:
            raise UserError(f"{where}: imx500.{key} {name!r} is not listed in `files`; re-convert with "
                            "`edgepipe convert --imx500`")
    accuracy = block.get("accuracy", {}).get("simulated_sensor") if isinstance(block.get("accuracy"), dict) else None
    return Imx500Block(names["package"], names["quantized_model"], files[names["package"]],
                       accuracy if isinstance(accuracy, (int, float)) else None)


def padded_size(width: int, height: int) -> tuple[int, int]:
    return (width + ROW_ALIGN - 1) // ROW_ALIGN * ROW_ALIGN, (height + HEIGHT_ALIGN - 1) // HEIGHT_ALIGN * HEIGHT_ALIGN


def injection_tensor(rgb: np.ndarray, signed: bool = True, input_format: str = "RGB") -> bytes:
    """uint8 RGB pixels (H, W, 3) as the bytes the sensor takes by tensor injection: planar, padded,
    p - 128 as int8 for a signed input."""
    height, width = rgb.shape[:2]
    padded_w, padded_h = padded_size(width, height)
    order = (0, 1, 2) if input_format == "RGB" else (2, 1, 0)
    dtype = np.int8 if signed else np.uint8
    planes = np.zeros((3, padded_h, padded_w), dtype)
    values = rgb.astype(np.int16) - (SENSOR_OFFSET if signed else 0)
    for plane, channel in enumerate(order):
        planes[plane, :height, :width] = values[:, :, channel]
    return planes.tobytes()


def pixels_from_injection(data: bytes, width: int, height: int, signed: bool = True,
                          input_format: str = "RGB") -> np.ndarray:
    """The uint8 RGB pixels an injected tensor stands for (what the sensor's network receives)."""
    padded_w, padded_h = padded_size(width, height)
    if len(data) != 3 * padded_w * padded_h:
        raise UserError(f"an injected tensor of {len(data)} bytes is not a {width}x{height} image's "
                        f"{3 * padded_w * padded_h}")
    planes = np.frombuffer(data, np.int8 if signed else np.uint8).reshape(3, padded_h, padded_w)
    pixels = planes[:, :height, :width].astype(np.int16) + (SENSOR_OFFSET if signed else 0)
    order = (0, 1, 2) if input_format == "RGB" else (2, 1, 0)
    return np.stack([pixels[order.index(c)] for c in range(3)], axis=-1).astype(np.uint8)
