"""The input sizes a detector takes, importable without numpy or TensorFlow (the CLI checks flags with it).

A multiple of 32 keeps MobileNetV2's stride-16 and stride-32 maps exact, so
the anchor grids and the feature maps agree.
"""

from __future__ import annotations

from edgepipe.core.errors import UserError

MIN_INPUT_SIZE, MAX_INPUT_SIZE, INPUT_MULTIPLE = 160, 640, 32
DEFAULT_INPUT_SIZE = 320


def check_input_size(size: int) -> None:
    if not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE or size % INPUT_MULTIPLE:
        raise UserError(f"detector input size {size} must be a multiple of {INPUT_MULTIPLE} between "
                        f"{MIN_INPUT_SIZE} and {MAX_INPUT_SIZE} (default {DEFAULT_INPUT_SIZE})")
