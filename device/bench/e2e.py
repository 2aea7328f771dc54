"""`edgepipe bench --e2e SOURCE`: the whole per-frame path of `edgepipe run`.

It runs the real `run` pipeline (capture thread, preprocessing, inference,
postprocessing) rather than a copy of it, and reads the per-frame stage
latencies from the same `FrameResult`s every output of `edgepipe run` gets,
so what is measured is what users run. Unlike the model latency, the "inference" stage
here includes reading and dequantising the output; "capture" is reading (for a video or
an MJPG camera, decoding; an MJPEG file at a reduced size, as `run` does) the frame, "preprocess" resizing it into the interpreter's
input, and "handoff" what is left of the frame's total: the time it waited between
threads (in the frame buffer for a free worker, then for earlier frames' results) and
was handed to the outputs. The process's CPU time per frame says what the pipeline
costs the cores, which the waits do not.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from .stats import MS_DECIMALS, latency_summary
from edgepipe.core.errors import UserError
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.runstats import STAGES

# The per-frame stages in the order a frame passes them, then the frame's total.
E2E_STAGES = (*STAGES[:-1], "handoff", STAGES[-1])
from edgepipe.device.model.classifier import Classifier
from edgepipe.device.run.sink import Sink
from edgepipe.device.run.sources import FrameSource
from .sysinfo import peak_rss_mb


class FrameLatencySink(Sink):
    """Keeps each frame's stage latencies and the moment its result was emitted."""

    def __init__(self) -> None:
        self.latencies: list[dict[str, float]] = []
        self.emitted_ns: list[int] = []

    def emit(self, result: FrameResult) -> None:
        self.emitted_ns.append(time.perf_counter_ns())
        self.latencies.append(result.latency_ms)


class WarmupLabelledLog(io.TextIOBase):
    """The run's log, with its closing summary line saying that it counts the warm-up frames too,
    so it cannot be mistaken for the bench's own (warm-up excluded) numbers."""

    def __init__(self, log: io.TextIOBase, warmup: int) -> None:
        super().__init__()
        self.log, self.warmup = log, warmup

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text.startswith("summary: "):
            text = f"run summary, {self.warmup} warm-up frames included: " + text.removeprefix("summary: ")
        return self.log.write(text)

    def flush(self) -> None:
        self.log.flush()


def measure_e2e(classifiers: list[Classifier], source: FrameSource, warmup: int, runs: int,
                duration_s: float | None, log: io.TextIOBase) -> dict[str, Any]:
    """Per-stage statistics over `runs` frames (or `duration_s` seconds) after `warmup` frames,
    with one pipeline worker per classifier."""
    options = RunOptions(
        max_frames=None if duration_s else warmup + runs,
        duration=duration_s,
        stats_interval=0,
        max_retries=0,  # a bench reports a lost source instead of waiting out retries
    )
    sink = FrameLatencySink()
    cpu_started = time.process_time()
    result = Pipeline(classifiers, source, options, [sink], log=WarmupLabelledLog(log, warmup)).run()
    cpu_s = time.process_time() - cpu_started
    frames = sink.latencies[warmup:]
    if not sink.latencies:
        raise UserError(f"source {source.name} yielded no frames ({result.reason}); check it with `edgepipe run --source`")
    if not frames:
        raise UserError(
            f"source {source.name} yielded only {len(sink.latencies)} frames, all spent on --warmup {warmup}; "
            "use a longer source or a smaller --warmup"
        )
    for f in frames:  # what the measured stages leave of the total: waiting between threads, emitting
        f["handoff"] = max(0.0, f["total"] - sum(f[stage] for stage in STAGES[:-1]))
    emitted = sink.emitted_ns[warmup:]
    span_s = (emitted[-1] - emitted[0]) / 1e9
    return {
        "source": source.name,
        "accelerator": classifiers[0].accelerator,
        "threads": classifiers[0].threads,
        "workers": len(classifiers),
        "warmup": warmup,
        "frames": len(frames),
        "fps": round((len(frames) - 1) / span_s, 3) if span_s > 0 else None,
        "dropped": result.summary.get("dropped", 0),
        "stop_reason": result.reason,
        "stages_ms": {
            stage: latency_summary(np.array([f[stage] for f in frames]) * 1e6) for stage in E2E_STAGES
        },
        "cpu_ms_per_frame": round(cpu_s * 1000 / len(sink.latencies), MS_DECIMALS),  # warm-up frames included
        "peak_rss_mb": peak_rss_mb(),
        "total_samples_ms": [round(f["total"], MS_DECIMALS) for f in frames],
    }
