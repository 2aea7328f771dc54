"""Objects over time: an id for each detected object from frame to frame, so counts and
events ("a raccoon appeared", "2 cars") follow the scene rather than each frame's noise.

A light IoU tracker (the SORT idea without its Kalman filter): each frame's
detections are matched to the live tracks of the same label, best overlap
first. An object is reported once it has been seen in `min_hits` frames (one
lucky frame is not an arrival) and is kept through `max_missed` frames
without a match (one missed frame is not a departure). numpy only, O(tracks x
detections) per frame: microseconds for the tens of objects a camera shows.

Zones are the run's --roi regions (regions.py): an object is in a zone when
its box's centre is.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..model.postprocess import Detection, iou_matrix
from .options import TrackerOptions

APPEARED, LEFT = "appeared", "left"


@dataclass(frozen=True)
class TrackEvent:
    """A counted object appeared or left; `zones` are those its box centre was in."""

    kind: str  # APPEARED or LEFT
    track_id: int
    label: str
    score: float
    box: tuple[int, int, int, int]
    zones: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "id": self.track_id, "label": self.label, "score": round(self.score, 6),
                "box": list(self.box), "zones": list(self.zones)}


@dataclass
class _Track:
    track_id: int
    detection: Detection
    hits: int = 1  # frames seen in, until confirmed
    missed: int = 0  # frames in a row without a match
    confirmed: bool = False  # seen in min_hits frames: counted until it leaves
    zones: tuple[str, ...] = ()


@dataclass
class Tracked:
    """One frame's answer from the tracker: its detections with ids, what is present (counted
    objects, including those briefly unseen), per label and per zone, and the events."""

    detections: list[Detection]
    counts: dict[str, int]
    zones: dict[str, dict[str, int]]
    events: list[TrackEvent] = field(default_factory=list)


def zones_of(box: tuple[int, int, int, int], zones: dict[str, tuple[int, int, int, int]]) -> tuple[str, ...]:
    """The zones whose rectangle holds the box's centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return tuple(name for name, (x0, y0, x1, y1) in zones.items() if x0 <= cx < x1 and y0 <= cy < y1)


class Tracker:
    """Gives detections ids across frames; one per run, fed in frame order by the emitting thread."""

    def __init__(self, options: TrackerOptions = TrackerOptions()) -> None:
        self.options = options
        self._tracks: list[_Track] = []
        self._next_id = 1

    def update(self, detections: Sequence[Detection],
               zone_boxes: dict[str, tuple[int, int, int, int]] | None = None) -> Tracked:
        """Match this frame's detections (best first) to the tracks; objects are counted in the zones
        (name -> x0, y0, x1, y1 in this frame's pixels) their box centre is in."""
        zone_boxes = zone_boxes or {}
        matched = self._match(detections)
        events: list[TrackEvent] = []
        out: list[Detection] = []
        seen: set[int] = set()
        for detection, track in zip(detections, matched):
            if track is None:
                track = _Track(self._next_id, detection)
                self._next_id += 1
                self._tracks.append(track)
            else:
                track.detection, track.missed, track.hits = detection, 0, track.hits + 1
            track.zones = zones_of(detection.box, zone_boxes)
            seen.add(track.track_id)
            if not track.confirmed and track.hits >= self.options.min_hits:
                track.confirmed = True
                events.append(self._event(APPEARED, track))
            out.append(replace(detection, track_id=track.track_id) if track.confirmed else detection)
        for track in self._tracks:
            if track.track_id not in seen:
                track.missed += 1
        # An unconfirmed track must be seen in consecutive frames; a confirmed one survives max_missed.
        for track in [t for t in self._tracks if t.missed > (self.options.max_missed if t.confirmed else 0)]:
            self._tracks.remove(track)
            if track.confirmed:
                events.append(self._event(LEFT, track))
        present = [t for t in self._tracks if t.confirmed]
        counts = collections.Counter(t.detection.label for t in present)
        zones = {name: dict(collections.Counter(t.detection.label for t in present if name in t.zones))
                 for name in zone_boxes}
        return Tracked(out, dict(counts), zones, events)

    def _match(self, detections: Sequence[Detection]) -> list[_Track | None]:
        """Each detection's track, greedily by overlap (highest first), same label only."""
        result: list[_Track | None] = [None] * len(detections)
        if not detections or not self._tracks:
            return result
        ious = iou_matrix(np.array([d.box for d in detections], np.float64),
                          np.array([t.detection.box for t in self._tracks], np.float64))
        same = np.array([[d.index == t.detection.index for t in self._tracks] for d in detections])
        ious = np.where(same, ious, 0.0)
        for flat in np.argsort(-ious, axis=None, kind="stable"):
            d, t = divmod(int(flat), len(self._tracks))
            if ious[d, t] < self.options.iou:
                break
            if result[d] is None and all(r is not self._tracks[t] for r in result):
                result[d] = self._tracks[t]
        return result

    @staticmethod
    def _event(kind: str, track: _Track) -> TrackEvent:
        d = track.detection
        return TrackEvent(kind, track.track_id, d.label, d.score, d.box, track.zones)
