"""`run --record OUT.mp4`: the annotated frames as a video file that is complete even when
the run is interrupted."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import check_writable

from ..run.results import FrameResult
from ..run.sink import RunInfo, Sink


class RecorderSink(Sink):
    """Writes annotated frames to a hidden partial file and renames it into place on close,
    so OUT.mp4 is either absent or a finalised video (also after Ctrl-C).

    The video plays at `fps` when given (--fps), else at the source's own rate.
    """

    uses_frames = True

    DEFAULT_FPS = 15.0

    def __init__(self, path: Path, force: bool = False, fps: float | None = None) -> None:
        path = Path(path)
        check_writable(path, force)
        self.path = path
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
        self.frames = 0
        self.fps = fps
        self._writer: cv2.VideoWriter | None = None

    def start(self, run: RunInfo) -> None:
        self.fps = self.fps or run.source_fps or self.DEFAULT_FPS

    def emit(self, result: FrameResult) -> None:
        self.write(result.annotated, self.fps or self.DEFAULT_FPS)

    def summary_fields(self) -> dict[str, Any]:
        return {"recorded": str(self.path) if self.frames else None}

    def write(self, frame: np.ndarray, fps: float) -> None:
        """Append a frame; `fps` (the source's rate) is fixed by the first call."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not writer.isOpened():
                raise UserError(f"cannot record to {self.path}: OpenCV has no mp4v writer for it")
            self._writer = writer
        self._writer.write(frame)
        self.frames += 1

    def close(self, summary: dict[str, Any] | None = None) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()
            os.replace(self.partial, self.path)
