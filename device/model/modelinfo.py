"""The one reader of the .tflite flatbuffer in edgepipe, without TensorFlow.

`inspect` and the Edge TPU prediction need the op list, op versions, tensor
types/shapes and a few builtin options; the device needs the metadata entries
edgepipe embeds (labels, input spec). The pure-Python `tflite` schema package
reads them from the file in milliseconds, on a Pi, a workstation or a CI job
alike; convert's writer (TensorFlow's flatbuffer tools) only writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import tflite
from flatbuffers import flexbuffers
from flatbuffers.table import Table

from edgepipe.core.errors import UserError

EDGETPU_CUSTOM_OP = "edgetpu-custom-op"


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: list[int]
    shape_signature: list[int]
    scale: float | None
    zero_point: int | None
    per_channel: bool
    constant: bool
    variable: bool = False  # state an op keeps between invocations (an LSTM's cell/output state)
    data: np.ndarray | None = field(default=None, repr=False)

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.shape_signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "dtype": self.dtype,
            "shape": self.shape,
            "shape_signature": self.shape_signature,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass
class OpInfo:
    index: int
    op: str
    version: int
    inputs: list[int]
    outputs: list[int]
    custom_code: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    custom_options: bytes = field(default=b"", repr=False)  # a custom op's own options (a FlexBuffer, usually)


@dataclass
class EdgeTpuPackage:
    """What a compiled model's `edgetpu-custom-op` says about the compiler that made it
    (libedgetpu's executable.fbs `Package`: `compiler_version`, `min_runtime_version`)."""

    op_index: int
    compiler_version: str
    min_runtime_version: int | None

    def to_json(self) -> dict[str, Any]:
        return {"op_index": self.op_index, "compiler_version": self.compiler_version,
                "min_runtime_version": self.min_runtime_version}


@dataclass
class ModelInfo:
    path: Path
    size_bytes: int
    ops: list[OpInfo]
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    num_subgraphs: int
    metadata: list[str]
    edgetpu_packages: list[EdgeTpuPackage] = field(default_factory=list)
    signature_outputs: dict[str, int] = field(default_factory=dict)  # output name -> tensor, of a model's only signature

    @property
    def edgetpu_compiled(self) -> bool:
        return any(op.custom_code == EDGETPU_CUSTOM_OP for op in self.ops)


_TYPE_NAMES: dict[int, str] = {}
_OPTION_READERS: dict[str, tuple[str, tuple[str, ...]]] = {
    # op -> (options class in the tflite package, fields that the Edge TPU rules read)
    "CONV_2D": ("Conv2DOptions", ("FusedActivationFunction", "DilationHFactor", "DilationWFactor")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("FusedActivationFunction", "DilationHFactor", "DilationWFactor")),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("FusedActivationFunction",)),
    "MAX_POOL_2D": ("Pool2DOptions", ("FusedActivationFunction",)),
    "CONCATENATION": ("ConcatenationOptions", ("FusedActivationFunction",)),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "WeightsFormat")),
    "PACK": ("PackOptions", ("Axis",)),
    "STRIDED_SLICE": ("StridedSliceOptions", ("EllipsisMask", "NewAxisMask")),
    "SQUEEZE": ("SqueezeOptions", ("SqueezeDimsAsNumpy",)),
}


def _type_name(code: int) -> str:
    if not _TYPE_NAMES:
        for name in dir(tflite.TensorType):
            if name.isupper():
                _TYPE_NAMES[getattr(tflite.TensorType, name)] = name.lower()
    return _TYPE_NAMES.get(code, f"type_{code}")


def _options(op: Any, name: str) -> dict[str, Any]:
    reader = _OPTION_READERS.get(name)
    table = op.BuiltinOptions()
    if reader is None or table is None:
        return {}
    options = getattr(tflite, reader[0])()
    options.Init(table.Bytes, table.Pos)
    values: dict[str, Any] = {}
    for attr in reader[1]:
        value = getattr(options, attr)()
        values[attr.removesuffix("AsNumpy")] = [int(v) for v in np.atleast_1d(value)] if attr.endswith("AsNumpy") else int(value)
    return values


def _tensor(model: Any, graph: Any, index: int) -> TensorInfo:
    t = graph.Tensors(index)
    shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
    signature = [int(d) for d in t.ShapeSignatureAsNumpy()] if t.ShapeSignatureLength() else list(shape)
    q = t.Quantization()
    scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
    zeros = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
    buffer = model.Buffers(t.Buffer())
    data = None
    if buffer is not None and buffer.DataLength():
        data = buffer.DataAsNumpy()  # a view; raises on a truncated file
        if data.size != buffer.DataLength():
            raise ValueError("buffer runs past the end of the file")
    elif buffer is not None and buffer.Offset() > 1:
        data = np.zeros(0, np.uint8)  # stored outside the flatbuffer (models > 2 GB)
    return TensorInfo(
        index=index,
        name=(t.Name() or b"").decode("utf-8", "replace"),
        dtype=_type_name(t.Type()),
        shape=shape,
        shape_signature=signature,
        scale=float(scales[0]) if scales is not None else None,
        zero_point=int(zeros[0]) if zeros is not None else None,
        per_channel=scales is not None and len(scales) > 1,
        constant=data is not None,
        variable=bool(t.IsVariable()),
        data=data,
    )


# The `edgetpu-custom-op` options are a FlexBuffer map; key "4" holds the serialized
# `Package` flatbuffer (file identifier DWN1). Its table slots, from libedgetpu's
# executable/executable.fbs: 0 min_runtime_version:int, 4 compiler_version:string.
_EXECUTABLE_KEY = "4"
_PACKAGE_IDENTIFIER = b"DWN1"
_SLOT_MIN_RUNTIME = 0
_SLOT_COMPILER_VERSION = 4


def _edgetpu_package(index: int, options: bytes) -> EdgeTpuPackage | None:
    """The compiler version a compiled model records, or None when its custom op options
    are not the package libedgetpu reads (the model still inspects; this detail is optional)."""
    try:
        return _read_package(index, options)
    except Exception:  # noqa: BLE001 - a malformed package only lacks this detail
        return None


def _read_package(index: int, options: bytes) -> EdgeTpuPackage:
    blob = bytes(flexbuffers.GetRoot(options).AsMap[_EXECUTABLE_KEY].AsStringBytes)  # binary, not utf-8
    if blob[4:8] != _PACKAGE_IDENTIFIER:
        raise ValueError("edgetpu-custom-op holds no DWN1 package")
    table = Table(bytearray(blob), flatbuffers.encode.Get(flatbuffers.packer.uoffset, blob, 0))
    runtime_at = table.Offset(4 + 2 * _SLOT_MIN_RUNTIME)
    version_at = table.Offset(4 + 2 * _SLOT_COMPILER_VERSION)
    return EdgeTpuPackage(
        op_index=index,
        compiler_version=table.String(version_at + table.Pos).decode("utf-8", "replace") if version_at else "",
        min_runtime_version=table.Get(flatbuffers.number_types.Int32Flags, runtime_at + table.Pos) if runtime_at else None,
    )


def _parse(path: Path, buf: bytes) -> ModelInfo:
    model = tflite.Model.GetRootAsModel(buf, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("no subgraphs")
    graph = model.Subgraphs(0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append((tflite.opcode2name(builtin), code.Version(), custom.decode() if custom else None))
    tensors = [_tensor(model, graph, i) for i in range(graph.TensorsLength())]
    ops = []
    packages = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name, version, custom = codes[op.OpcodeIndex()]
        custom_options = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        package = _edgetpu_package(i, custom_options) if custom == EDGETPU_CUSTOM_OP else None
        if package:
            packages.append(package)
        ops.append(
            OpInfo(
                index=i,
                op=name,
                version=version,
                inputs=[int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else [],
                outputs=[int(x) for x in op.OutputsAsNumpy()] if op.OutputsLength() else [],
                custom_code=custom,
                options=_options(op, name),
                custom_options=custom_options if custom else b"",
            )
        )
    metadata = [(model.Metadata(i).Name() or b"").decode() for i in range(model.MetadataLength())]
    return ModelInfo(
        path=path,
        size_bytes=len(buf),
        ops=ops,
        tensors=tensors,
        inputs=[int(x) for x in graph.InputsAsNumpy()],
        outputs=[int(x) for x in graph.OutputsAsNumpy()],
        num_subgraphs=model.SubgraphsLength(),
        metadata=metadata,
        edgetpu_packages=packages,
        signature_outputs=_signature_outputs(model),
    )


def _signature_outputs(model: Any) -> dict[str, int]:
    if model.SignatureDefsLength() != 1:
        return {}
    signature = model.SignatureDefs(0)
    return {(signature.Outputs(j).Name() or b"").decode("utf-8", "replace"): int(signature.Outputs(j).TensorIndex())
            for j in range(signature.OutputsLength())}


def read_model_info(path: str | Path) -> ModelInfo:
    """Parse `path`; any file that is not a complete TFLite model is one UserError line."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; give a .tflite file (a bundle's is BUNDLE/model.tflite)") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    return model_info(buf, path)


def model_info(buf: bytes, path: str | Path) -> ModelInfo:
    """Parse a model already in memory (named `path` in messages); anything but a complete TFLite model
    is one UserError line."""
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise UserError(f"{path} is not a TFLite model (no TFL3 flatbuffer identifier)")
    try:
        return _parse(Path(path), buf)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
        raise UserError(f"{path} is a truncated or damaged TFLite model ({type(exc).__name__}: {exc})") from None


def read_metadata(model_bytes: bytes) -> dict[str, bytes]:
    """Name -> bytes of every metadata entry stored inside the model; {} when there are none or the file is malformed.

    The bytes are untrusted (any .tflite a user passes), so every failure to
    read them, whatever the exception, means "no metadata", never a crash.
    """
    try:
        model = tflite.Model.GetRootAsModel(model_bytes, 0)
        entries = {}
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            name = entry.Name()
            if not name:
                continue
            if not 0 <= entry.Buffer() < model.BuffersLength():
                raise ValueError("metadata names a buffer the model does not have")
            buffer = model.Buffers(entry.Buffer())
            data = buffer.DataAsNumpy() if buffer.DataLength() else np.zeros(0, np.uint8)
            if data.size != buffer.DataLength():
                raise ValueError("metadata runs past the end of the file")
            entries[name.decode("utf-8")] = data.tobytes()
        return entries
    except Exception:  # noqa: BLE001 - a malformed file has no metadata we can use
        return {}
