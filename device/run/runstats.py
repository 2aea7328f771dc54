"""Latency and throughput of a long-running `edgepipe run`, in constant memory.

A camera may run for weeks, so per-frame samples are never kept: each stage
feeds a log-spaced histogram (1% wide bins), whose percentiles are within
0.5% of the exact ones, whatever the run length.
"""

from __future__ import annotations

import collections
import math
import time
from typing import Any

import numpy as np

STAGES = ("capture", "preprocess", "inference", "postprocess", "total")
FPS_WINDOW_FRAMES = 30  # a result's fps: the rate over this many results (about 1 s at 30 fps)


class LatencyHistogram:
    """Milliseconds from 1 microsecond to ~10 minutes in bins 1% wide (~1,600 counters)."""

    LOW_MS = 1e-3
    GROWTH = 1.01
    BINS = math.ceil(math.log(6e5 / LOW_MS) / math.log(GROWTH))

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS, dtype=np.int64)
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def add(self, ms: float) -> None:
        index = int(math.log(max(ms, self.LOW_MS) / self.LOW_MS) / math.log(self.GROWTH))
        self.counts[min(index, self.BINS - 1)] += 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100): the geometric centre of the bin holding that rank."""
        if self.count == 0:
            return float("nan")
        rank = max(1, math.ceil(q / 100.0 * self.count))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(self.LOW_MS * self.GROWTH ** (index + 0.5), self.max_ms)

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        return {
            "p50": round(self.percentile(50), 3),
            "p99": round(self.percentile(99), 3),
            "mean": round(self.total_ms / self.count, 3),
            "max": round(self.max_ms, 3),
        }


class RunStats:
    """Counts and per-stage latency for the whole run and for the current stats period."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.frames = 0
        self.dropped = 0
        self.retries = 0
        self.errors = 0
        self.first_result_s: float | None = None
        self.whole = {stage: LatencyHistogram() for stage in STAGES}
        self._period = {stage: LatencyHistogram() for stage in STAGES}
        self._period_started = self.started
        self._period_frames = 0
        self._period_dropped = 0
        self._completed: collections.deque[float] = collections.deque(maxlen=FPS_WINDOW_FRAMES + 1)
        self.current_fps = 0.0

    def record(self, latency_ms: dict[str, float]) -> None:
        now = self.clock()
        if self.first_result_s is None:
            self.first_result_s = now - self.started
        self.current_fps = self._windowed_rate(now)
        self.frames += 1
        self._period_frames += 1
        for stage, ms in latency_ms.items():
            self.whole[stage].add(ms)
            self._period[stage].add(ms)

    def _windowed_rate(self, now: float) -> float:
        """Results per second over the last FPS_WINDOW_FRAMES results, counted from the run's
        start until there are that many: never one interval between two results, which
        parallel workers may deliver in a burst (nearly zero apart) or after a stall."""
        self._completed.append(now)
        if len(self._completed) == self._completed.maxlen:
            frames, since = len(self._completed) - 1, self._completed[0]
        else:
            frames, since = len(self._completed), self.started
        return frames / (now - since) if now > since else self.current_fps

    def drop(self, n: int = 1) -> None:
        self.dropped += n
        self._period_dropped += n

    def elapsed(self) -> float:
        return self.clock() - self.started

    def period_line(self) -> str:
        """The periodic stderr line, then a fresh period."""
        now = self.clock()
        seconds = max(now - self._period_started, 1e-9)
        line = _format_line(self._period_frames / seconds, self._period, self._period_dropped)
        self._period = {stage: LatencyHistogram() for stage in STAGES}
        self._period_started, self._period_frames, self._period_dropped = now, 0, 0
        return f"stats: {line}"

    def summary(self, **extra: Any) -> dict[str, Any]:
        seconds = self.elapsed()
        result = {
            "frames": self.frames,
            "duration_s": round(seconds, 3),
            "fps": round(self.frames / seconds, 3) if seconds > 0 else 0.0,
            "dropped": self.dropped,
            "retries": self.retries,
            "errors": self.errors,
            "first_result_s": None if self.first_result_s is None else round(self.first_result_s, 3),
            "latency_ms": {stage: h.summary() for stage, h in self.whole.items()},
        }
        result.update(extra)
        return result

    def summary_line(self) -> str:
        seconds = max(self.elapsed(), 1e-9)
        return (
            f"summary: {self.frames} frames in {seconds:.1f} s, "
            + _format_line(self.frames / seconds, self.whole, self.dropped)
            + (f", {self.retries} retries" if self.retries else "")
            + (f", {self.errors} errors" if self.errors else "")
        )


def _format_line(fps: float, histograms: dict[str, LatencyHistogram], dropped: int) -> str:
    stages = " | ".join(
        f"{stage} p50 {h.percentile(50):.1f} p99 {h.percentile(99):.1f} ms"
        for stage, h in histograms.items()
        if h.count
    )
    return f"{fps:.1f} fps | {stages or 'no frames'} | dropped {dropped}"
