"""What the run loop hands its results to: every output of `edgepipe run` is a sink (device/sinks/).

The pipeline hands each `FrameResult` to each sink in turn, on the inference
thread, so a sink must return quickly: one that talks to something slow (a
broker, a disk) is a sinks.queued.QueuedSink, a bounded queue and a worker, and
counts what it drops.
A run's sinks are started before the first frame and closed after the last,
always, also when the run fails, so files they write are complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .results import FrameResult


@dataclass(frozen=True)
class RunInfo:
    """What a sink may need to know about the run before its first result."""

    source: str
    source_fps: float | None  # the source's own rate, when it has one
    model: str
    accelerator: str
    backend: str
    threads: int
    labels: tuple[str, ...]
    request_stop: Callable[[str, int], None]  # (reason, exit code): ends the run within a poll
    workers: int = 1  # interpreters inferring consecutive frames at once, `threads` each
    regions: tuple[str, ...] = ()  # the names of --roi regions, each with its own result
    running_summary: Callable[[], dict[str, Any]] = dict  # the run's summary so far (from any thread)
    detector: bool = False  # results carry objects (detections, counts, zones, events), not classes
    outputs_health: Callable[[], dict[str, Any]] = dict  # each output's Sink.problems(), merged (any thread)


class Sink:
    """One output of a run. Subclasses override what they need; `emit` is required."""

    # Whether this output shows or keeps the frames' pixels (a page, a recording, collected photos):
    # then the source must decode whole frames, not frames already shrunk for the model.
    uses_frames = False

    def start(self, run: RunInfo) -> None:
        """Called once before the first result."""

    def emit(self, result: FrameResult) -> None:
        raise NotImplementedError

    def summary_fields(self) -> dict[str, Any]:
        """Entries this sink adds to the run's summary (e.g. what it recorded or dropped)."""
        return {}

    def problems(self) -> dict[str, Any]:
        """{name: detail} when this output cannot do its job now (shown by /healthz); {} when it can.
        Called from other threads: read only."""
        return {}

    def close(self, summary: dict[str, Any]) -> None:
        """Called once after the last result, with the run's final summary (empty when it failed)."""


def close_all(sinks: Sequence[Sink], summary: dict[str, Any]) -> None:
    """Close every sink even when one fails; the first failure is raised afterwards."""
    failure: BaseException | None = None
    for sink in sinks:
        try:
            sink.close(summary)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after the others closed
            failure = failure or exc
    if failure is not None:
        raise failure
