"""`edgepipe bench` and `edgepipe bench compare` on the command line.

Registration imports only argparse and light modules; numpy, the TFLite
runtime and matplotlib load when the command runs. `compare` is a first
positional word rather than a sub-subcommand so that `edgepipe bench MODEL`
stays the short, common form.
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any, Callable

from edgepipe.core.args import add_command, add_word
from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text, refuse_overwrite
from edgepipe.core.options import add_options, options_from
from edgepipe.core.ssh import add_connection_arguments

from .options import BenchPlan

COMPARE = "compare"
# `bench --host`: measuring on a device is the deploy stage's job (it uploads the bundle);
# the CLI's entry point hands that stage's command in, so this module never imports it.
OnHost = Callable[[argparse.Namespace], int]
# Flags that shape a measurement and mean nothing to `bench compare`.
MEASUREMENT_FLAGS = (
    "labels", "runs", "warmup", "threads", "workers", "accelerator", "edgetpu_device", "duration", "image", "e2e", "csv", "host",
)

DESCRIPTION = """
Measure how fast a model really runs here: load time, the cold first inference,
then --runs timed inferences after --warmup untimed ones (min, mean, std, p50,
p90, p95, p99, max, inferences/s), peak memory and the environment (board, CPU,
OS, runtime, Edge TPU runtime, SoC temperature and throttling on a Pi). Only
interpreter.invoke() is timed, on a real image (--image) or random pixels in the
input's range. --e2e adds the whole per-frame path of `edgepipe run` per stage.

`edgepipe bench compare A.json B.json ...` puts saved results (--out) side by
side: one row per model x device x accelerator x threads, with ratios to the
first row.
"""

EXAMPLES = """
edgepipe bench bundle/                              all cores, 100 runs
edgepipe bench bundle/ --threads 1,2,4 --out cpu.json
edgepipe bench bundle/ --workers 1,2 --threads 1,2    throughput curve: interpreters x threads
edgepipe bench bundle/ --accelerator all --json     CPU and Edge TPU side by side
edgepipe bench model.tflite --labels labels.txt --image cat.jpg --runs 500
edgepipe bench bundle/ --duration 600 --plot drift.png   sustained: does it throttle?
edgepipe bench bundle/ --e2e video.mp4 --runs 200   capture+preprocess+inference+postprocess
edgepipe bench bundle/ --host pi@raspberrypi --out pi.json
edgepipe bench compare laptop.json pi.json coral.json --plot latency.png
"""

COMPARE_DESCRIPTION = """
Put results saved by `edgepipe bench --out` side by side: one row per model x
device x accelerator x threads (and workers), with each row's latency and
throughput as a ratio to the first file's first row.
"""

COMPARE_EXAMPLES = """
edgepipe bench compare laptop.json pi.json
edgepipe bench compare laptop.json pi.json coral.json --plot latency.png
edgepipe bench compare --json cpu.json edgetpu.json --out both.json
"""


def intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Let options sit between positionals (`bench compare --json A.json B.json`).

    Plain argparse fills all positionals at the first one it meets and
    rejects files after an option; the subcommand parser is created by the
    shared dispatcher, so its class is extended here to parse intermixed.
    """

    class IntermixedParser(type(parser)):  # type: ignore[misc]
        _parsing = False

        def parse_known_args(self, args=None, namespace=None):
            if self._parsing:
                return super().parse_known_args(args, namespace)
            self._parsing = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._parsing = False

    parser.__class__ = IntermixedParser
    return parser


def register_bench(subparsers: argparse._SubParsersAction, on_host: OnHost | None = None) -> None:
    p = intermixed(add_command(
        subparsers,
        "bench",
        help="measure latency percentiles and memory of a model (or `bench compare` saved results)",
        description=DESCRIPTION,
        examples=EXAMPLES,
    ))
    p.add_argument("target", metavar="MODEL_OR_BUNDLE",
                   help=f"a bundle directory or a .tflite file; or `{COMPARE}` followed by bench JSON files "
                        f"(a bundle directory called {COMPARE}: write ./{COMPARE})")
    _add_files(p)
    p.add_argument("--labels", type=Path, metavar="FILE", help="labels for a bare .tflite (a bundle has its own)")
    add_options(p, BenchPlan)
    _add_outputs(p)
    p.add_argument("--csv", type=Path, metavar="FILE", help="write one CSV row per configuration")
    p.add_argument("--host", metavar="USER@HOST", help="run on a device over SSH; see `edgepipe deploy`")
    add_connection_arguments(p)
    compare = add_word(p, COMPARE, description=COMPARE_DESCRIPTION, examples=COMPARE_EXAMPLES)
    _add_files(compare)
    _add_outputs(compare)
    p.set_defaults(func=functools.partial(bench_command, on_host=on_host), bench_parser=p)


def _add_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="JSON",
                        help=f"with `{COMPARE}`: results written by `bench --out`; the first is the baseline of the "
                             "ratios")


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    """The flags of both `bench` and `bench compare`: where the result goes."""
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON (schema in docs/commands/bench.md)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="also write the JSON result to FILE (for `bench compare`)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="draw the latency distributions (needs pip install 'edgepipe[plot]')")
    parser.add_argument("--force", action="store_true", help="overwrite existing --out/--csv/--plot files")


def plan_from_args(args: argparse.Namespace) -> BenchPlan:
    return options_from(args, BenchPlan)


def bench_command(args: argparse.Namespace, on_host: OnHost | None = None) -> int:
    parser: argparse.ArgumentParser = args.bench_parser
    if args.target == COMPARE:
        return compare_command(args, parser)
    if args.files:
        parser.error(
            f"unexpected argument {args.files[0]!r}: bench measures one model; "
            f"to put results side by side use `edgepipe bench {COMPARE} A.json B.json`"
        )
    if args.host:
        if on_host is None:
            raise UserError("--host needs edgepipe's deploy stage, which this command was built without; "
                            "run `edgepipe bench --out FILE` on the device and `edgepipe bench compare` here")
        return on_host(args)
    _check_outputs(args)

    from .measure import run_bench
    from .report import csv_text, format_report, report_series

    report = run_bench(Path(args.target), args.labels, plan_from_args(args))
    if args.csv:
        atomic_write_text(args.csv, csv_text(report))
    title = f"{report['model_name']} on {report['environment']['hostname']}"
    return _emit(args, report, lambda: format_report(report), lambda: report_series(report), title)


def compare_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    misplaced = [f"--{flag.replace('_', '-')}" for flag in MEASUREMENT_FLAGS if getattr(args, flag) != parser.get_default(flag)]
    if misplaced:
        parser.error(f"{misplaced[0]} does not apply to `bench {COMPARE}` (it compares saved results)")
    if not args.files:
        parser.error(f"`bench {COMPARE}` needs at least one bench JSON file (written by `edgepipe bench --out`)")
    _check_outputs(args)

    from .compare import comparison_json, comparison_series, compare_rows, format_comparison, load_report

    rows = compare_rows([load_report(path) for path in args.files], [str(path) for path in args.files])
    return _emit(args, comparison_json(rows, args.files), lambda: format_comparison(rows),
                 lambda: comparison_series(rows), "latency per inference")


def _emit(args: argparse.Namespace, result: dict[str, Any], human: Callable[[], str],
          series: Callable[[], list], title: str) -> int:
    """--out (the JSON), --plot, then the JSON or the table on stdout."""
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    if args.plot:
        from .plot import save_latency_plot

        save_latency_plot(series(), args.plot, title)
    print(json.dumps(result, indent=2) if args.json else human())
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse to overwrite, and find a missing matplotlib, before minutes of measuring."""
    for path in (args.out, args.csv, args.plot):
        if path is not None:
            refuse_overwrite(path, args.force)
    if args.plot:
        from .plot import require_matplotlib

        require_matplotlib()
