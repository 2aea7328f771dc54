"""The `edgepipe` command.

Each stage registers its own subcommands; registration imports only argparse
and light modules, so `edgepipe --help`, `classify`, `run` and `bench` start
fast and work with only `edgepipe[device]` installed. TensorFlow is imported
when a command that needs it runs.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import traceback
from typing import Any, NoReturn, Sequence

from edgepipe import __version__, demo
from edgepipe.convert import cli as convert_cli
from edgepipe.core.errors import MissingExtraError, UserError
from edgepipe.core.safetext import safe_line
from edgepipe.core.tfenv import configure_tensorflow
from edgepipe.deploy import cli as deploy_cli
from edgepipe.deploy import export_cli
from edgepipe.device.cli import register as device_cli
from edgepipe.train import cli as train_cli

# Top-level module -> the extra that installs it, for a missing-dependency message.
EXTRA_FOR_MODULE = {
    "tensorflow": "train",
    "tf_keras": "train",
    "tensorflow_model_optimization": "train",
    "tflite": "device",
    "matplotlib": "plot",
    "ansible": "deploy",
    "numpy": "device",
    "cv2": "device",
    "ai_edge_litert": "device",
}


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line and exit code 2, and takes no abbreviations
    (`--epoch 5` is not `--epochs 5`: a later flag starting the same way would change old scripts).

    Every subcommand's parser is made of this class too (argparse's subparsers copy the class).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")

    def refuse_unknown(self, extras: Sequence[str]) -> NoReturn:
        """Arguments no parser took, reported by the command they were given to (so the line
        points to its --help, not edgepipe's), with the nearest option it has for each flag."""
        names = {s.lstrip("-"): s for action in self._actions for s in action.option_strings}  # dashes match anything
        hints = [f"did you mean {names[near[0]]}?" for extra in extras if extra.startswith("-")
                 if (near := difflib.get_close_matches(extra.split("=", 1)[0].lstrip("-"), names, n=1))]
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f"; {' '.join(hints)}" if hints else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="edgepipe",
        description=(
            "Train an image classifier on a folder of labelled photos, convert it to int8 "
            "TFLite (and the Coral Edge TPU), run it on a Raspberry Pi camera and measure "
            "its real latency there."
        ),
        epilog=(
            "pipeline:\n"
            "  edgepipe train photos/ --out run/         fine-tune MobileNet\n"
            "  edgepipe convert run/ --out bundle/       int8 TFLite bundle (+ Edge TPU)\n"
            "  edgepipe run bundle/ --source picamera2   live labels on the device\n"
            "  edgepipe bench bundle/                    latency percentiles\n"
            "  edgepipe deploy bundle/ pi@raspberrypi    ship it as a service\n"
            "  edgepipe demo                             all of it, offline, on synthetic data\n"
            "\nadd --debug to any command for a full traceback on errors, --verbose to see\n"
            "TensorFlow's own logging (hidden otherwise)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgepipe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The order of `edgepipe --help`. This is where stages meet: `bench --host` is
    # the device's command carried out by the deploy stage, handed in here.
    train_cli.register(subparsers, simulate_imx500=convert_cli.simulate_imx500)
    convert_cli.register(subparsers)
    device_cli.register(subparsers, bench_on_host=deploy_cli.bench_on_host)
    deploy_cli.register(subparsers)
    export_cli.register(subparsers)
    demo.register(subparsers, run_command=main)
    return parser


def _missing_extra(exc: ModuleNotFoundError) -> MissingExtraError | None:
    root = (exc.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(root)
    return MissingExtraError(root, extra) if extra else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    verbose = "--verbose" in argv
    argv = [a for a in argv if a not in ("--debug", "--verbose")]
    if debug or verbose:
        configure_tensorflow(verbose=True)
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        getattr(args, "parser", parser).refuse_unknown(extras)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    args.argv = argv[argv.index(args.command) + 1:]  # the command's own arguments, as typed (typed_dests)
    prog = f"edgepipe {args.command}"
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        if debug:
            traceback.print_exc()
        print(f"{prog}: error: {safe_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        missing = _missing_extra(exc)
        if debug or missing is None:
            traceback.print_exc()
        print(f"{prog}: error: {missing or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence for users
        if debug:
            traceback.print_exc()
        print(
            f"{prog}: internal error: {type(exc).__name__}: {safe_line(exc)} "
            "(rerun with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
