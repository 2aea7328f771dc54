"""Where `edgepipe run`'s results go: every output is a sink.

The pipeline hands each `FrameResult` to each sink in turn, on the inference
thread, so a sink must return quickly: one that talks to something slow (a
broker, a browser) keeps a bounded queue of its own and counts what it drops.
A run's sinks are started before the first frame and closed after the last,
always, also when the run fails, so files they write are complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from edgepipe.core.files import atomic_write_text, check_writable

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


class Sink:
    """One output of a run. Subclasses override what they need; `emit` is required."""

    def start(self, run: RunInfo) -> None:
        """Called once before the first result."""

    def emit(self, result: FrameResult) -> None:
        raise NotImplementedError

    def summary_fields(self) -> dict[str, Any]:
        """Entries this sink adds to the run's summary (e.g. what it recorded or dropped)."""
        return {}

    def close(self, summary: dict[str, Any]) -> None:
        """Called once after the last result, with the run's final summary (empty when it failed)."""


class LinesSink(Sink):
    """One line per result on `out`: JSON (`run --json`) or a human line."""

    def __init__(self, out: TextIO, as_json: bool, threshold: float = 0.0) -> None:
        self.out, self.as_json, self.threshold = out, as_json, threshold

    def emit(self, result: FrameResult) -> None:
        line = json.dumps(result.to_json()) if self.as_json else result.human_line(self.threshold)
        self.out.write(line + "\n")
        self.out.flush()


class StatsJsonSink(Sink):
    """The final summary as a JSON file (`run --stats-json`), written atomically at close."""

    def __init__(self, path: Path, force: bool = False) -> None:
        check_writable(path, force)
        self.path = Path(path)

    def emit(self, result: FrameResult) -> None:
        pass

    def close(self, summary: dict[str, Any]) -> None:
        if summary:  # empty when the run failed before it could summarise: leave no misleading file
            atomic_write_text(self.path, json.dumps(summary, indent=2) + "\n")


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
