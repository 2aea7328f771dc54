"""`run --collect DIR`: keep the frames the model is unsure of, to train on later.

A frame is kept when it is "unknown", when its top-1 score is below
--collect-below, or when its top two classes are within --collect-margin; one
in --collect-every confident frames is kept too, so the collected data is not
only the hard cases. Each kept frame is a JPEG plus a JSON sidecar (time,
label, reason, every class's score, model hash, region); the sidecar is
written last, so a JPEG without one is an incomplete pair that `deploy
collect` ignores.

A detector's frame is kept when one of its objects scores below
--collect-below (reported, so above the score floor --threshold, but not
sure), when two objects of different labels overlap (IoU >= CONFLICT_IOU: the
model could not decide what it is), and one in --collect-every of the others.
Its sidecar holds the objects, and a Pascal VOC XML (voc.py) beside the JPEG
holds them as pre-labels to correct and train on (`train --task detect`).

The device must never fill up: at most --collect-rate frames a minute
(a token bucket), at most --collect-max-mb on disk (the oldest pairs are
deleted first; only pairs edgepipe wrote, recognised by their names and
sidecars, are ever counted or deleted), and nothing is written while the file system has less than
options.MIN_FREE_MB free. Encoding and writing happen on a worker thread behind a
bounded queue, at a lower CPU priority, so the inference loop never waits for
the SD card or for JPEG encoding; what does not fit in the queue is dropped
and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_bytes, atomic_write_text, check_writable
from edgepipe.core.progress import say

from edgepipe.device.model.bundle import sha256_file
from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.sink import RunInfo
from edgepipe.device.model.postprocess import iou_matrix
from .options import CollectOptions
from .queued import QueuedSink
from .voc import voc_annotation

SIDECAR = ".json"
IMAGE = ".jpg"
VOC = ".xml"  # a detector's pre-labels
CONFLICT_IOU = 0.5  # two labels on this much of the same place: the detector could not decide
MAX_SIDECAR_BYTES = 1 << 20  # ours are a few KB
JPEG_QUALITY = 90
WORKER_NICENESS = 10  # added to the process's: the writer yields the CPU to inference


def detection_reason(result: FrameResult, options: CollectOptions) -> str | None:
    """Why a detector's frame is unsure (None: it is not)."""
    found = result.detections
    if options.below is not None and any(d.score < options.below for d in found):
        return "low_score"
    boxes = np.array([d.box for d in found], np.float64).reshape(-1, 4)
    overlap = iou_matrix(boxes, boxes)
    labels = np.array([d.index for d in found])
    if np.any((overlap >= CONFLICT_IOU) & (labels[:, None] != labels[None, :])):
        return "conflict"
    return None


def collect_reason(result: FrameResult, options: CollectOptions, confident_count: int) -> str | None:
    """Why this frame should be kept (None: it should not). `confident_count` counts confident
    frames so far, this one included, for the --collect-every sample."""
    if result.counts is not None:
        reason = detection_reason(result, options)
        if reason is None and options.every and confident_count % options.every == 0:
            reason = "sample"
        return reason
    if result.unknown:
        return "unknown"
    scores = result.scores if result.scores is not None else np.array([p.score for p in result.top])
    if scores.size == 0:
        return None
    best = np.sort(scores)[::-1]
    if options.below is not None and best[0] < options.below:
        return "low_score"
    if options.margin is not None and best.size > 1 and best[0] - best[1] <= options.margin:
        return "small_margin"
    if options.every and confident_count % options.every == 0:
        return "sample"
    return None


DETECTIONS_FOLDER = "detections"


def sidecar_annotation(stem: str, sidecar: dict[str, Any]) -> str:
    """The VOC pre-labels of a detector's collected frame, from its sidecar (also what `deploy collect`
    writes on the workstation)."""
    width, height = sidecar["size"]
    return voc_annotation(f"{stem}{IMAGE}", int(width), int(height), sidecar["detections"])


class TokenBucket:
    """At most `per_minute` takes a minute on average, in bursts of at most max(1, per_minute)."""

    def __init__(self, per_minute: float, clock=time.monotonic) -> None:
        self.per_second, self.capacity, self.clock = per_minute / 60.0, max(1.0, per_minute), clock
        self.tokens, self.last = self.capacity, clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.per_second)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


OUR_STEM = re.compile(r"\d{8}T\d{9}Z-\d{8}\Z")  # what _write names a pair: UTC time, then frame index
OUR_SIDECAR_KEYS = {"time", "frame", "reason", "model"}  # fields every sidecar _write makes has


def is_our_pair(root: Path, stem: str) -> bool:
    """A pair edgepipe wrote: its naming, a regular JPEG, and a sidecar with our fields. Only these may
    ever be counted or evicted: DIR may be a folder of the user's own photos."""
    image, sidecar = root / f"{stem}{IMAGE}", root / f"{stem}{SIDECAR}"
    if not (OUR_STEM.match(stem) and image.is_file() and not image.is_symlink() and not sidecar.is_symlink()):
        return False
    try:
        if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
            return False
        fields = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(fields, dict) and OUR_SIDECAR_KEYS <= fields.keys()


class DiskBudget:
    """The pairs edgepipe collected in DIR, oldest first, and their total size; evicts to stay in budget.

    Anything else in DIR (`foreign_files`, `foreign_bytes`) is never counted, touched or evicted."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root, self.max_bytes = root, max_bytes
        self.pairs: dict[str, int] = {}  # stem -> bytes of its JPEG + sidecar, in name (= time) order
        self.foreign_files = self.foreign_bytes = 0
        ours = {p.stem for p in root.glob(f"*{SIDECAR}") if is_our_pair(root, p.stem)}
        for path in root.iterdir():
            if path.is_symlink() or not path.is_file():
                continue
            if path.stem in ours and path.suffix in (IMAGE, SIDECAR, VOC):
                self.pairs[path.stem] = self.pairs.get(path.stem, 0) + path.stat().st_size
            else:
                self.foreign_files += 1
                self.foreign_bytes += path.stat().st_size
        self.pairs = dict(sorted(self.pairs.items()))
        self.used = sum(self.pairs.values())
        self.evicted = 0

    def add(self, stem: str, size: int) -> None:
        self.pairs[stem] = size
        self.used += size
        while self.used > self.max_bytes and len(self.pairs) > 1:
            oldest = next(iter(self.pairs))
            for suffix in (SIDECAR, VOC, IMAGE):  # sidecar first: a pair is never half-complete-looking
                (self.root / f"{oldest}{suffix}").unlink(missing_ok=True)
            self.used -= self.pairs.pop(oldest)
            self.evicted += 1


class CollectSink(QueuedSink):
    """Keeps unsure frames (and a sample of sure ones) as JPEG + JSON in DIR, within rate and disk limits."""

    uses_frames = True

    def __init__(self, options: CollectOptions, clock=time.monotonic) -> None:
        super().__init__(options.queue_frames, "edgepipe-collect")
        self.options = options
        try:
            options.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create --collect folder {options.root}: {exc.strerror}") from None
        check_writable(options.root / ".edgepipe-collect")  # before the run, not a silent run that saves nothing
        self.budget = DiskBudget(options.root, int(options.max_mb * 1024 * 1024))
        if self.budget.foreign_files:
            say(f"--collect {options.root}: {self.budget.foreign_files} files ({self.budget.foreign_bytes / 1e6:.1f} MB) "
                "there are not edgepipe's; they are not counted in --collect-max-mb and never deleted")
        self.bucket = TokenBucket(options.rate, clock)
        self.counts = {"saved": 0, "dropped_queue_full": 0, "rate_limited": 0, "skipped_low_disk": 0,
                       "write_errors": 0}
        self.reasons: dict[str, int] = {}
        self._confident = 0
        self._run: RunInfo | None = None
        self._model_hash = ""
        self._lock = threading.Lock()

    def start(self, run: RunInfo) -> None:
        self._run = run
        self._model_hash = sha256_file(Path(run.model))
        self.start_worker()

    def emit(self, result: FrameResult) -> None:
        if result.image is None:
            return
        if not result.unknown:
            self._confident += 1
        reason = collect_reason(result, self.options, self._confident)
        if reason is None:
            return
        if not self.bucket.take():
            self.counts["rate_limited"] += 1
            return
        if not self.offer((result, reason)):
            self.counts["dropped_queue_full"] += 1

    def on_worker_start(self) -> None:
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):  # Linux: a thread's own nice
            with contextlib.suppress(OSError):  # inference keeps the CPU; collection takes what is left
                nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + WORKER_NICENESS)
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)

    def handle(self, item: tuple[FrameResult, str]) -> None:
        try:
            self._write(*item)
        except OSError:
            with self._lock:
                self.counts["write_errors"] += 1

    def _write(self, result: FrameResult, reason: str) -> None:
        root = self.options.root
        if shutil.disk_usage(root).free < self.options.min_free_mb * 1024 * 1024:
            with self._lock:
                self.counts["skipped_low_disk"] += 1
            return
        ok, jpeg = cv2.imencode(IMAGE, result.image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError("JPEG encoding failed")
        when = datetime.fromtimestamp(result.ts, timezone.utc)
        stem = f"{when:%Y%m%dT%H%M%S}{when.microsecond // 1000:03d}Z-{result.index:08d}"
        described = self._sidecar(result, reason, when) if result.counts is None else \
            self._detection_sidecar(result, reason, when)
        sidecar = json.dumps(described, indent=1) + "\n"
        atomic_write_bytes(root / f"{stem}{IMAGE}", jpeg.tobytes())
        size = len(jpeg) + len(sidecar.encode())
        if result.counts is not None:
            annotation = sidecar_annotation(stem, described)
            atomic_write_text(root / f"{stem}{VOC}", annotation)
            size += len(annotation.encode())
        atomic_write_text(root / f"{stem}{SIDECAR}", sidecar)  # last: the pair is complete
        with self._lock:
            self.budget.add(stem, size)
            self.counts["saved"] += 1
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def _sidecar(self, result: FrameResult, reason: str, when: datetime) -> dict[str, Any]:
        run = self._run
        labels = list(run.labels) if run else []
        scores = result.scores
        return {
            "time": when.isoformat(timespec="milliseconds"),
            "frame": result.index,
            "item": result.item,
            "label": result.label,  # "unknown", or the predicted class
            "best": result.top[0].label if result.top else None,
            "confidence": round(result.verdict.confidence, 6) if result.verdict else None,
            "reason": reason,
            "scores": ({label: round(float(s), 6) for label, s in zip(labels, scores)} if scores is not None
                       else {p.label: round(p.score, 6) for p in result.top}),
            "model": {"path": run.model if run else None, "sha256": self._model_hash},
            "source": run.source if run else None,
            "region": None,  # the whole frame; region outputs name theirs
        }

    def _detection_sidecar(self, result: FrameResult, reason: str, when: datetime) -> dict[str, Any]:
        run = self._run
        assert result.image is not None
        return {
            "time": when.isoformat(timespec="milliseconds"),
            "frame": result.index,
            "item": result.item,
            "task": "detect",
            "label": DETECTIONS_FOLDER,  # where `deploy collect` puts it: one folder of VOC-labelled frames
            "reason": reason,
            "size": [int(result.image.shape[1]), int(result.image.shape[0])],
            "detections": [d.to_json() for d in result.detections],
            "counts": dict(result.counts or {}),
            "model": {"path": run.model if run else None, "sha256": self._model_hash},
            "source": run.source if run else None,
        }

    def summary_fields(self) -> dict[str, Any]:
        self.stop_worker()  # the run has ended: count what was written, not what was still queued
        with self._lock:
            return {"collect": {"dir": str(self.options.root), **self.counts, "reasons": dict(self.reasons),
                                "evicted": self.budget.evicted, "bytes": self.budget.used}}

    def close(self, summary: dict[str, Any]) -> None:
        self.stop_worker()
