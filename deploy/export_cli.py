"""`edgepipe export frigate`: a bundle for another program's runtime (registered here, done in frigate.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgepipe.core.args import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "export",
        help="export a detection bundle for another program (Frigate)",
        description="""
        Write a detection bundle in the form another program reads. `frigate`:
        the model (the Edge TPU one when the bundle has it), Frigate's label map
        and the config snippet (model path, width, height, input type, labelmap
        path), after checking the model against Frigate's own reading rules
        (outputs by position: boxes, classes, scores, count; raw uint8 RGB input).
        """,
        examples="""
        edgepipe export frigate bundle/ --out frigate-model/
        edgepipe export frigate bundle/ --out frigate-model/ --accelerator cpu
        edgepipe export frigate bundle/ --out frigate-model/ --model-dir /config/models/raccoon
        """,
    )
    p.add_argument("target", choices=["frigate"], help="the program to export for")
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="a detection bundle from `edgepipe convert`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write (must not exist)")
    p.add_argument("--accelerator", choices=["auto", "cpu", "edgetpu"],
                   help="which model to export: auto (default) = the Edge TPU one when the bundle has it")
    p.add_argument("--model-dir", default=None, metavar="PATH",
                   help="where the files will be inside Frigate's container (default /config/model_cache/edgepipe)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from .frigate import DEFAULT_MODEL_DIR, FrigateExport, export_frigate

    result = export_frigate(FrigateExport(args.bundle, args.out, args.accelerator or FrigateExport.accelerator,
                                          args.model_dir or DEFAULT_MODEL_DIR, args.force))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"edgepipe export: wrote {result['out']}: {', '.join(result['files'])} "
              f"({result['accelerator']} model, {result['width']}x{result['height']}, {result['labels']} labels); "
              f"merge {result['out']}/frigate.yml into Frigate's config.yml")
    return 0
