"""`run`'s lines on stdout: one JSON object (`--json`) or one human line per result."""

from __future__ import annotations

import json
from typing import TextIO

from ..run.results import FrameResult
from ..run.sink import Sink


class LinesSink(Sink):
    """One line per result on `out`: JSON (`run --json`) or a human line."""

    def __init__(self, out: TextIO, as_json: bool, threshold: float = 0.0) -> None:
        self.out, self.as_json, self.threshold = out, as_json, threshold

    def emit(self, result: FrameResult) -> None:
        line = json.dumps(result.to_json()) if self.as_json else result.human_line(self.threshold)
        self.out.write(line + "\n")
        self.out.flush()
