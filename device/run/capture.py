"""The capture thread: reads a source into the frame buffer, paced to the file's own rate
with --realtime, and reopens a lost live source with exponential backoff."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from .frames import Frame, FrameBuffer
from .options import RunOptions
from .runstats import RunStats
from .sources import FrameSource, OpenCVSource, SourceLost, SourceUnavailable

MAX_BACKOFF_S = 8.0


class Capture(threading.Thread):
    """Reads the source into the buffer; reopens a lost live source with exponential backoff.

    It only decodes: the workers preprocess each frame they take straight into their
    interpreter's input tensor, so a live source's dropped frames cost no preprocessing.
    """

    def __init__(self, source: FrameSource, buffer: FrameBuffer, stop: threading.Event,
                 options: RunOptions, stats: RunStats, log: TextIO) -> None:
        super().__init__(name="edgepipe-capture", daemon=True)
        self.source, self.buffer, self.stop = source, buffer, stop
        self.options, self.stats, self.log = options, stats, log
        self.index = 0
        self._said_reduction = False

    def run(self) -> None:
        failure: BaseException | None = None
        try:
            self._capture_with_retries()
        except BaseException as exc:  # handed to the inference loop, which reports it
            failure = exc
        finally:
            self.buffer.close(failure)

    def _capture_with_retries(self) -> None:
        failures = 0
        while not self.stop.is_set():
            before = self.index
            try:
                self.source.open()
                self._say_reduction()
                self._read_frames()
                return  # the source ended, or we were asked to stop
            except (SourceUnavailable, SourceLost) as exc:
                failures = 1 if self.index > before else failures + 1
                if failures > self.options.max_retries:
                    raise SourceUnavailable(
                        f"{exc} (gave up after {self.options.max_retries} retries)"
                    ) from None
                delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (failures - 1))
                self.stats.retries += 1
                self.log.write(
                    f"edgepipe run: {exc}; retry {failures}/{self.options.max_retries} in {delay:.1f} s\n"
                )
                self.log.flush()
                self.stop.wait(delay)
            finally:
                self.source.close()

    def _say_reduction(self) -> None:
        """Once: that frames are decoded smaller than recorded, and why that is allowed."""
        if isinstance(self.source, OpenCVSource) and self.source.reduction > 1 and not self._said_reduction:
            self._said_reduction = True
            self.log.write(f"edgepipe run: decoding {self.source.name}'s JPEG frames at 1/{self.source.reduction} "
                           "size: only the model sees them (--serve, --display, --record, --collect or --roi "
                           "decode them whole)\n")
            self.log.flush()

    def _read_frames(self) -> None:
        pace_fps = (self.options.fps or self.source.fps) if self.options.realtime and not self.source.live else None
        first, first_index = time.perf_counter(), self.index
        while not self.stop.is_set():
            started = time.perf_counter()
            image = self.source.read()
            if image is None:
                return
            captured = time.perf_counter()
            frame = Frame(self.index, image, time.time(), started, (captured - started) * 1000.0,
                          item=self.source.current_item)
            self.buffer.put(frame, self.stop)
            self.index += 1
            if pace_fps:
                due = first + (self.index - first_index) / pace_fps
                self.stop.wait(max(0.0, due - time.perf_counter()))
