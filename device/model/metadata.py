"""The labels and input spec edgepipe embeds in a .tflite (metadata entry
`edgepipe`, written by edgepipe.convert.metadata), read without TensorFlow.

A model file copied out of its bundle still says what it classifies and how
its pixels are prepared. The entry is read by modelinfo (the project's one
flatbuffer reader); the file is untrusted, so anything malformed counts as
"no metadata".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgepipe.core.errors import UserError

from .preprocess import InputSpec

METADATA_NAME = "edgepipe"


@dataclass(frozen=True)
class EmbeddedInfo:
    labels: list[str] | None
    input_spec: InputSpec | None


def embedded_info(model_bytes: bytes) -> EmbeddedInfo:
    """edgepipe's labels and input spec inside the model, each None when absent or invalid."""
    from .modelinfo import read_metadata  # the tflite schema package: only bare .tflite files need it

    raw = read_metadata(model_bytes).get(METADATA_NAME)
    try:
        data: Any = json.loads(raw) if raw else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    labels = data.get("labels")
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        labels = None
    return EmbeddedInfo(labels, _input_spec(data.get("input")))


def _input_spec(data: Any) -> InputSpec | None:
    if not isinstance(data, dict):
        return None
    try:
        spec = InputSpec.from_json(data)
    except (TypeError, ValueError, UserError):
        return None
    sizes_ok = all(isinstance(v, int) and v > 0 for v in (spec.height, spec.width))
    numbers_ok = all(isinstance(v, (int, float)) for v in (spec.mean, spec.std)) and spec.std != 0
    return spec if sizes_ok and numbers_ok else None
