"""`edgepipe convert` and `edgepipe inspect`.

Registration imports nothing heavy: TensorFlow, tfmot and numpy load inside
the command functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepipe.core.args import add_command, non_negative_int, positive_float, positive_int, unit_interval

DEFAULT_ACCEPT = 0.99  # converter.ConvertOptions.unknown_accept
SCORE_CHOICES = ("auto", "max_softmax", "temperature", "margin", "mahalanobis", "knn_cosine")  # device/model/unknown.py SCORE_KINDS, plus auto


def acceptance(text: str) -> float:
    """A share of held-out images to accept, in (0, 1]."""
    value = unit_interval(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 would reject every image; use a share in (0, 1], e.g. 0.95")
    return value


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
            edgepipe convert run/ --out bundle/ --unknown-accept 0.98 --unknown-dir not_flowers/
        """,
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="output folder of `edgepipe train`")
    p.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="bundle folder to write")
    p.add_argument(
        "--method",
        choices=("auto", "qat", "ptq"),
        default="auto",
        help="auto (default): build PTQ and QAT, ship the more accurate; qat/ptq: ship that one (both are still measured)",
    )
    p.add_argument("--qat-epochs", type=non_negative_int, default=2, metavar="N", help="QAT fine-tune epochs (default 2)")
    p.add_argument("--qat-lr", type=positive_float, default=1e-5, metavar="LR", help="QAT learning rate (default 1e-5)")
    p.add_argument(
        "--io",
        choices=("uint8", "int8", "float"),
        default="uint8",
        help="input/output tensor type (default uint8: Coral-compatible, quantized on the device)",
    )
    p.add_argument("--float16", action="store_true", help="also write model_float16.tflite for comparison")
    p.add_argument("--float32", action="store_true", help="also write model_float32.tflite for comparison")
    p.add_argument(
        "--representative", type=positive_int, default=200, metavar="N",
        help="training images used to calibrate quantization ranges (default 200)",
    )
    p.add_argument(
        "--max-drop", type=float, default=2.0, metavar="POINTS",
        help="fail when int8 accuracy is more than this many points below float (default 2.0)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="QAT batch size (default 16)")
    p.add_argument("--edgetpu", action="store_true", help="also compile model_edgetpu.tflite with edgetpu_compiler")
    golden = p.add_mutually_exclusive_group()
    golden.add_argument(
        "--golden", type=positive_int, default=48, metavar="N",
        help="held-out images (at least 2 per class when the split has them) copied into the bundle's golden/ "
             "with the shipped model's answers, for `edgepipe verify` on the device (default 48)",
    )
    golden.add_argument("--no-golden", action="store_true",
                        help="ship no golden set (the images must not leave this machine); verify cannot run")
    p.add_argument("--min-runtime", type=int, choices=(13, 14), default=None, help="Edge TPU runtime the model must run on (compiler -m)")
    p.add_argument("--segments", type=positive_int, default=None, metavar="N", help="split the model into N segments (compiler -n)")
    p.add_argument("--compiler-host", metavar="USER@HOST", help="run edgetpu_compiler on this x86-64 Linux host over ssh")
    p.add_argument("--compiler-timeout", type=positive_float, default=600.0, metavar="S", help="compiler timeout in seconds (default 600)")
    unknown = p.add_argument_group('"unknown" calibration (bundle.json "unknown", MODEL_CARD.md)')
    unknown.add_argument("--unknown-accept", type=acceptance, default=DEFAULT_ACCEPT, metavar="SHARE",
                         help="set the threshold so this share of held-out in-class images is still accepted "
                              f"(default {DEFAULT_ACCEPT}: a distance score does not need to give up more)")
    unknown.add_argument("--unknown-score", choices=SCORE_CHOICES, default="auto",
                         help="score to threshold; auto (default): the one that best detects a held-out class it was "
                              "fitted without (feature-space scores need a model trained by edgepipe; without "
                              "them, the softmax score that best separates right from wrong answers)")
    unknown.add_argument("--unknown-dir", metavar="DIR",
                         help="images of none of the classes (any depth): measure the false-accept rate on them")
    p.add_argument("--force", action="store_true", help="overwrite BUNDLE_DIR")
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


def _inspect(args: argparse.Namespace) -> int:
    from edgepipe.device.inspect.report import format_report, inspect_file

    report = inspect_file(args.model)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from . import edgetpu_compiler
    from .converter import ConvertOptions, run_convert
    from .report import format_summary

    if not args.edgetpu and (args.min_runtime or args.segments or args.compiler_host):
        args.parser.error("--min-runtime, --segments and --compiler-host need --edgetpu")
    options = ConvertOptions(
        run_dir=Path(args.run_dir), out=Path(args.out), method=args.method, qat_epochs=args.qat_epochs,
        qat_lr=args.qat_lr, io=args.io, float16=args.float16, float32=args.float32,
        representative=args.representative, max_drop=args.max_drop, batch_size=args.batch_size,
        edgetpu=args.edgetpu, force=args.force, golden=0 if args.no_golden else args.golden,
        unknown_accept=args.unknown_accept, unknown_score=args.unknown_score,
        unknown_dir=Path(args.unknown_dir) if args.unknown_dir else None,
        compile=edgetpu_compiler.CompileOptions(args.min_runtime, args.segments, args.compiler_host,
                                                args.compiler_timeout),
    )
    result = run_convert(options)
    print(json.dumps(result.summary, indent=2) if args.json else format_summary(result.summary))
    if result.failed:
        print(result.failure, file=sys.stderr)
        return 1
    return 0
