"""`edgepipe convert` and `edgepipe inspect`.

Registration imports nothing heavy: TensorFlow, tfmot and numpy load inside
the command functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepipe.core.args import add_command
from edgepipe.core.options import add_options, options_from

from .options import CompileOptions, ConvertOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_convert(subparsers)
    _register_inspect(subparsers)


def _register_convert(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "convert",
        help="trained run -> int8 TFLite bundle (+ Edge TPU), accuracy verified",
        description="""
            Quantize a trained run (edgepipe train's RUN_DIR) to a full-int8 TFLite model,
            verify float and int8 accuracy on the run's held-out split through the device's
            own preprocessing and runtime, write a drift report, and write BUNDLE_DIR
            (model.tflite [+ model_edgetpu.tflite], labels.txt, bundle.json) atomically.
            By default both post-training quantization (PTQ) and quantization-aware training
            (QAT) are measured and the more accurate one ships; --method forces one.
        """,
        examples="""
            edgepipe convert run/ --out bundle/
            edgepipe convert run/ --out bundle/ --method ptq --io int8
            edgepipe convert run/ --out bundle/ --edgetpu --min-runtime 13
            edgepipe convert run/ --out bundle/ --edgetpu --compiler-host me@x86box
            edgepipe convert run/ --out bundle/ --float32 --float16 --max-drop 1.0 --force
            edgepipe convert run/ --out bundle/ --golden 24      # or --no-golden
            edgepipe convert run/ --out bundle/ --imx500         # + the Raspberry Pi AI Camera
            edgepipe convert run/ --out bundle/ --unknown-accept 0.98 --unknown-dir not_flowers/
        """,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="output folder of `edgepipe train`")
    add_options(p, ConvertOptions)
    add_options(p, CompileOptions)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_convert)


def _register_inspect(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "inspect",
        help="ops, tensors and predicted Edge TPU mapping of a .tflite",
        description="""
            List a .tflite model's ops with versions, its input/output tensors and size, say
            whether it is already compiled for the Edge TPU, and predict offline, op by op,
            what Edge TPU compiler 16 will map and what stays on the CPU (and why).
        """,
        examples="""
            edgepipe inspect bundle/model.tflite
            edgepipe inspect bundle/model_edgetpu.tflite --json
        """,
    )
    p.add_argument("model", metavar="MODEL.tflite")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_inspect)


def simulate_imx500(quantized_model: Path, pixels):
    """`evaluate --accelerator imx500`'s sensor simulation (train's evaluate may not import convert)."""
    from .imx500 import simulate_sensor

    return simulate_sensor(quantized_model, pixels)


def _inspect(args: argparse.Namespace) -> int:
    from edgepipe.device.inspect.report import format_report, inspect_file

    report = inspect_file(args.model)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from edgepipe.train.run_dir import load_run

    from .converter import run_convert
    from .detect import is_detection_run, run_detect_convert
    from .report import format_summary

    options = options_from(args, ConvertOptions, run_dir=args.run_dir, compile=options_from(args, CompileOptions))
    if not options.edgetpu and options.compile.given:
        args.parser.error("--min-runtime, --segments and --compiler-host need --edgetpu")
    if options.imx500_python and not options.imx500:
        args.parser.error("--imx500-python needs --imx500")
    convert = run_detect_convert if is_detection_run(load_run(options.run_dir)) else run_convert  # the run's task
    result = convert(options)
    print(json.dumps(result.summary, indent=2) if args.json else format_summary(result.summary))
    if result.failed:
        print(result.failure, file=sys.stderr)
        return 1
    return 0
