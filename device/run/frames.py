"""Frames between the capture thread and the inference workers: one captured frame and the
bounded buffer it waits in.

Live sources keep only the newest frame (an older one would be a stale answer, so it is
dropped and counted); files wait for room so no frame is lost. Memory stays bounded either way.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

import numpy as np

FILE_BUFFER_FRAMES = 4
POLL_S = 0.1  # how often the loops look at the stop flag: bounds the reaction to Ctrl-C


@dataclass
class Frame:
    index: int  # position in the source, so dropped frames show as gaps
    image: np.ndarray
    ts: float  # wall-clock time of capture (seconds since the epoch)
    started: float  # perf_counter when the capture began
    capture_ms: float
    item: str | None = None  # the source item's name (an image file's), when it has one
    ticket: int = -1  # the order in which workers took frames: the order results are emitted in


class FrameBuffer:
    """Between the capture thread and the inference loop.

    keep_newest: put() replaces a frame not yet taken (counted as dropped).
    Otherwise put() waits for room, so a file loses no frame.
    """

    def __init__(self, keep_newest: bool, capacity: int = FILE_BUFFER_FRAMES) -> None:
        self.keep_newest = keep_newest
        self.capacity = 1 if keep_newest else capacity
        self._frames: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._dropped = 0
        self._taken = 0
        self.failure: BaseException | None = None

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            if self.keep_newest:
                self._dropped += len(self._frames)
                self._frames.clear()
            while len(self._frames) >= self.capacity and not stop.is_set():
                self._cond.wait(POLL_S)
            self._frames.append(frame)
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None on timeout or when the source has ended (see `ended`)."""
        with self._cond:
            if not self._frames and not self._closed:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            frame.ticket, self._taken = self._taken, self._taken + 1
            self._cond.notify_all()
            return frame

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._closed and not self._frames

    def close(self, failure: BaseException | None = None) -> None:
        with self._cond:
            self._closed = True
            self.failure = failure
            self._cond.notify_all()

    def take_dropped(self) -> int:
        with self._cond:
            dropped, self._dropped = self._dropped, 0
            return dropped
