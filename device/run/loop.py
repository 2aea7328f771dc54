"""The real-time loop of `edgepipe run`: a capture thread feeding N inference
workers through a bounded frame buffer, and one emitting thread handing their
results to the sinks in order.

Each worker owns an interpreter (with its own threads), so consecutive frames
are inferred at the same time: on a small CPU, frame-level parallelism scales
better than an interpreter's own threads. LiteRT releases the GIL inside
invoke(), so Python threads are enough.

Live sources (cameras, streams) keep only the newest frame: a frame that waits
is a stale answer, so older ones are dropped and counted, and a result that
arrives after a newer frame's is dropped too (counted) rather than emitted out
of order. Files are processed frame by frame (the capture thread blocks on a
full buffer) and their results emitted in frame order, unless paced to their
own frame rate with --realtime, which makes them behave live. Decoding (and,
for files, resizing) the next frames overlaps inference. Memory is bounded: a
fixed number of frames in flight and fixed-size statistics.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence, TextIO

import numpy as np

from edgepipe.core.errors import UserError

from edgepipe.device.model.postprocess import Prediction, ScoreSmoother, top_k
from .regions import Region
from .results import FrameResult
from .runstats import RunStats
from edgepipe.device.model.classifier import Classifier
from .sink import RunInfo, Sink, close_all
from .sources import FrameSource, ImageError, ImageFilesSource, SourceLost, SourceUnavailable
from edgepipe.core.safetext import safe_line
from edgepipe.device.model.unknown import UnknownRule, Verdict

FILE_BUFFER_FRAMES = 4
IN_FLIGHT_PER_WORKER = 2  # frames inside a worker or waiting for an earlier frame's result
POLL_S = 0.1  # how often the loops look at the stop flag: bounds the reaction to Ctrl-C
MAX_BACKOFF_S = 8.0


@dataclass
class Frame:
    index: int  # position in the source, so dropped frames show as gaps
    image: np.ndarray
    ts: float  # wall-clock time of capture (seconds since the epoch)
    started: float  # perf_counter when the capture began
    capture_ms: float
    item: str | None = None  # the source item's name (an image file's), when it has one
    tensor: np.ndarray | None = None  # already preprocessed by the capture thread (in-order sources)
    preprocess_ms: float = 0.0
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


def preprocess_timed(classifier: Classifier, bgr: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    tensor = classifier.preprocess(bgr)
    return tensor, (time.perf_counter() - started) * 1e3


def invoke_timed(classifier: Classifier, tensor: np.ndarray) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    scores = classifier.invoke(tensor)
    return scores, (time.perf_counter() - started) * 1e3


@dataclass
class Scored:
    """One frame's (smoothed) scores, its top-k, the unknown verdict (when rejecting) and the stage timings."""

    scores: np.ndarray
    top: list[Prediction]
    verdict: Verdict | None
    stages: dict[str, float]


def postprocess_timed(scores: np.ndarray, labels: list[str], k: int, threshold: float = 0.0,
                      smoother: ScoreSmoother | None = None, unknown: UnknownRule | None = None) -> Scored:
    started = time.perf_counter()
    if smoother:
        scores = smoother.update(scores)
    top = top_k(scores, labels, k, threshold)
    verdict = unknown.judge(scores) if unknown else None
    return Scored(scores, top, verdict, {"postprocess": (time.perf_counter() - started) * 1e3})


def predict_timed(classifier: Classifier, tensor: np.ndarray, k: int, threshold: float = 0.0,
                  smoother: ScoreSmoother | None = None, unknown: UnknownRule | None = None) -> Scored:
    """Top-k predictions for one input tensor, the unknown verdict, and the milliseconds of
    inference and postprocessing."""
    scores, inference_ms = invoke_timed(classifier, tensor)
    scored = postprocess_timed(scores, classifier.labels, k, threshold, smoother, unknown)
    scored.stages = {"inference": inference_ms, **scored.stages}
    return scored


@dataclass
class Inferred:
    """A worker's answer for one frame, waiting to be emitted in order."""

    frame: Frame
    scores: np.ndarray
    preprocess_ms: float
    inference_ms: float
    regions: dict[str, tuple[tuple[int, int, int, int], np.ndarray]] = field(default_factory=dict)  # name -> box, scores


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


class InferenceWorker(threading.Thread):
    """One interpreter: takes the next frame, preprocesses it if capture did not, invokes
    (also on each --roi region's crop: an interpreter is used by its own worker only)."""

    def __init__(self, number: int, classifier: Classifier, buffer: FrameBuffer, order: ResultOrder,
                 stop: threading.Event, regions: Sequence[Region] = ()) -> None:
        super().__init__(name=f"edgepipe-infer-{number}", daemon=True)
        self.classifier, self.buffer, self.order, self.stop = classifier, buffer, order, stop
        self.regions = regions

    def run(self) -> None:
        failure: BaseException | None = None
        try:
            self._work()
        except BaseException as exc:  # handed to the emitting thread, which raises it
            failure = exc
            self.stop.set()
        finally:
            self.order.worker_done(failure)

    def _work(self) -> None:
        while not self.stop.is_set():
            if not self.order.reserve(POLL_S):
                continue
            frame = self.buffer.get(POLL_S)
            if frame is None:
                self.order.give_back()
                if self.buffer.ended:
                    return
                continue
            tensor, preprocess_ms = frame.tensor, frame.preprocess_ms
            if tensor is None:
                tensor, preprocess_ms = preprocess_timed(self.classifier, frame.image)
            frame.tensor = None  # the tensor is not needed once inferred: keep only the image
            scores, inference_ms = invoke_timed(self.classifier, tensor)
            self.order.put(Inferred(frame, scores, preprocess_ms, inference_ms, self._infer_regions(frame.image)))

    def _infer_regions(self, image: np.ndarray) -> dict[str, tuple[tuple[int, int, int, int], np.ndarray]]:
        """Each --roi cropped from the frame and inferred by this worker's interpreter, like a frame of its own."""
        inferred = {}
        for region in self.regions:
            try:
                box = region.pixels(image.shape[1], image.shape[0])
            except ValueError as exc:
                raise UserError(f"{exc}: fix --roi {region.name}=...") from None
            x0, y0, x1, y1 = box
            tensor, _ = preprocess_timed(self.classifier, image[y0:y1, x0:x1])
            inferred[region.name] = (box, invoke_timed(self.classifier, tensor)[0])
        return inferred


@dataclass
class RunOptions:
    top_k: int = 5
    threshold: float = 0.0
    smooth: float | None = None
    max_frames: int | None = None
    duration: float | None = None
    realtime: bool = False
    fps: float | None = None
    max_retries: int = 5
    stats_interval: float = 5.0
    unknown: UnknownRule | None = None
    ignore_decode_errors: bool = False
    regions: tuple[Region, ...] = ()  # --roi: each also classified on its own, every frame


@dataclass
class RunResult:
    exit_code: int
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)


class Capture(threading.Thread):
    """Reads the source into the buffer; reopens a lost live source with exponential backoff."""

    def __init__(self, source: FrameSource, buffer: FrameBuffer, stop: threading.Event,
                 options: RunOptions, stats: RunStats, log: TextIO, classifier: Classifier | None = None) -> None:
        super().__init__(name="edgepipe-capture", daemon=True)
        self.source, self.buffer, self.stop = source, buffer, stop
        self.options, self.stats, self.log = options, stats, log
        self.classifier = classifier  # when set, frames are preprocessed here, overlapping inference
        self.index = 0

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
            if self.classifier is not None:
                frame.tensor, frame.preprocess_ms = preprocess_timed(self.classifier, image)
            self.buffer.put(frame, self.stop)
            self.index += 1
            if pace_fps:
                due = first + (self.index - first_index) / pace_fps
                self.stop.wait(max(0.0, due - time.perf_counter()))


class Pipeline:
    """Capture, N inference workers, and the emitting loop that hands each result to
    every sink (postprocessing and smoothing there, in frame order); stops on end of
    source, --max-frames, --duration, or a stop request (signals, a sink such as the
    display's q key).

    `classifiers`: one per worker (see `Classifier.replica`); a single one is one worker.
    """

    def __init__(self, classifiers: Classifier | Sequence[Classifier], source: FrameSource, options: RunOptions,
                 sinks: Sequence[Sink] = (), log: TextIO | None = None,
                 stop: threading.Event | None = None) -> None:
        self.classifiers = [classifiers] if isinstance(classifiers, Classifier) else list(classifiers)
        if not self.classifiers:
            raise ValueError("a pipeline needs at least one classifier")
        self.classifier = self.classifiers[0]
        self.source, self.options = source, options
        self.sinks = list(sinks)
        self.log = log or sys.stderr
        self.stop = stop or threading.Event()
        self.stats = RunStats()
        self.smoother = ScoreSmoother(options.smooth) if options.smooth else None
        self.region_smoothers = {r.name: ScoreSmoother(options.smooth) if options.smooth else None
                                 for r in options.regions}
        self.region_labels: dict[str, collections.Counter[str]] = {r.name: collections.Counter()
                                                                   for r in options.regions}
        self.buffer = FrameBuffer(keep_newest=source.live or options.realtime)
        workers = len(self.classifiers)
        self.order = ResultOrder(in_order=not self.buffer.keep_newest, workers=workers,
                                 capacity=IN_FLIGHT_PER_WORKER * workers)
        if isinstance(source, ImageFilesSource):
            source.on_error = self._skipped
        self._stop_reason: tuple[str, int] | None = None
        self.lost_frames = 0  # frames a video file declared but that could not be decoded

    def request_stop(self, reason: str, exit_code: int = 0) -> None:
        """Stop within one poll interval (safe from a signal handler)."""
        self._stop_reason = (reason, exit_code)
        self.stop.set()

    def _skipped(self, error: ImageError) -> None:
        self.stats.errors += 1
        self.log.write(f"edgepipe run: skipped: {safe_line(error.message)}\n")
        self.log.flush()

    def run_info(self) -> RunInfo:
        clf = self.classifier
        return RunInfo(
            source=self.source.name,
            source_fps=self.source.fps,
            model=str(clf.model_path),
            accelerator=clf.accelerator,
            backend=f"{clf.backend} {clf.backend_version}",
            threads=clf.threads,
            labels=tuple(clf.labels),
            request_stop=self.request_stop,
            workers=len(self.classifiers),
            regions=tuple(r.name for r in self.options.regions),
            running_summary=self.running_summary,
        )

    def running_summary(self) -> dict[str, Any]:
        """The summary so far, for outputs that show it while the run goes on (safe from any thread)."""
        return self.stats.summary(reason="running", exit_code=None, **self._describe(self.run_info()))

    def run(self) -> RunResult:
        info = self.run_info()
        for sink in self.sinks:
            sink.start(info)
        summary: dict[str, Any] = {}
        try:
            reason, exit_code = self._capture_and_classify()
            summary = self.stats.summary(reason=reason, exit_code=exit_code, **self._describe(info))
        finally:  # sinks always close, so a recording or a stats file is complete even after a failure
            close_all(self.sinks, summary)
        self.log.write(self.stats.summary_line() + f" ({reason})\n")
        self.log.flush()
        return RunResult(exit_code, reason, summary)

    def _capture_and_classify(self) -> tuple[str, int]:
        """Run the capture thread, the workers and the emitting loop to the end: (stop reason, exit code)."""
        # Every frame of a file is classified, so preprocessing it in the capture thread wastes
        # nothing and overlaps inference; a live source preprocesses only the frames it keeps.
        preprocess_early = None if self.buffer.keep_newest else self.classifier
        capture = Capture(self.source, self.buffer, self.stop, self.options, self.stats, self.log, preprocess_early)
        workers = [InferenceWorker(i, clf, self.buffer, self.order, self.stop, self.options.regions)
                   for i, clf in enumerate(self.classifiers)]
        capture.start()
        for worker in workers:
            worker.start()
        try:
            reason = self._loop()
        finally:
            self.stop.set()
            for thread in (capture, *workers):
                thread.join(timeout=0.5)
            self.stats.drop(self.buffer.take_dropped() + self.order.take_late())
        failure = self.buffer.failure or self.order.failure
        exit_code = 1 if self.stats.errors else 0
        if isinstance(failure, SourceUnavailable):
            self.log.write(f"edgepipe run: error: {safe_line(failure)}\n")
            reason, exit_code = "source lost", 1
        elif failure is not None:
            raise failure
        self.lost_frames = lost = (self.source.lost_frames() if reason == "end of source"
                                    and hasattr(self.source, "lost_frames") else 0)
        if lost:
            self.log.write(f"edgepipe run: warning: {self.source.name}: {lost} of the video's frames could not be "
                           "decoded (corrupt or truncated)" + ("" if self.options.ignore_decode_errors else
                                                               "; pass --ignore-decode-errors to accept that") + "\n")
            exit_code = exit_code if self.options.ignore_decode_errors else 1
        if self._stop_reason is not None:  # a signal wins over the end of source it caused
            reason, exit_code = self._stop_reason
        return reason, exit_code

    def _describe(self, info: RunInfo) -> dict[str, Any]:
        described: dict[str, Any] = {
            "source": info.source,
            "model": info.model,
            "accelerator": info.accelerator,
            "backend": info.backend,
            "threads": info.threads,
            "lost_frames": self.lost_frames,
            "workers": info.workers,
        }
        if self.options.regions:  # how often each region saw each label (its top-1)
            described["regions"] = {
                r.name: {"roi": r.spec(), "labels": dict(self.region_labels[r.name].most_common())}
                for r in self.options.regions
            }
        for sink in self.sinks:
            described.update(sink.summary_fields())
        return described

    def _loop(self) -> str:
        options = self.options
        next_stats = time.monotonic() + options.stats_interval if options.stats_interval else None
        deadline = time.monotonic() + options.duration if options.duration else None
        while not self.stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return "duration reached"
            if next_stats is not None and now >= next_stats:
                self.log.write(self.stats.period_line() + "\n")
                self.log.flush()
                next_stats = now + options.stats_interval
            results = self.order.take(POLL_S)
            self.stats.drop(self.buffer.take_dropped() + self.order.take_late())
            if not results and self.order.finished:
                return "stopped" if self.stop.is_set() else "end of source"
            for inferred in results:
                self._emit(self._result(inferred))
                if options.max_frames is not None and self.stats.frames >= options.max_frames:
                    return "max frames reached"
        return "stopped"

    def _result(self, inferred: Inferred) -> FrameResult:
        frame = inferred.frame
        scored = postprocess_timed(inferred.scores, self.classifier.labels, self.options.top_k,
                                   self.options.threshold, self.smoother, self.options.unknown)
        latency = {"capture": frame.capture_ms, "preprocess": inferred.preprocess_ms,
                   "inference": inferred.inference_ms, "postprocess": scored.stages["postprocess"],
                   "total": (time.perf_counter() - frame.started) * 1000.0}
        self.stats.record(latency)
        regions, boxes = {}, {}
        for name, (box, scores) in inferred.regions.items():  # smoothed here, in frame order
            regions[name] = postprocess_timed(scores, self.classifier.labels, self.options.top_k,
                                              self.options.threshold, self.region_smoothers[name]).top
            boxes[name] = box
            if regions[name]:
                self.region_labels[name][regions[name][0].label] += 1
        return FrameResult(frame.index, frame.ts, scored.top, latency, self.stats.current_fps, frame.item,
                           frame.image, scored.verdict, scored.scores, regions, boxes)

    def _emit(self, result: FrameResult) -> None:
        for sink in self.sinks:
            sink.emit(result)
