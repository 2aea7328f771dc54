"""Holding the offline Edge TPU prediction against what the compiler really did.

A compiled model keeps every op the compiler left on the CPU, under the same
output tensor names, beside its `edgetpu-custom-op`; so for a model and its
compiled `*_edgetpu.tflite`, the compiled file says op for op which ops of the
uncompiled one run on the CPU. That makes Coral's published pairs an oracle
for `predict_ops`, used by the tests and benchmarks/bench_inspect.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .edgetpu_rules import predict_ops
from edgepipe.device.model.modelinfo import EDGETPU_CUSTOM_OP, EdgeTpuPackage, ModelInfo, OpInfo

OpKey = tuple[str, tuple[str, ...]]


def op_key(model: ModelInfo, op: OpInfo) -> OpKey:
    """What identifies an op across compilation: its type and its output tensors' names."""
    return op.op, tuple(model.tensors[i].name for i in op.outputs)


def cpu_op_keys(compiled: ModelInfo) -> list[OpKey]:
    """The ops a compiled model runs on the CPU (everything but the Edge TPU custom ops)."""
    return [op_key(compiled, op) for op in compiled.ops if op.custom_code != EDGETPU_CUSTOM_OP]


def _interface(model: ModelInfo) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(t.name, t.dtype, tuple(t.shape)) for t in (model.tensors[i] for i in model.inputs + model.outputs)]


def not_a_pair(uncompiled: ModelInfo, compiled: ModelInfo) -> str | None:
    """Why `compiled` was not made from `uncompiled` (inputs/outputs differ, or it is not
    compiled at all), else None: such a pair says nothing about the prediction."""
    if not compiled.edgetpu_compiled:
        return f"{compiled.path.name} has no {EDGETPU_CUSTOM_OP}"
    if uncompiled.edgetpu_compiled:
        return f"{uncompiled.path.name} is already compiled"
    if _interface(uncompiled) != _interface(compiled):
        return "its inputs/outputs (names, types, shapes) differ from the compiled file's: not compiled from this file"
    unknown = set(cpu_op_keys(compiled)) - {op_key(uncompiled, op) for op in uncompiled.ops}
    if unknown:
        return f"the compiled file's CPU ops {sorted(unknown)[:3]} are not in the uncompiled file"
    return None


@dataclass
class OpVerdict:
    index: int
    op: str
    predicted: str  # "mapped" | "cpu"
    actual: str
    reason: str


@dataclass
class PairComparison:
    ops: list[OpVerdict]
    compiled_by: list[EdgeTpuPackage] = field(default_factory=list)

    @property
    def mismatches(self) -> list[OpVerdict]:
        return [v for v in self.ops if v.predicted != v.actual]

    @property
    def matched(self) -> int:
        return len(self.ops) - len(self.mismatches)


def compare(uncompiled: ModelInfo, cpu_ops: list[OpKey], compiled_by: list[EdgeTpuPackage] | None = None) -> PairComparison:
    """The prediction on `uncompiled`, op for op, against the compiler's CPU ops."""
    actual_cpu = set(cpu_ops)
    verdicts = [
        OpVerdict(p.index, p.op, p.edgetpu, "cpu" if op_key(uncompiled, op) in actual_cpu else "mapped", p.reason)
        for op, p in zip(uncompiled.ops, predict_ops(uncompiled))
    ]
    return PairComparison(verdicts, list(compiled_by or []))


def compare_files(uncompiled: ModelInfo, compiled: ModelInfo) -> PairComparison:
    return compare(uncompiled, cpu_op_keys(compiled), compiled.edgetpu_packages)
