"""The labels and input spec edgepipe embeds in a .tflite (metadata entry
`edgepipe`, written by edgepipe.convert.metadata), read without TensorFlow.

A model file copied out of its bundle still says what it classifies and how
its pixels are prepared. The flatbuffer is walked with the `flatbuffers`
library (a dependency of LiteRT) and the field numbers of TFLite's schema.fbs;
the file is untrusted, so anything malformed counts as "no metadata".
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from flatbuffers import encode, number_types, packer, table

from edgepipe.core.errors import UserError
from .preprocess import InputSpec

METADATA_NAME = "edgepipe"
# Field numbers in tflite::Model, tflite::Metadata and tflite::Buffer (schema.fbs).
MODEL_BUFFERS, MODEL_METADATA = 4, 6
METADATA_NAME_FIELD, METADATA_BUFFER_FIELD = 0, 1
BUFFER_DATA = 0


@dataclass(frozen=True)
class EmbeddedInfo:
    labels: list[str] | None
    input_spec: InputSpec | None


def _offset(t: table.Table, field: int) -> int:
    return t.Offset(4 + 2 * field)


def _tables(t: table.Table, field: int) -> list[table.Table]:
    o = _offset(t, field)
    if not o:
        return []
    start, length = t.Vector(o), t.VectorLen(o)
    if start + 4 * length > len(t.Bytes):
        raise ValueError("vector runs past the end of the file")
    return [table.Table(t.Bytes, t.Indirect(start + 4 * i)) for i in range(length)]


def read_metadata(model_bytes: bytes) -> dict[str, bytes]:
    """Name -> bytes of every metadata entry stored inside the model; {} when there are none or the file is malformed."""
    try:
        model = table.Table(model_bytes, encode.Get(packer.uoffset, model_bytes, 0))
        buffers = _tables(model, MODEL_BUFFERS)
        entries = {}
        for entry in _tables(model, MODEL_METADATA):
            name_at = _offset(entry, METADATA_NAME_FIELD)
            buffer_at = _offset(entry, METADATA_BUFFER_FIELD)
            if not name_at:
                continue
            buffer = buffers[entry.Get(number_types.Uint32Flags, entry.Pos + buffer_at) if buffer_at else 0]
            data_at = _offset(buffer, BUFFER_DATA)
            start = buffer.Vector(data_at) if data_at else 0
            end = start + (buffer.VectorLen(data_at) if data_at else 0)
            if end > len(model_bytes):
                raise ValueError("metadata runs past the end of the file")
            entries[bytes(entry.String(entry.Pos + name_at)).decode("utf-8")] = bytes(model_bytes[start:end])
        return entries
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        return {}


def embedded_info(model_bytes: bytes) -> EmbeddedInfo:
    """edgepipe's labels and input spec inside the model, each None when absent or invalid."""
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
