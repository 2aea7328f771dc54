"""`edgepipe verify`: registration and printing only (the work is in device/model/verify.py).

Self-contained: `register` is all a CLI needs to call to add the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepipe.core.args import add_command
from edgepipe.core.options import add_options, options_from
from edgepipe.device.model.options import VerifyOptions


def register_verify(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "verify",
        help="check on this machine that a bundle gives the answers convert recorded (its golden set)",
        description="""
        Run the bundle's golden set (held-out images convert copied into golden/, with the
        shipped model's scores) through this machine's runtime, and compare: top-1 agreement
        with the expected answers, largest and mean score difference, accuracy against the true
        labels, and the images that disagree. The Edge TPU model runs in a child process, so a
        crashing or hanging libedgetpu is a failed check. Exit 1 when a model's top-1 agreement
        is below its threshold (stored in the bundle: 100% for the CPU model, 95% for the Edge
        TPU model) or the Edge TPU crashes, hangs or is missing with --accelerator edgetpu.
        """,
        examples="""
        edgepipe verify bundle/
        edgepipe verify bundle/ --accelerator edgetpu --json
        edgepipe verify bundle/ --accelerator imx500       # the golden set injected into the AI Camera's sensor
        edgepipe verify bundle/ --accelerator cpu --min-agreement 97.5
        """,
    )
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="a bundle directory made by `edgepipe convert`")
    add_options(p, VerifyOptions)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    from edgepipe.device.model.verify import failure_line, format_report, verify_bundle

    options = options_from(args, VerifyOptions, bundle=args.bundle)
    report = verify_bundle(options)
    print(json.dumps(report.to_json(), indent=2) if args.json else format_report(report), flush=True)
    if not report.passed:
        print(f"edgepipe verify: error: {failure_line(report)}", file=sys.stderr)
        return 1
    return 0
