"""What `edgepipe bench` measures: each option once, with its default, flag
and help (edgepipe.core.options).

Light on purpose (no numpy, no TFLite runtime): the CLI imports it to build
its parser, and `bench --host` sends the same plan to a device.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.accelerators import BENCH_ACCELERATORS
from edgepipe.core.args import non_negative_int, positive_float, positive_int
from edgepipe.core.errors import UserError
from edgepipe.core.options import flag

MAX_THREADS = 64
# A sustained run is cut into about this many windows (each at least MIN_WINDOW_S long).
SUSTAINED_WINDOWS = 10
MIN_WINDOW_S = 1.0


def _counts(text: str, unit: str) -> tuple[int, ...]:
    """'1,2,4' -> (1, 2, 4); duplicates dropped, order kept."""
    counts: list[int] = []
    for part in text.split(","):
        try:
            value = int(part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part.strip()!r} is not a whole number of {unit} (e.g. 1,2,4)") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{value} {unit} is impossible: use 1 or more")
        if value > MAX_THREADS:
            raise argparse.ArgumentTypeError(f"{value} {unit} is more than {MAX_THREADS}; a TFLite CPU model cannot use them")
        if value not in counts:
            counts.append(value)
    return tuple(counts)


def thread_counts(text: str) -> tuple[int, ...]:
    return _counts(text, "threads")


def worker_counts(text: str) -> tuple[int, ...]:
    return _counts(text, "workers")


@dataclass(frozen=True)
class BenchPlan:
    """What to measure; `threads` None means the available cores shared among `workers`
    (interpreters invoking at the same time, as `run --workers` does)."""

    runs: int = flag("--runs", default=100, parse=positive_int, metavar="N", help="timed inferences per configuration")
    warmup: int = flag("--warmup", default=10, parse=non_negative_int, metavar="N",
                       help="untimed inferences after the first (cold) one")
    threads: tuple[int | None, ...] = flag(
        "--threads", default=(None,), parse=thread_counts, metavar="N[,N...]",
        help="CPU threads per interpreter, one configuration per value, e.g. 1,2,4 "
             "(default: every available core, shared among --workers)")
    workers: tuple[int, ...] = flag(
        "--workers", default=(1,), parse=worker_counts, metavar="N[,N...]",
        help="interpreters invoking at the same time, as `run --workers` does, one configuration per value, e.g. "
             "1,2: with --threads 1,2 the throughput curve of this machine")
    accelerator: str = flag("--accelerator", default="cpu", choices=BENCH_ACCELERATORS,
                            help="where to run; `all` measures the CPU and the Edge TPU (skipped with the reason "
                                 "when absent); imx500: the AI Camera sensor's own timings (CnnKpiInfo)")
    duration_s: float | None = flag(
        "--duration", default=None, parse=positive_float, metavar="S",
        help="sustained run: time for S seconds instead of --runs, report latency per time window and SoC "
             "temperature/throttling before and after")
    image: Path | None = flag("--image", default=None, parse=Path, metavar="FILE",
                              help="time inference on this photo (through the model's preprocessing) instead of "
                                   "random pixels")
    edgetpu_device: str | None = flag("--edgetpu-device", default=None, metavar="DEVICE",
                                      help="which Edge TPU: usb:0, pci:0, usb or pci (default: the first)")
    e2e_source: str | None = flag(
        "--e2e", default=None, metavar="SOURCE",
        help="also time the whole per-frame path of `edgepipe run` on SOURCE (video file, camera, image folder): "
             "--warmup frames, then --runs frames")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.accelerator not in BENCH_ACCELERATORS:
            raise UserError(f"accelerator {self.accelerator!r} is not one of {', '.join(BENCH_ACCELERATORS)}")
        if self.accelerator == "edgetpu" and len(self.threads) > 1:
            raise UserError(
                "the Edge TPU runs the model's ops itself and ignores --threads (they only size the CPU "
                "fallback); pass one --threads value, or --accelerator all to compare with CPU threads"
            )

    @property
    def window_s(self) -> float | None:
        if self.duration_s is None:
            return None
        return max(MIN_WINDOW_S, self.duration_s / SUSTAINED_WINDOWS)
