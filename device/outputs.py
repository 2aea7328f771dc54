"""What `edgepipe run` does with each result besides printing it: draw it on
the frame, show it in a window when there is a screen, and record it to a
video file that is complete even when the run is interrupted."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from .errors import UserError
from .fsutil import refuse_overwrite
from .postprocess import Prediction

WINDOW = "edgepipe"
QUIT_KEYS = (ord("q"), 27)  # q, Esc


def annotate(bgr: np.ndarray, top: list[Prediction], fps: float) -> np.ndarray:
    """A copy of the frame with the best label, its score and the FPS in the corner."""
    out = bgr.copy()
    text = f"{top[0].label} {top[0].score:.2f}" if top else "-"
    scale = max(0.5, out.shape[1] / 800)
    thickness = max(1, round(scale * 2))
    for row, line in enumerate((text, f"{fps:.1f} fps")):
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        y = int((row + 1) * (h + base + 8))
        cv2.rectangle(out, (0, y - h - base - 4), (w + 12, y + 4), (0, 0, 0), -1)
        cv2.putText(out, line, (6, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


def display_available() -> bool:
    """A window can only open on a desktop session; a Pi over SSH or a service has none."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Display:
    """A window showing annotated frames; turns itself off (with one warning) when it cannot open."""

    def __init__(self, log: TextIO) -> None:
        self.log = log
        self.enabled = display_available()
        if not self.enabled:
            log.write("edgepipe run: --display ignored: no display (DISPLAY/WAYLAND_DISPLAY unset)\n")

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

    def close(self) -> None:
        if self.enabled:
            with contextlib.suppress(cv2.error):
                cv2.destroyWindow(WINDOW)


class Recorder:
    """Writes annotated frames to a hidden partial file and renames it into place on close,
    so OUT.mp4 is either absent or a finalised video (also after Ctrl-C)."""

    def __init__(self, path: Path, force: bool = False) -> None:
        path = Path(path)
        refuse_overwrite(path, force)
        self.path = path
        self.partial = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

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

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.release()
            os.replace(self.partial, self.path)
