"""`edgepipe classify`, `run` and `bench` (placeholder until the device stage lands)."""

from __future__ import annotations

import argparse

from .cliutil import add_command
from .errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    for name in ("classify", "run", "bench"):
        p = add_command(subparsers, name, help=f"{name} (not yet built)", description=name, examples=f"edgepipe {name}")
        p.set_defaults(func=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise UserError(f"`edgepipe {args.command}` is not built yet")
