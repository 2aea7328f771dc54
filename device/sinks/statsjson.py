"""`run --stats-json FILE`: the run's final summary, written atomically when the run ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgepipe.core.files import atomic_write_text, check_writable

from ..run.results import FrameResult
from ..run.sink import Sink


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
