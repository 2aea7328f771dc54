"""The sinks that show frames: draw the result on the frame, show it in a
window when there is a screen, and record it to a video file that is complete
even when the run is interrupted."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import cv2
import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import check_writable

from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.sink import RunInfo, Sink

WINDOW = "edgepipe"
QUIT_KEYS = (ord("q"), 27)  # q, Esc


def display_available() -> bool:
    """A window can only open on a desktop session; a Pi over SSH or a service has none."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class DisplaySink(Sink):
    """A window showing annotated frames (q or Esc ends the run); turns itself off,
    with one warning, when it cannot open."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.enabled = display_available()
        if not self.enabled:
            log.write("edgepipe run: --display ignored: no display (DISPLAY/WAYLAND_DISPLAY unset)\n")
        self._request_stop = None

    def start(self, run: RunInfo) -> None:
        self._request_stop = run.request_stop

    def emit(self, result: FrameResult) -> None:
        if self.enabled and self.show(result.annotated) and self._request_stop:
            self._request_stop("quit from display", 0)

    def show(self, frame: np.ndarray) -> bool:
        """Show a frame; True when the user asked to quit (q or Esc)."""
        if not self.enabled:
            return False
        try:
            cv2.imshow(WINDOW, frame)
            return (cv2.waitKey(1) & 0xFF) in QUIT_KEYS
        except cv2.error as exc:
            self.enabled = False
            reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else "cv2 error"
            self.log.write(f"edgepipe run: --display turned off: OpenCV cannot open a window ({reason})\n")
            return False

    def close(self, summary: dict[str, Any]) -> None:
        if self.enabled:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW)


class RecorderSink(Sink):
    """Writes annotated frames to a hidden partial file and renames it into place on close,
    so OUT.mp4 is either absent or a finalised video (also after Ctrl-C).

    The video plays at `fps` when given (--fps), else at the source's own rate.
    """

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
