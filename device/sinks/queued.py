"""The one way a slow sink keeps off the inference thread: a bounded queue and a worker.

The loop calls `emit` on its own thread for every result, so a sink that talks to
something slow (a broker, a disk) only offers the result to its queue, which
never waits: when the queue is full the result is refused and the sink counts it
as dropped. A worker thread takes items one by one; an idle tick lets a sink do
periodic work (MQTT refreshes its retained state) when nothing is queued.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from ..run.sink import Sink

_STOP = object()  # queued last by stop_worker: everything offered before it is still handled


class QueuedSink(Sink):
    """A sink whose work happens on its own thread, behind a queue of `capacity` items.

    Subclasses implement `handle` (one item, on the worker) and may override
    `on_worker_start`, `on_idle` (every `idle_s` seconds without an item, when
    `idle_s` is set) and `on_stop` (after the last item).
    """

    idle_s: float | None = None

    def __init__(self, capacity: int, thread_name: str) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self._worker = threading.Thread(target=self._drain, name=thread_name, daemon=True)

    def offer(self, item: Any) -> bool:
        """Queue `item` for the worker without waiting; False (the caller counts a drop) when full."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            return False
        return True

    def start_worker(self) -> None:
        self._worker.start()

    def stop_worker(self, timeout: float | None = None) -> None:
        """Let the worker handle everything queued, then stop it, waiting at most `timeout` (idempotent)."""
        if self._worker.is_alive():
            self._queue.put(_STOP)
            self._worker.join(timeout)

    def handle(self, item: Any) -> None:
        raise NotImplementedError

    def on_worker_start(self) -> None:
        """Called on the worker thread before its first item."""

    def on_idle(self) -> None:
        """Called on the worker thread after `idle_s` seconds with nothing queued."""

    def on_stop(self) -> None:
        """Called on the worker thread after the last item, before it ends."""

    def _drain(self) -> None:
        self.on_worker_start()
        while True:
            try:
                item = self._queue.get(timeout=self.idle_s)
            except queue.Empty:
                self.on_idle()
                continue
            if item is _STOP:
                self.on_stop()
                return
            self.handle(item)
