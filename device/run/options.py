"""What a run is asked to do (`edgepipe run`'s options, typed), read by the capture thread
and the loop alike."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.unknown import UnknownRule
from .regions import Region


@dataclass
class RunOptions:
    top_k: int = 5
    threshold: float = 0.0
    smooth: float | None = None
    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = False
    fps: float | None = None
    max_retries: int = 5
    stats_interval: float = 5.0
    unknown: UnknownRule | None = None
    ignore_decode_errors: bool = False
    regions: tuple[Region, ...] = ()  # --roi: each also classified on its own, every frame
