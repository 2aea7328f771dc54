"""What a long command is doing, on stderr.

stdout carries results (a table, JSON lines) that scripts read; everything a
person watches while waiting goes to stderr, flushed at once so it shows up
in journals and pipes as it happens.

Work that takes more than a few seconds gets a bar with rate and time left
(tqdm) when stderr is a terminal, else a plain line every PLAIN_INTERVAL_S
seconds (logs, CI, pipes), and always a last line with the total time.

For a step that reports nothing itself (the TFLite converter, tfmot's graph
rewrite), `Working` shows the time elapsed so far from a background thread.

tqdm comes with the `train` extra; without it (the device) the plain lines are used.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

PLAIN_INTERVAL_S = 10.0
FALLBACK_SIZE = (80, 24)  # columns, rows for bars on a terminal that reports no size
T = TypeVar("T")


def say(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def _terminal_sized(stream: TextIO) -> bool:
    """Whether the terminal reports its size: a pseudo-terminal nobody sized (0 x 0, as under
    some SSH, container and CI sessions) does not, and tqdm would draw each bar as an empty line."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


class Progress:
    """`with Progress(200, "PTQ calibration") as p: ... p.update()`; `note()` adds e.g. a loss."""

    def __init__(self, total: int, desc: str, unit: str = "img", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.desc, self.unit, self.clock = total, desc, unit, clock
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.extra = ""
        self.start = self.last_line = clock()
        self._bar = None
        self._closed = False
        if getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                sized = _terminal_sized(self.stream)
                self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, leave=True, dynamic_ncols=sized,
                                 **({} if sized else {"ncols": FALLBACK_SIZE[0], "nrows": FALLBACK_SIZE[1]}))

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def note(self, text: str) -> None:
        self.extra = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        if now - self.last_line >= PLAIN_INTERVAL_S and self.done < self.total:
            self.last_line = now
            rate = self.done / max(now - self.start, 1e-9)
            left = (self.total - self.done) / rate if rate > 0 else float("inf")
            self._print(f"{self.done}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s, {_duration(left)} left)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.done:
            elapsed = self.clock() - self.start
            self._print(f"{self.done}/{self.total} {self.unit} in {_duration(elapsed)} "
                        f"({self.done / max(elapsed, 1e-9):.1f} {self.unit}/s)")

    def _print(self, text: str) -> None:
        print(f"{self.desc}: {text}" + (f", {self.extra}" if self.extra else ""), file=self.stream, flush=True)


class Working:
    """`with Working("PTQ: converting"):` shows elapsed time until the block ends, then the total.

    On a terminal one line is rewritten every second; otherwise a line every
    PLAIN_INTERVAL_S. `paused` holds the ticking while a Progress bar inside the
    block (e.g. the converter's calibration pass) owns the line.
    """

    def __init__(self, desc: str, stream: TextIO | None = None) -> None:
        self.desc = desc
        self._stream = stream
        self.tty = False
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name=f"progress: {desc}", daemon=True)
        self.start = time.monotonic()

    @property
    def stream(self) -> TextIO:
        """sys.stderr when the block runs, not when this was made (edgepipe.core.tfenv may swap it in between)."""
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self) -> "Working":
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = "\r\033[K" if self.tty else ""
        if exc_type is None:
            print(f"{end}{self.desc}: done in {_duration(time.monotonic() - self.start)}", file=self.stream, flush=True)
        elif self.tty:
            print(end, end="", file=self.stream, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(1.0 if self.tty else PLAIN_INTERVAL_S):
            if self.paused:
                continue
            elapsed = _duration(time.monotonic() - self.start)
            if self.tty:
                print(f"\r\033[K{self.desc}: {elapsed}", end="", file=self.stream, flush=True)
            else:
                print(f"{self.desc}: {elapsed} so far", file=self.stream, flush=True)


def track(items: Iterable[T], total: int, desc: str, unit: str = "img") -> Iterator[T]:
    """Yield `items`, counting each one on a Progress."""
    with Progress(total, desc, unit) as progress:
        for item in items:
            yield item
            progress.update()
