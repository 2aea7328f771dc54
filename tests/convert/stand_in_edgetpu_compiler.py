"""Stand-in for Coral's `edgetpu_compiler` (x86-64 only, not installable here).

Accepts the real command line, prints the real compiler's output format
(Coral's documented format) and, on success, writes OUT/<stem>_edgetpu.tflite
(the input with its first ops replaced by one CUSTOM `edgetpu-custom-op`, and
its metadata dropped, as the real compiler does) and OUT/<stem>_edgetpu.log.
EDGETPU_STAND_IN picks the behaviour: success (default), partial, zero,
not_quantized, crash, hang. Exit codes follow the real tool's habit of not
meaning much: crash exits 0.
"""

import argparse
import os
import sys
import time
from pathlib import Path

VERSION = "16.0.384591198"


def compiled_model(model, mapped: int) -> bytes:
    """`model` (a flatbuffer ModelT) with ops [0, mapped) fused into one edgetpu-custom-op."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    graph = model.subgraphs[0]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "edgetpu-custom-op"
    code.version = 1
    model.operatorCodes.append(code)
    custom = schema.OperatorT()
    custom.opcodeIndex = len(model.operatorCodes) - 1
    custom.inputs = list(graph.operators[0].inputs[:1])
    custom.outputs = list(graph.operators[mapped - 1].outputs)
    custom.customOptions = list(b"stand-in")
    graph.operators = [custom] + graph.operators[mapped:]
    model.metadata = []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def log_table(names: list[str], mapped: int) -> str:
    rows: dict[tuple[str, str], int] = {}
    for i, name in enumerate(names):
        if i < mapped:
            status = "Mapped to Edge TPU"
        elif i == mapped:
            status = "Operation not supported"
        else:
            status = "More than one subgraph is not supported"
        rows[(name, status)] = rows.get((name, status), 0) + 1
    lines = ["Operator                       Count      Status", ""]
    lines += [f"{op:<30} {count:<10} {status}" for (op, status), count in rows.items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(prog="edgetpu_compiler")
    parser.add_argument("-o", "--out_dir", default=".")
    parser.add_argument("-s", "--show_operations", action="store_true")
    parser.add_argument("-m", "--min_runtime_version", type=int)
    parser.add_argument("-n", "--num_segments", type=int)
    parser.add_argument("-t", "--timeout_sec", type=int, default=180)
    parser.add_argument("model")
    args = parser.parse_args()
    mode = os.environ.get("EDGETPU_STAND_IN", "success")
    print(f"Edge TPU Compiler version {VERSION}")
    print(f"Started a compilation timeout timer of {args.timeout_sec} seconds.")
    sys.stdout.flush()
    if mode == "hang":
        time.sleep(3600)
    if mode == "not_quantized":
        print(f"Invalid model: {args.model}\nModel not quantized")
        return 1
    if mode == "crash":
        print("Internal compiler error. Aborting!")
        return 0
    source = Path(args.model)
    out = Path(args.out_dir)
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(source))
    names = [flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) for op in model.subgraphs[0].operators]
    total = len(names)
    mapped = {"success": total, "partial": total // 2, "zero": 0}[mode]
    compiled = compiled_model(model, mapped) if mapped else source.read_bytes()
    (out / f"{source.stem}_edgetpu.tflite").write_bytes(compiled)
    (out / f"{source.stem}_edgetpu.log").write_text(
        f"Edge TPU Compiler version {VERSION}\nInput: {source}\nOutput: {out / (source.stem + '_edgetpu.tflite')}\n\n"
        + log_table(names, mapped)
    )
    print("\nModel compiled successfully in 1234 ms.\n")
    print(f"Input model: {source}\nInput size: {source.stat().st_size / 1024:.2f}KiB")
    print(f"Output model: {out / (source.stem + '_edgetpu.tflite')}")
    print(f"Number of Edge TPU subgraphs: {1 if mapped else 0}")
    print(f"Total number of operations: {total}")
    print(f"Operation log: {out / (source.stem + '_edgetpu.log')}")
    if mapped < total:
        print(
            "\nModel successfully compiled but not all operations are supported by the Edge TPU. A percentage of the "
            "model will instead run on the CPU, which is slower. If possible, consider updating your model to use only "
            "operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs."
        )
        print(f"Number of operations that will run on Edge TPU: {mapped}")
        print(f"Number of operations that will run on CPU: {total - mapped}")
    print("\nSee the operation log file for individual operation details.")
    print("Compilation child process completed within timeout period.\nCompilation succeeded!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
