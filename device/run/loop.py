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
own frame rate with --realtime, which makes them behave live. Decoding the
next frames overlaps inference; each worker preprocesses its frame straight
into its interpreter's input tensor. Memory is bounded: a
fixed number of frames in flight and fixed-size statistics.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, TextIO

from edgepipe.core.safetext import safe_line

from ..model.classifier import Classifier
from ..model.postprocess import ScoreSmoother
from ..model.preprocess import frame_block_factor
from .capture import Capture
from .frames import POLL_S, FrameBuffer
from .ordering import IN_FLIGHT_PER_WORKER, Inferred, ResultOrder
from .options import RunOptions
from .results import FrameResult
from .regions import region_boxes
from .runstats import RunStats
from .sink import RunInfo, Sink, close_all
from .sources import FrameSource, ImageError, ImageFilesSource, OpenCVSource, SourceUnavailable
from .timing import postprocess_timed
from .tracker import Tracker
from .workers import InferenceWorker


@dataclass
class RunResult:
    exit_code: int
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)


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
        # A detector's --roi regions are zones its tracked objects are counted in, not crops to infer.
        self.tracker = Tracker(options.tracker) if self.classifier.is_detector else None
        self.buffer = FrameBuffer(keep_newest=source.live or options.realtime)
        workers = len(self.classifiers)
        self.order = ResultOrder(in_order=not self.buffer.keep_newest, workers=workers,
                                 capacity=IN_FLIGHT_PER_WORKER * workers)
        if isinstance(source, ImageFilesSource):
            source.on_error = self._skipped
        if isinstance(source, OpenCVSource):
            source.shrink_for(self._block_factor() if self._model_alone_sees_frames() else None)
        self._stop_reason: tuple[str, int] | None = None
        self.lost_frames = 0  # frames a video file declared but that could not be decoded
        self.unknown_frames = 0  # frames the unknown rule rejected

    def _model_alone_sees_frames(self) -> bool:
        """Nothing but the classifier's input needs a frame's pixels: no output shows or keeps them,
        no region is cut from them, no detector maps boxes into them."""
        return not (self.classifier.is_detector or self.options.regions or any(s.uses_frames for s in self.sinks))

    def _block_factor(self) -> Callable[[int, int], int]:
        spec = self.classifier.input_spec
        return lambda width, height: frame_block_factor(width, height, spec)

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
            labels=tuple(label for label in clf.labels if clf.detect_options.classes is None
                         or label in clf.detect_options.classes) if clf.is_detector else tuple(clf.labels),
            request_stop=self.request_stop,
            workers=len(self.classifiers),
            regions=tuple(r.name for r in self.options.regions),
            running_summary=self.running_summary,
            detector=clf.is_detector,
            outputs_health=self.outputs_health,
        )

    def outputs_health(self) -> dict[str, Any]:
        """What each output reports of its own health (e.g. an MQTT broker out of reach), for /healthz."""
        return {name: detail for sink in self.sinks for name, detail in sink.problems().items()}

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
        capture = Capture(self.source, self.buffer, self.stop, self.options, self.stats, self.log)
        crops = () if self.tracker is not None else self.options.regions
        workers = [InferenceWorker(i, clf, self.buffer, self.order, self.stop, crops)
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
        if self.options.unknown is not None:  # which score decided "unknown", and how often it did
            described["unknown"] = {"score": self.options.unknown.score,
                                    "rule": self.options.unknown.describe(list(info.labels)),
                                    "frames": self.unknown_frames}
        if self.options.regions and self.tracker is None:  # how often each region saw each label (its top-1)
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
        if self.tracker is not None:
            return self._detected(inferred, self.tracker)
        frame = inferred.frame
        scored = postprocess_timed(inferred.scores, self.classifier.labels, self.options.top_k,
                                   self.options.threshold, self.smoother, self.options.unknown, inferred.features)
        latency = {"capture": frame.capture_ms, "preprocess": inferred.preprocess_ms,
                   "inference": inferred.inference_ms, "postprocess": scored.stages["postprocess"],
                   "total": (time.perf_counter() - frame.started) * 1000.0}
        self.stats.record(latency)
        self.unknown_frames += bool(scored.verdict and scored.verdict.unknown)
        regions, boxes = {}, {}
        for name, (box, scores) in inferred.regions.items():  # smoothed here, in frame order
            regions[name] = postprocess_timed(scores, self.classifier.labels, self.options.top_k,
                                              self.options.threshold, self.region_smoothers[name]).top
            boxes[name] = box
            if regions[name]:
                self.region_labels[name][regions[name][0].label] += 1
        return FrameResult(frame.index, frame.ts, scored.top, latency, self.stats.current_fps, frame.item,
                           frame.image, scored.verdict, scored.scores, regions, boxes)

    def _detected(self, inferred: Inferred, tracker: Tracker) -> FrameResult:
        """A detector's frame: its outputs decoded into the frame's boxes, then tracked (ids, counts, zones,
        events); both are the postprocess stage."""
        frame = inferred.frame
        started = time.perf_counter()
        size = (frame.image.shape[1], frame.image.shape[0])
        boxes = region_boxes(self.options.regions, *size)
        tracked = tracker.update(self.classifier.detections(inferred.scores, size), boxes)
        latency = {"capture": frame.capture_ms, "preprocess": inferred.preprocess_ms,
                   "inference": inferred.inference_ms, "postprocess": (time.perf_counter() - started) * 1e3,
                   "total": (time.perf_counter() - frame.started) * 1000.0}
        self.stats.record(latency)
        return FrameResult(frame.index, frame.ts, [], latency, self.stats.current_fps, frame.item, frame.image,
                           boxes=boxes, detections=tracked.detections, counts=tracked.counts, zones=tracked.zones,
                           events=tracked.events)

    def _emit(self, result: FrameResult) -> None:
        for sink in self.sinks:
            sink.emit(result)
