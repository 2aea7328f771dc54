"""What Edge TPU compiler 16 does with a .tflite, predicted from the file alone.

The compiler exists only for x86-64 Debian/Ubuntu, so users on a Mac, a Pi or
these build machines still need to know before deploying whether their model
maps. The rules below are Coral's documented op table, op versions seen
rejected in Coral's issue tracker, and corrections measured against the
compiler's own output (the compiled models Coral publishes in
github.com/google-coral/test_data, each checked op for op by
tests/convert/test_coral_pairs.py), encoded as data; every correction names
its evidence. The compiler's own status strings are reused so a prediction and
a real compile read the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

from edgepipe.device.model.modelinfo import EDGETPU_CUSTOM_OP, ModelInfo, OpInfo, TensorInfo

COMPILER_VERSION = 16
# Compiler 16 writes packages that need Edge TPU runtime 14 unless run with -m
# (coral.ai/docs/edgetpu/compiler, "Compiler and runtime versions").
COMPILER_DEFAULT_MIN_RUNTIME = 14

# The compiler log's status column.
MAPPED = "Mapped to Edge TPU"
NOT_SUPPORTED = "Operation not supported"
VERSION_NOT_SUPPORTED = "Operation version not supported"
BAD_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
BAD_TYPE = "Operation is working on an unsupported data type"
AFTER_CUT = "More than one subgraph is not supported"
LIMITATION = "Operation is otherwise supported, but not mapped due to some unspecified limitation"

TEST_DATA = "github.com/google-coral/test_data"
# What those compiled files record in their edgetpu-custom-op: a Coral compiler build, not a
# release number, made for runtime 12 (compiler 16 defaults to 14).
CORAL_BUILD = "compiled file records compiler build 'cl/', runtime 12"


@dataclass(frozen=True)
class Correction:
    """Where the documented rules mispredicted a model Coral publishes compiled: what
    edgepipe predicts instead, and the evidence (the compiled file is the oracle)."""

    rule: str
    source: str


CORRECTIONS: dict[str, Correction] = {
    "lstm_int16_state": Correction(
        "an LSTM's int16 cell state is accepted (its activations must still be 8-bit)",
        f"{TEST_DATA} keras_lstm_mnist_ptq_edgetpu.tflite: the LSTM, with int8 output state "
        f"and int16 cell state, is inside edgetpu-custom-op ({CORAL_BUILD})",
    ),
    "resize_bilinear_v3": Correction(
        "RESIZE_BILINEAR version 3 (half_pixel_centers) maps in compiler 16 (15.0 rejected it)",
        f"{TEST_DATA} movenet_single_pose_lightning_ptq_edgetpu.tflite (released with compiler 16, "
        f"2021-07-26; {CORAL_BUILD}) maps three v3 RESIZE_BILINEARs; rejected by 2.0 and 15.0 in "
        "github.com/google-coral/edgetpu issues 45 and 396",
    ),
    "resize_bilinear_upscale": Correction(
        "the compiler keeps a RESIZE_BILINEAR that enlarges a side more than 2x on the CPU",
        f"Coral's op table ('depending on input/output size, this operation may not be mapped "
        f"... to avoid loss in precision'); {TEST_DATA} deeplabv3_mnv2_pascal_quant, "
        "deeplabv3_mnv2_dm05_pascal_quant and deeplab_mobilenet_edgetpu_slim_cityscapes_quant "
        "(33x and 15.5x left on the CPU, 1x mapped), movenet_single_pose_lightning_ptq (2x mapped); "
        f"factors between 2 and 15.5 are unverified ({CORAL_BUILD})",
    ),
    "tile": Correction(
        "TILE maps, as in Coral's compiled EdgeTPU-slim DeepLab",
        f"{TEST_DATA} deeplab_mobilenet_edgetpu_slim_cityscapes_quant_edgetpu.tflite: its TILE "
        f"(1x1 to 33x33, in place of a RESIZE_BILINEAR) is inside edgetpu-custom-op ({CORAL_BUILD})",
    ),
    "one_subgraph_by_dependency": Correction(
        "the compiler makes one Edge TPU subgraph: unsupported ops before it (fed only by the "
        "graph inputs or other such ops) stay on the CPU without cutting, and after it only the "
        "ops that depend on a CPU op are cut; independent branches still map",
        f"{TEST_DATA} movenet_single_pose_lightning_ptq_edgetpu.tflite: CAST and QUANTIZE before "
        f"the Edge TPU part stay on the CPU, and the heads after its first ARG_MAX map ({CORAL_BUILD})",
    ),
    "detection_postprocess_tail": Correction(
        "a detector's TFLite_Detection_PostProcess op and the DEQUANTIZE ops feeding it run on the CPU after "
        "the Edge TPU part: that tail is expected, not a problem",
        f"{TEST_DATA} ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite (its second segment, "
        "pipeline/ssd_mobilenet_v2_coco_quant_postprocess_segment_1_of_2_edgetpu.tflite): edgetpu-custom-op, "
        f"then DEQUANTIZE x2 and TFLite_Detection_PostProcess on the CPU ({CORAL_BUILD})",
    ),
}

DETECTION_POSTPROCESS = "TFLite_Detection_PostProcess"
DETECTION_TAIL_REASON = ("detection postprocess on float boxes and scores: runs on the CPU after the Edge TPU part, "
                         "as in Coral's compiled SSDs (expected)")

# Ops the compiler maps (Coral's "supported operations" table), by TFLite builtin name.
SUPPORTED_OPS = frozenset(
    {
        "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "LOGISTIC", "TANH", "RELU", "RELU6",
        "RELU_N1_TO_1", "L2_NORMALIZATION", "EXPAND_DIMS", "QUANTIZE", "SLICE", "SPLIT",
        "SPACE_TO_DEPTH", "TRANSPOSE", "TRANSPOSE_CONV", "SUM", "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED", "MEAN", "PACK", "PAD", "PRELU", "REDUCE_MAX", "REDUCE_MIN",
        "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "SOFTMAX", "SQUEEZE",
        "STRIDED_SLICE", "TILE",
    }
)  # fmt: skip
# Ops mapped on the evidence of a compiled model rather than the table: the correction to cite.
SUPPORTED_BY_CORRECTION = {"TILE": "tile"}

# Op versions compiler 16 was seen to reject ("Didn't find op for builtin opcode
# 'CONV_2D' version '6'"): this version and every newer one fail.
FIRST_REJECTED_VERSION = {
    "CONV_2D": 6,  # grouped convolution
    "QUANTIZE": 3,  # per-channel
    "TRANSPOSE_CONV": 4,
    "EXP": 2,
    "REVERSE_V2": 3,
}
# Versions once rejected that compiler 16 maps: op -> (version, the correction to cite).
ACCEPTED_SINCE_COMPILER_16 = {"RESIZE_BILINEAR": (3, "resize_bilinear_v3")}

# Known-unsupported ops with the advice users need.
UNSUPPORTED_ADVICE = {
    "HARD_SWISH": "HARD_SWISH is not supported (MobileNetV3: build it with minimalistic=True)",
    "LEAKY_RELU": "LEAKY_RELU is not supported (use ReLU or PReLU with 1-D alpha)",
    "DEQUANTIZE": "DEQUANTIZE is not supported (export with integer input/output: --io uint8 or int8)",
    "GATHER": "GATHER is not supported",
}

EIGHT_BIT = ("int8", "uint8")
# Constant inputs that are not 8-bit but are fine: int32 biases, shapes, axes, paddings.
CONSTANT_TYPES_OK = ("int8", "uint8", "int32")
# State tensors (variable, not constant) an op may keep wider than 8 bits: op -> (types, correction).
STATE_TYPES_OK = {"UNIDIRECTIONAL_SEQUENCE_LSTM": (("int8", "int16"), "lstm_int16_state")}
MAX_RESIZE_BILINEAR_UPSCALE = 2  # per side; see CORRECTIONS["resize_bilinear_upscale"]
MAX_SOFTMAX_ELEMENTS = 16_000
MAX_MAPPED_DIMS = 3


@dataclass
class OpPrediction:
    index: int
    op: str
    version: int
    edgetpu: str  # "mapped" | "cpu"
    reason: str
    status: str
    correction: str = ""  # the CORRECTIONS key this prediction rests on, if any
    expected: bool = False  # a CPU op that belongs on the CPU (a detector's postprocess tail)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "op": self.op, "version": self.version, "edgetpu": self.edgetpu, "reason": self.reason,
                **({"expected": True} if self.expected else {})}


def detection_tail(model: ModelInfo) -> set[int]:
    """Indices of a TFLite_Detection_PostProcess op and of the DEQUANTIZE ops that feed only it."""
    tail: set[int] = set()
    consumers: dict[int, int] = Counter(t for op in model.ops for t in op.inputs if t >= 0)
    producer = {t: op for op in model.ops for t in op.outputs}
    for op in model.ops:
        if op.op == "CUSTOM" and op.custom_code == DETECTION_POSTPROCESS:
            tail.add(op.index)
            for t in op.inputs:
                feeder = producer.get(t)
                if feeder is not None and feeder.op == "DEQUANTIZE" and consumers[t] == 1:
                    tail.add(feeder.index)
    return tail


def _tail_prediction(op: OpInfo) -> OpPrediction:
    return OpPrediction(op.index, op.op, op.version, "cpu", DETECTION_TAIL_REASON, BAD_TYPE,
                        "detection_postprocess_tail", expected=True)


def _non_one_dims(shape: list[int]) -> int:
    return sum(1 for d in shape if d != 1)


def _fused_activation_none(op: OpInfo, model: ModelInfo) -> str | None:
    if op.options.get("FusedActivationFunction", 0) != 0:
        return f"{op.op} with a fused activation does not map"
    return None


def _concatenation(op: OpInfo, model: ModelInfo) -> str | None:
    problem = _fused_activation_none(op, model)
    if problem:
        return problem
    constants = [model.tensors[i] for i in op.inputs if model.tensors[i].constant]
    if constants and (len(op.inputs) != 2 or len(constants) > 1 or any(t.data.any() for t in constants)):
        return "CONCATENATION maps a constant input only as one of exactly two inputs and all zeros"
    return None


def _same_dilation(op: OpInfo, model: ModelInfo) -> str | None:
    if op.options.get("DilationHFactor", 1) != op.options.get("DilationWFactor", 1):
        return f"{op.op} needs the same dilation in x and y"
    return None


def _fully_connected(op: OpInfo, model: ModelInfo) -> str | None:
    if op.options.get("WeightsFormat", 0) != 0:
        return "FULLY_CONNECTED needs the default weights format"
    if any(_non_one_dims(model.tensors[i].shape) > 1 for i in op.outputs):
        return "FULLY_CONNECTED needs a 1-D output"
    return None


def _constant_ints(model: ModelInfo, index: int) -> list[int] | None:
    tensor = model.tensors[index]
    if not tensor.constant or tensor.dtype not in ("int32", "int64") or tensor.data is None:
        return None
    return [int(v) for v in tensor.data.view(tensor.dtype)]


def _not_over_batch(op: OpInfo, model: ModelInfo) -> str | None:
    rank = len(model.tensors[op.inputs[0]].shape)
    axes = _constant_ints(model, op.inputs[1]) if len(op.inputs) > 1 else None
    if axes is None:
        return f"{op.op} needs constant axes"
    if any(a % max(rank, 1) == 0 for a in axes):
        return f"{op.op} over the batch dimension does not map"
    return None


def _pack(op: OpInfo, model: ModelInfo) -> str | None:
    if op.options.get("Axis", 0) == 0:
        return "PACK in the batch dimension does not map"
    return None


def _pad(op: OpInfo, model: ModelInfo) -> str | None:
    paddings = _constant_ints(model, op.inputs[1]) if len(op.inputs) > 1 else None
    if paddings is None:
        return "PAD needs constant paddings"
    if paddings[:2] != [0, 0]:
        return "PAD in the batch dimension does not map"
    return None


def _prelu(op: OpInfo, model: ModelInfo) -> str | None:
    if _non_one_dims(model.tensors[op.inputs[1]].shape) > 1:
        return "PRELU needs a 1-D alpha"
    return None


def _softmax(op: OpInfo, model: ModelInfo) -> str | None:
    shape = model.tensors[op.inputs[0]].shape
    if _non_one_dims(shape) > 1:
        return "SOFTMAX needs a 1-D input"
    size = 1
    for d in shape:
        size *= d
    if size > MAX_SOFTMAX_ELEMENTS:
        return f"SOFTMAX over {size} elements (more than {MAX_SOFTMAX_ELEMENTS}) does not map"
    return None


def _squeeze(op: OpInfo, model: ModelInfo) -> str | None:
    shape = model.tensors[op.inputs[0]].shape
    dims = op.options.get("SqueezeDims") or [i for i, d in enumerate(shape) if d == 1]
    dims = sorted(d % max(len(shape), 1) for d in dims)
    if dims != list(range(len(dims))):
        return "SQUEEZE maps only leading 1-dimensions"
    return None


def _strided_slice(op: OpInfo, model: ModelInfo) -> str | None:
    if op.options.get("EllipsisMask", 0) or op.options.get("NewAxisMask", 0):
        return "STRIDED_SLICE with ellipsis or new-axis masks does not map"
    strides = _constant_ints(model, op.inputs[3]) if len(op.inputs) > 3 else None
    if strides is None or any(s != 1 for s in strides):
        return "STRIDED_SLICE needs constant strides of 1"
    return None


def _resize_bilinear(op: OpInfo, model: ModelInfo) -> str | None:
    before, after = model.tensors[op.inputs[0]].shape, model.tensors[op.outputs[0]].shape
    if len(before) != 4 or len(after) != 4:
        return None
    factor = max(after[1] / max(before[1], 1), after[2] / max(before[2], 1))
    if factor > MAX_RESIZE_BILINEAR_UPSCALE:
        return (
            f"{before[1]}x{before[2]} to {after[1]}x{after[2]} enlarges {factor:.3g}x: "
            f"{CORRECTIONS['resize_bilinear_upscale'].rule}"
        )
    return None


# Limits that come from a correction rather than Coral's table: op -> CORRECTIONS key.
LIMIT_CORRECTIONS = {"RESIZE_BILINEAR": "resize_bilinear_upscale"}


# Per-op limits from Coral's table; each returns the reason the op does NOT map, or None.
OP_LIMITS: dict[str, Callable[[OpInfo, ModelInfo], str | None]] = {
    "AVERAGE_POOL_2D": _fused_activation_none,
    "MAX_POOL_2D": _fused_activation_none,
    "CONCATENATION": _concatenation,
    "CONV_2D": _same_dilation,
    "DEPTHWISE_CONV_2D": _same_dilation,
    "FULLY_CONNECTED": _fully_connected,
    "MEAN": _not_over_batch,
    "SUM": _not_over_batch,
    "REDUCE_MAX": _not_over_batch,
    "REDUCE_MIN": _not_over_batch,
    "PACK": _pack,
    "PAD": _pad,
    "PRELU": _prelu,
    "SOFTMAX": _softmax,
    "SQUEEZE": _squeeze,
    "STRIDED_SLICE": _strided_slice,
    "RESIZE_BILINEAR": _resize_bilinear,
}


def _tensor_problem(op: OpInfo, model: ModelInfo) -> tuple[str, str] | None:
    tensors: list[TensorInfo] = [model.tensors[i] for i in op.inputs + op.outputs if i >= 0]
    for t in tensors:
        if t.dynamic:
            return LIMITATION, f"tensor {t.name!r} has a dynamic shape {t.shape_signature} (export with a static batch of 1)"
    state_types = STATE_TYPES_OK.get(op.op, ((), ""))[0]
    for t in tensors:
        allowed = state_types if t.variable and state_types else CONSTANT_TYPES_OK if t.constant else EIGHT_BIT
        if t.dtype not in allowed:
            return BAD_TYPE, f"tensor {t.name!r} is {t.dtype}, not 8-bit"
    for t in tensors:
        if not t.constant and _non_one_dims(t.shape) > MAX_MAPPED_DIMS:
            return BAD_RANK, f"tensor {t.name!r} {t.shape} has more than {MAX_MAPPED_DIMS} dimensions larger than 1"
    return None


def _op_problem(op: OpInfo, model: ModelInfo) -> tuple[str, str] | None:
    """(compiler status, reason) when `op` alone cannot map, else None."""
    if op.op == "CUSTOM":
        return NOT_SUPPORTED, f"custom op {op.custom_code!r} is not supported"
    first_rejected = FIRST_REJECTED_VERSION.get(op.op)
    if first_rejected is not None and op.version >= first_rejected:
        return (
            VERSION_NOT_SUPPORTED,
            f"{op.op} version {op.version} is newer than compiler {COMPILER_VERSION} accepts (max {first_rejected - 1})",
        )
    if op.op not in SUPPORTED_OPS:
        return NOT_SUPPORTED, UNSUPPORTED_ADVICE.get(op.op, f"{op.op} is not supported by the Edge TPU")
    problem = _tensor_problem(op, model)
    if problem:
        return problem
    limit = OP_LIMITS.get(op.op)
    reason = limit(op, model) if limit else None
    return (LIMITATION, reason) if reason else None


def _mapped_because(op: OpInfo, model: ModelInfo) -> str:
    """For an op that maps only on the evidence of a correction, its CORRECTIONS key; else ""."""
    correction = SUPPORTED_BY_CORRECTION.get(op.op)
    accepted = ACCEPTED_SINCE_COMPILER_16.get(op.op)
    if accepted and op.version >= accepted[0]:
        correction = accepted[1]
    state = STATE_TYPES_OK.get(op.op)
    if state and any(model.tensors[i].variable and model.tensors[i].dtype not in EIGHT_BIT for i in op.inputs if i >= 0):
        correction = state[1]
    return correction or ""


def _predict_compiled(model: ModelInfo) -> list[OpPrediction]:
    """An already-compiled model: the compiler has decided; custom ops are the Edge TPU parts."""
    tail = detection_tail(model)
    return [
        OpPrediction(op.index, op.op, op.version, "mapped", "compiled Edge TPU subgraph", MAPPED)
        if op.custom_code == EDGETPU_CUSTOM_OP
        else _tail_prediction(op) if op.index in tail
        else OpPrediction(op.index, op.op, op.version, "cpu", "left on the CPU by the Edge TPU compiler", NOT_SUPPORTED)
        for op in model.ops
    ]


def _parents(op: OpInfo, producer: dict[int, int]) -> list[int]:
    return [producer[i] for i in op.inputs if i >= 0 and i in producer]


def predict_ops(model: ModelInfo) -> list[OpPrediction]:
    """One prediction per op, in execution order.

    The compiler makes one Edge TPU subgraph (CORRECTIONS["one_subgraph_by_dependency"]):
    an op that cannot map is a CPU op; if it depends on a mapped op it comes after the
    Edge TPU part, and every op depending on it runs on the CPU too (mapping those would
    need a second Edge TPU subgraph). CPU ops that depend on no mapped op (a CAST or
    float QUANTIZE right after the input) run before the Edge TPU part and cut nothing.
    """
    if model.edgetpu_compiled:
        return _predict_compiled(model)
    producer = {t: op.index for op in model.ops for t in op.outputs}
    tail = detection_tail(model)
    after_edgetpu: set[int] = set()  # ops that depend on a mapped op, directly or not
    cut_by: dict[int, OpPrediction] = {}  # CPU ops after the Edge TPU part -> the CPU op that cut them
    predictions = []
    for op in model.ops:
        parents = _parents(op, producer)
        cut = next((cut_by[p] for p in parents if p in cut_by), None)
        problem = None if cut else _op_problem(op, model)
        if op.index in tail:
            prediction = _tail_prediction(op)
        elif cut:
            reason = f"needs #{cut.index} {cut.op}, which runs on the CPU after the Edge TPU part: the compiler makes one Edge TPU subgraph"
            prediction = OpPrediction(op.index, op.op, op.version, "cpu", reason, AFTER_CUT)
        elif problem:
            correction = LIMIT_CORRECTIONS.get(op.op, "") if problem[0] == LIMITATION else ""
            prediction = OpPrediction(op.index, op.op, op.version, "cpu", problem[1], problem[0], correction)
        else:
            correction = _mapped_because(op, model)
            if not correction and cut_by:  # a single cut in execution order would have put it on the CPU
                correction = "one_subgraph_by_dependency"
            reason = CORRECTIONS[correction].rule if correction else ""
            prediction = OpPrediction(op.index, op.op, op.version, "mapped", reason, MAPPED, correction)
        predictions.append(prediction)
        if prediction.edgetpu == "mapped" or any(p in after_edgetpu for p in parents):
            after_edgetpu.add(op.index)
        if prediction.edgetpu == "cpu" and op.index in after_edgetpu:
            cut_by[op.index] = cut or prediction
    _mark_cpu_before_the_edgetpu_part(predictions, after_edgetpu)
    return predictions


def _mark_cpu_before_the_edgetpu_part(predictions: list[OpPrediction], after_edgetpu: set[int]) -> None:
    """CPU ops that precede mapped ops without feeding from them cut nothing: name the
    correction that says so (a single cut in execution order would have cut there)."""
    last_mapped = max((p.index for p in predictions if p.edgetpu == "mapped"), default=-1)
    for p in predictions:
        if p.edgetpu == "cpu" and p.index < last_mapped and p.index not in after_edgetpu and not p.correction:
            p.correction = "one_subgraph_by_dependency"


def corrections_used(predictions: list[OpPrediction]) -> list[dict[str, Any]]:
    """The corrections a prediction rests on, with their evidence and the ops concerned."""
    ops: dict[str, list[int]] = {}
    for p in predictions:
        if p.correction:
            ops.setdefault(p.correction, []).append(p.index)
    return [{"id": key, "rule": CORRECTIONS[key].rule, "source": CORRECTIONS[key].source, "ops": ops[key]}
            for key in CORRECTIONS if key in ops]


def summarize(predictions: list[OpPrediction], compiled: bool = False) -> dict[str, Any]:
    """The totals the compiler prints, and its log's Operator/Count/Status table."""
    mapped = sum(p.edgetpu == "mapped" for p in predictions)
    if compiled:
        subgraphs = mapped
    else:
        subgraphs = 1 if mapped else 0
    rows = Counter((p.op, p.status) for p in predictions)
    return {
        "edgetpu_subgraphs": subgraphs,
        "total": len(predictions),
        "mapped": mapped,
        "cpu": len(predictions) - mapped,
        "expected_cpu": sum(p.expected for p in predictions),
        "mapped_fraction": round(mapped / len(predictions), 4) if predictions else 0.0,
        "table": [{"op": op, "count": n, "status": status} for (op, status), n in sorted(rows.items())],
    }


def model_warnings(model: ModelInfo) -> list[str]:
    """Whole-model problems the compiler reports as an error rather than per op."""
    warnings = []
    if any(model.tensors[i].dynamic for i in model.inputs):
        warnings.append('dynamic input shape: the compiler stops with "Model not quantized"; export with a static batch of 1')
    if model.num_subgraphs > 1:
        warnings.append("the model has more than one subgraph; only the first is mapped")
    for package in model.edgetpu_packages:
        runtime = package.min_runtime_version
        if runtime is not None and runtime < COMPILER_DEFAULT_MIN_RUNTIME:
            warnings.append(
                f"op #{package.op_index} was compiled by Edge TPU compiler {package.compiler_version or '(unnamed)'!r} "
                f"for runtime {runtime} (an older compiler, or -m {runtime}); compiler {COMPILER_VERSION} targets runtime "
                f"{COMPILER_DEFAULT_MIN_RUNTIME} and may map this model differently"
            )
    float_ops = [op for op in model.ops if any(model.tensors[i].dtype == "float32" and not model.tensors[i].constant for i in op.outputs)]
    if float_ops and len(float_ops) == len(model.ops):
        warnings.append('the model is not quantized (float32): the compiler stops with "Model not quantized"')
    return warnings
