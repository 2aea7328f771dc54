"""What a run is asked to do (`edgepipe run`'s options, typed), read by the capture thread
and the loop alike; each option once, with its default, flag and help (edgepipe.core.options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgepipe.core.args import (above_zero_fraction, non_negative_float, non_negative_int, positive_float, positive_int,
                                unit_interval)
from edgepipe.core.options import flag

from ..model.options import ModelOptions
from .regions import Region, parse_region

if TYPE_CHECKING:  # the command line imports this module to build its parser: it stays light
    from ..model.unknown import UnknownRule


@dataclass(frozen=True)
class TrackerOptions:
    """How the tracker (tracker.py) decides an object arrived and left."""

    iou: float = 0.3  # the least overlap for a detection to continue a track
    min_hits: int = 2  # frames an object must be seen in before it counts
    max_missed: int = 5  # frames a counted object may go unseen before it has left

    def __post_init__(self) -> None:
        if not 0 < self.iou <= 1 or self.min_hits < 1 or self.max_missed < 0:
            raise ValueError(f"tracker options {self} out of range")


@dataclass
class RunOptions:
    top_k: int = ModelOptions.top_k  # the --top-k of the model's options
    fps: float | None = flag("--fps", default=None, parse=positive_float, metavar="FPS",
                             help="camera frame rate to request; with --realtime, the pace for sources without "
                                  "their own")
    realtime: bool = flag("--realtime", default=False,
                          help="pace a video file (or images) at its frame rate and drop frames like a camera, "
                               "instead of classifying every frame")
    threshold: float = 0.0  # the model options' --threshold, for a classifier (a detector's is its score floor)
    smooth: float | None = flag("--smooth", default=None, metavar="ALPHA",
                                parse=above_zero_fraction("would never update the scores"),
                                help="exponential smoothing of scores over frames: new = ALPHA*frame + "
                                     "(1-ALPHA)*previous")
    max_frames: int | None = flag("--max-frames", default=None, parse=positive_int, metavar="N",
                                  help="stop after N results")
    duration: float | None = flag("--duration", default=None, parse=positive_float, metavar="S",
                                  help="stop after S seconds")
    max_retries: int = flag("--max-retries", default=5, parse=non_negative_int, metavar="N",
                            help="reopen an absent, busy or lost camera/stream N times with backoff 0.5, 1, 2, "
                                 "... 8 s")
    stats_interval: float = flag("--stats-interval", default=5.0, parse=non_negative_float, metavar="S",
                                 help="seconds between stats lines on stderr (0: none)")
    unknown: UnknownRule | None = None  # the rule --unknown resolves to for this model
    ignore_decode_errors: bool = flag("--ignore-decode-errors", default=False,
                                      help="exit 0 even when frames of a video file could not be decoded (default: "
                                           "warn and exit 1)")
    regions: tuple[Region, ...] = flag("--roi", default=(), parse=parse_region, repeat=True, metavar="NAME=x,y,w,h",
                                       help="also classify this region of every frame on its own (repeatable); "
                                            "pixels, or fractions of the frame such as gate=0,0,0.5,1 (the left "
                                            "half); a detector's zone: its objects are counted in it")
    tracker: TrackerOptions = TrackerOptions()  # a detector's objects over time
