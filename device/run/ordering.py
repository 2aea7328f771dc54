"""Results between the inference workers and the emitting thread: emitted in frame order
(files) or newest first (live), with a bound on how many frames are in flight."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .frames import Frame

IN_FLIGHT_PER_WORKER = 2  # frames inside a worker or waiting for an earlier frame's result


@dataclass
class Inferred:
    """A worker's answer for one frame, waiting to be emitted in order."""

    frame: Frame
    scores: Any  # a classifier's scores (np.ndarray), or a detector's four outputs (classifier.ModelOutput)
    preprocess_ms: float
    inference_ms: float
    regions: dict[str, tuple[tuple[int, int, int, int], np.ndarray]] = field(default_factory=dict)  # name -> box, scores
    features: np.ndarray | None = None  # the model's pooled features, for a feature-space unknown rule


class ResultOrder:
    """Between the inference workers and the emitting thread: order and a bound on memory.

    Workers reserve a slot before taking a frame and the slot is freed when
    the result leaves here, so at most `capacity` frames are inside workers
    or waiting for an earlier one. In order (files), results leave by ticket,
    each after all earlier ones. Newest first (live), a result leaves at once
    unless a newer one already left; then it is late, dropped and counted.
    """

    def __init__(self, in_order: bool, workers: int, capacity: int) -> None:
        self.in_order = in_order
        self._cond = threading.Condition()
        self._ready: dict[int, Inferred] = {}
        self._next = 0  # in order: the ticket to emit next; live: the lowest ticket still wanted
        self._free = capacity
        self._working = workers
        self._late = 0
        self.failure: BaseException | None = None

    def reserve(self, timeout: float) -> bool:
        """Take a slot for one frame; False when none came free within `timeout`."""
        with self._cond:
            if self._free == 0:
                self._cond.wait(timeout)
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def put(self, result: Inferred) -> None:
        with self._cond:
            self._ready[result.frame.ticket] = result
            self._cond.notify_all()

    def give_back(self) -> None:
        """A reserved slot that carried no frame (the source ended)."""
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    def worker_done(self, failure: BaseException | None = None) -> None:
        with self._cond:
            self._working -= 1
            self.failure = self.failure or failure
            self._cond.notify_all()

    def take(self, timeout: float) -> list[Inferred]:
        """The results that may be emitted now, in emission order (waits up to `timeout` for one)."""
        with self._cond:
            emitted = self._emittable()
            if not emitted and self._working:
                self._cond.wait(timeout)
                emitted = self._emittable()
            self._free += len(emitted)
            self._cond.notify_all()
            return emitted

    def _emittable(self) -> list[Inferred]:
        emitted: list[Inferred] = []
        if self.in_order:
            while self._next in self._ready:
                emitted.append(self._ready.pop(self._next))
                self._next += 1
            return emitted
        for ticket in sorted(self._ready):
            result = self._ready.pop(ticket)
            if ticket < self._next:
                self._late += 1
                self._free += 1
                continue
            emitted.append(result)
            self._next = ticket + 1
        return emitted

    @property
    def finished(self) -> bool:
        """Every worker has stopped and every result has been taken."""
        with self._cond:
            return not self._working and not self._ready

    def take_late(self) -> int:
        with self._cond:
            late, self._late = self._late, 0
            return late
