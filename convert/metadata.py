"""Small named metadata entries inside a .tflite flatbuffer.

edgepipe stores its labels and input spec in the model itself (entry
`edgepipe`), so a model file copied out of its bundle still says what it
classifies. edgetpu_compiler drops all metadata; `copy_metadata` puts the
source model's entries back into the compiled one. Writing needs TensorFlow's
flatbuffer tools; reading is the project's one reader (edgepipe.device.model.modelinfo).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgepipe.device.model.metadata import METADATA_NAME
from edgepipe.device.model.modelinfo import read_metadata

__all__ = ["METADATA_NAME", "copy_metadata", "edgepipe_metadata", "read_metadata", "with_metadata"]


def _flatbuffer_utils():
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def with_metadata(model_bytes: bytes, entries: dict[str, bytes]) -> bytes:
    """`model_bytes` with `entries` added (an entry of the same name is replaced)."""
    fb = _flatbuffer_utils()
    from tensorflow.lite.python import schema_py_generated as schema

    model = fb.read_model_from_bytearray(bytearray(model_bytes))
    model.metadata = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name) not in entries]
    for name, data in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, dtype=np.uint8).copy()
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name.encode()
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(fb.convert_object_to_bytearray(model))


def copy_metadata(source_bytes: bytes, target_bytes: bytes) -> bytes:
    """`target_bytes` with every metadata entry of `source_bytes` it lacks."""
    present = read_metadata(target_bytes)
    missing = {k: v for k, v in read_metadata(source_bytes).items() if k not in present}
    return with_metadata(target_bytes, missing) if missing else target_bytes


def edgepipe_metadata(labels: list[str], input_spec: dict[str, Any], method: str) -> bytes:
    """What a model file needs to be used without its bundle.json: labels and preprocessing."""
    return json.dumps(
        {"labels": labels, "input": input_spec, "quantization": method}, separators=(",", ":")
    ).encode()
