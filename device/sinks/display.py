"""`run --display`: the annotated frame in a window when there is a screen; q or Esc stops the run."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TextIO

import cv2
import numpy as np

from ..run.results import FrameResult
from ..run.sink import RunInfo, Sink

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

    uses_frames = True

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

