"""`edgepipe bench --e2e SOURCE`: the whole per-frame path of `edgepipe run`.

It runs the real `run` pipeline (capture thread, preprocessing, inference,
postprocessing) rather than a copy of it, and reads the per-frame stage
latencies from the same JSON lines `edgepipe run --json` prints, so what is
measured is what users run. Unlike the model latency, the "inference" stage
here includes setting the input and reading and dequantising the output.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import numpy as np

from .benchstats import MS_DECIMALS, latency_summary
from .errors import UserError
from .pipeline import Pipeline, RunOptions
from .runstats import STAGES
from .runtime import Classifier
from .sources import FrameSource
from .sysinfo import peak_rss_mb


class FrameLatencySink(io.TextIOBase):
    """Stands in for stdout: keeps each frame's `latency_ms` and the moment its result was emitted."""

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[dict[str, float]] = []
        self.emitted_ns: list[int] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.perf_counter_ns()
        for line in text.splitlines():
            if line.strip():
                self.latencies.append(json.loads(line)["latency_ms"])
                self.emitted_ns.append(now)
        return len(text)


def measure_e2e(classifier: Classifier, source: FrameSource, warmup: int, runs: int,
                duration_s: float | None, log: io.TextIOBase) -> dict[str, Any]:
    """Per-stage statistics over `runs` frames (or `duration_s` seconds) after `warmup` frames."""
    options = RunOptions(
        top_k=5,
        json=True,
        max_frames=None if duration_s else warmup + runs,
        duration=duration_s,
        stats_interval=0,
        max_retries=0,  # a bench reports a lost source instead of waiting out retries
    )
    sink = FrameLatencySink()
    result = Pipeline(classifier, source, options, out=sink, log=log).run()
    frames = sink.latencies[warmup:]
    if not sink.latencies:
        raise UserError(f"source {source.name} yielded no frames ({result.reason}); check it with `edgepipe run --source`")
    if not frames:
        raise UserError(
            f"source {source.name} yielded only {len(sink.latencies)} frames, all spent on --warmup {warmup}; "
            "use a longer source or a smaller --warmup"
        )
    emitted = sink.emitted_ns[warmup:]
    span_s = (emitted[-1] - emitted[0]) / 1e9
    return {
        "source": source.name,
        "accelerator": classifier.accelerator,
        "threads": classifier.threads,
        "warmup": warmup,
        "frames": len(frames),
        "fps": round((len(frames) - 1) / span_s, 3) if span_s > 0 else None,
        "dropped": result.summary.get("dropped", 0),
        "stop_reason": result.reason,
        "stages_ms": {
            stage: latency_summary(np.array([f[stage] for f in frames]) * 1e6) for stage in STAGES
        },
        "peak_rss_mb": peak_rss_mb(),
        "total_samples_ms": [round(f["total"], MS_DECIMALS) for f in frames],
    }
