"""The one definition of image preprocessing.

Training, evaluation, conversion (representative data and accuracy checks)
and the device all call these functions, so the pixels a model sees on the Pi
are the pixels it was trained and measured on. OpenCV decodes and resizes;
everything else is vectorised numpy.
"""

from __future__ import annotations

import numbers
import os
import stat
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgepipe.core.errors import UserError
from .imageheader import DEFAULT_MAX_PIXELS, image_dimensions

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_BYTES_PER_PIXEL = 8  # a larger file cannot be an image within the pixel limit (16-bit RGBA, uncompressed)
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("stretch", "center_crop")


class ImageReadError(UserError):
    """An image file that cannot be decoded (corrupt, truncated, empty, not an image)."""


MAX_SIDE = 8192  # pixels of a model input's side
MAX_NORMALISATION = 65535.0  # |mean|, std and scale of any sane preprocessing (NaN and inf fail the range test)
MIN_STD = 1e-6


@dataclass(frozen=True)
class InputSpec:
    """How a frame becomes the model's input tensor.

    The model sees float pixels ``(p - mean) / std`` in `channel_order`; for a
    quantized input tensor that float is then quantized with `scale` and
    `zero_point` to `dtype`. MobileNet's ``x / 127.5 - 1`` is mean=std=127.5.
    """

    height: int
    width: int
    channel_order: str = "RGB"
    resize: str = "stretch"
    mean: float = 127.5
    std: float = 127.5
    dtype: str = "float32"
    scale: float = 0.0
    zero_point: int = 0

    def __post_init__(self) -> None:
        for name, low, high in (("height", 1, MAX_SIDE), ("width", 1, MAX_SIDE), ("zero_point", -128, 255)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
                raise UserError(f"input {name} is {str(value)[:40]!r}, not an integer from {low} to {high}")
        for name, low, high in (("mean", -MAX_NORMALISATION, MAX_NORMALISATION),
                                ("std", MIN_STD, MAX_NORMALISATION), ("scale", 0.0, MAX_NORMALISATION)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Real) or isinstance(value, bool) or not low <= value <= high:
                raise UserError(f"input {name} is {str(value)[:40]!r}, not a finite number from {low:g} to {high:g}"
                                + (" (a std of 0 divides by zero)" if name == "std" else ""))
        if not all(isinstance(getattr(self, n), str) for n in ("channel_order", "resize", "dtype")):
            raise UserError("input channel_order, resize and dtype must be strings")
        if self.channel_order not in CHANNEL_ORDERS:
            raise UserError(f"channel order {self.channel_order!r} is not one of {CHANNEL_ORDERS}")
        if self.resize not in RESIZE_MODES:
            raise UserError(f"resize mode {self.resize!r} is not one of {RESIZE_MODES}")
        if self.dtype not in ("float32", "uint8", "int8"):
            raise UserError(f"input dtype {self.dtype!r} is not float32, uint8 or int8")
        if self.dtype != "float32" and not self.scale > 0:
            raise UserError(f"a {self.dtype} input needs a positive quantization scale")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InputSpec":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def with_tensor(self, dtype: str, scale: float, zero_point: int) -> "InputSpec":
        """The same preprocessing, quantized for a particular input tensor."""
        return replace(self, dtype=dtype, scale=float(scale), zero_point=int(zero_point))


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode any common image file to 8-bit BGR, the layout OpenCV and cameras give.

    cv2.IMREAD_COLOR applies the EXIF orientation, converts grayscale, RGBA,
    CMYK and 16-bit images to 8-bit 3-channel BGR. The pixel count declared in
    the header is checked against `max_pixels` before OpenCV decodes anything,
    so a tiny file declaring a huge image costs nothing.
    """
    path = Path(path)
    try:
        # O_NONBLOCK and fstat: a named pipe or a device would block the whole batch on read
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageReadError(f"{path} is not a regular file (a pipe, device or folder); skipped")
            if info.st_size > max_pixels * MAX_BYTES_PER_PIXEL:
                raise ImageReadError(f"image {path} is {info.st_size / 1e6:.0f} MB, more than an image of at most "
                                     f"{max_pixels / 1e6:g} MP can be; skipped")
            data = np.frombuffer(f.read(info.st_size + 1), dtype=np.uint8)
    except OSError as exc:
        raise ImageReadError(f"cannot read image {path}: {exc.strerror or exc}") from exc
    return decode_image(data, str(path), max_pixels)


def decode_image(data: bytes | np.ndarray, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image already in memory (named `name` in messages) to 8-bit BGR, with load_image's checks."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    if buffer.size == 0:
        raise ImageReadError(f"image {name} is empty (0 bytes)")
    dimensions = image_dimensions(buffer[:1 << 20].tobytes())
    if dimensions is None:
        raise ImageReadError(f"image {name} is not a readable image (no PNG, JPEG, BMP or WebP header, or a cut one)")
    width, height = dimensions
    if width * height > max_pixels:
        raise ImageReadError(f"image {name} declares {width}x{height} pixels ({width * height / 1e6:.0f} MP), more "
                             f"than the {max_pixels / 1e6:g} MP limit (--max-image-pixels); skipped")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "OpenCV error"
        raise ImageReadError(f"image {name} cannot be decoded ({detail})") from None
    if image is None or image.size == 0:
        raise ImageReadError(f"image {name} is not a readable image (corrupt, truncated or another format)")
    return image


def crop_window(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """The middle of a width x height frame with the model's aspect (width / height): x0, y0, width, height.

    One definition for cropping a frame and for mapping a detector's boxes back into it.
    """
    if width / height > aspect:
        new_w = max(1, round(height * aspect))
        return (width - new_w) // 2, 0, new_w, height
    new_h = max(1, round(width / aspect))
    return 0, (height - new_h) // 2, width, new_h


ENLARGE_INTERPOLATION = cv2.INTER_LINEAR


def shrink(bgr: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
    """Shrink to width x height: INTER_AREA by the largest whole factor k, then INTER_LINEAR the
    rest of the way (less than 2x, where bilinear does not alias).

    Why not INTER_AREA all the way: at a fractional factor (640x480 to 224x224) OpenCV's area
    resampling costs 1.3-1.6 ms per frame, a fifth of an inference on a Pi; at a whole factor it
    takes its fast path (each output pixel the mean of a k x k block), and this costs 0.25 ms with
    the same answers as INTER_AREA (benchmarks/bench_interpolation.py). The frame is first cut to a
    multiple of k (at most k - 1 pixels off the right and bottom edges) so the factor is exact.
    """
    h, w = bgr.shape[:2]
    k = min(w // width, h // height)
    if k >= 2:
        bgr = cv2.resize(bgr[: h - h % k, : w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(bgr, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def frame_block_factor(width: int, height: int, spec: InputSpec) -> int:
    """The whole factor k by which `resize_to_input` first shrinks a width x height frame (each output
    pixel of that step the mean of a k x k block); 1 when it does not. A source that can decode a
    frame already shrunk by a divisor of k (a JPEG at 1/2, 1/4, 1/8) does that step's work."""
    if spec.resize == "center_crop":
        _, _, width, height = crop_window(width, height, spec.width / spec.height)
    if width * height <= spec.height * spec.width:
        return 1
    return max(1, min(width // spec.width, height // spec.height))


def resize_to_input(bgr: np.ndarray, spec: InputSpec, out: np.ndarray | None = None,
                    interpolation: int | None = None) -> np.ndarray:
    """Resize (or centre-crop then resize) an 8-bit BGR frame and reorder channels.

    Returns uint8 HxWx3 in `spec.channel_order`, written into `out` when given (a
    preallocated HxWx3 uint8 buffer, so a video loop allocates nothing per frame).
    Shrinking is `shrink`; `interpolation` (an OpenCV flag) replaces it with one plain resize,
    for `benchmarks/bench_interpolation.py` to compare them.
    """
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    elif bgr.shape[2] == 4:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_BGRA2BGR)
    h, w = bgr.shape[:2]
    if spec.resize == "center_crop":
        x0, y0, w, h = crop_window(w, h, spec.width / spec.height)
        bgr = bgr[y0 : y0 + h, x0 : x0 + w]
    if (h, w) != (spec.height, spec.width):
        if h * w <= spec.height * spec.width:
            bgr = cv2.resize(bgr, (spec.width, spec.height), dst=out, interpolation=ENLARGE_INTERPOLATION)
        elif interpolation is None:
            bgr = shrink(bgr, spec.width, spec.height, out)
        else:
            bgr = cv2.resize(bgr, (spec.width, spec.height), dst=out, interpolation=interpolation)
    elif out is not None:
        np.copyto(out, bgr)
    if out is not None:
        bgr = out
    if spec.channel_order == "RGB":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr if out is not None else None)  # in place into `out`
    return np.ascontiguousarray(bgr)


def normalize(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels to the float values the model was trained on."""
    return (pixels.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)


def quantize(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Float model inputs to the input tensor's dtype (identity for float32)."""
    if spec.dtype == "float32":
        return values.astype(np.float32, copy=False)
    info = np.iinfo(spec.dtype)
    q = np.rint(values / np.float32(spec.scale)) + spec.zero_point
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def to_model_input(bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A BGR frame to the 1xHxWx3 input tensor, exactly as on the device."""
    pixels = resize_to_input(bgr, spec)
    return quantize(normalize(pixels, spec), spec)[np.newaxis]


def to_model_float(bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A BGR frame to the HxWx3 float32 array a float (Keras) model takes."""
    return normalize(resize_to_input(bgr, spec), spec)
