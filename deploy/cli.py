"""`edgepipe deploy` (placeholder until the deploy stage lands)."""

from __future__ import annotations

import argparse

from edgepipe.device.cliutil import add_command
from edgepipe.device.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    for name in ("deploy",):
        p = add_command(subparsers, name, help=f"{name} (not yet built)", description=name, examples=f"edgepipe {name}")
        p.set_defaults(func=_not_built)


def _not_built(args: argparse.Namespace) -> int:
    raise UserError(f"`edgepipe {args.command}` is not built yet")
