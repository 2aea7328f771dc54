"""One inferred frame, in the one shape every output reads: the classes (`top`) and/or
the objects (`detections`) its task gives, and how long each stage took.

`edgepipe run` prints it, draws it, records it, counts it; `bench --e2e`
measures it; MQTT, HTTP and the frame collector will publish or keep it. They
all read this object, so a field added here reaches every output the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgepipe.core.safetext import printable

from edgepipe.device.model.postprocess import Detection, Prediction, scored
from edgepipe.device.model.unknown import UNKNOWN_LABEL, Verdict
from .tracker import TrackEvent

LATENCY_DECIMALS = 3


@dataclass
class FrameResult:
    """What the model said about one frame, and how long each stage took.

    `image` is the frame itself (BGR), for outputs that show or keep it; it is
    never serialised. `item` names the source item when it has one (the file
    name for a folder of images), so a result can be traced to its input.
    """

    index: int  # position in the source: dropped frames show as gaps
    ts: float  # wall-clock time of capture (seconds since the epoch)
    top: list[Prediction]
    latency_ms: dict[str, float]
    fps: float
    item: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    verdict: Verdict | None = None  # set when the run rejects unknowns (--unknown)
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)  # every class's score
    regions: dict[str, list[Prediction]] = field(default_factory=dict)  # --roi name -> its own top-k
    boxes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict, repr=False, compare=False)
    detections: list[Detection] = field(default_factory=list)  # a detection model's objects, best first
    # A detector's tracked objects present (per label; per --roi zone) and those that appeared or left:
    # None for a classifier, so its results keep their shape.
    counts: dict[str, int] | None = None
    zones: dict[str, dict[str, int]] = field(default_factory=dict)
    events: list[TrackEvent] = field(default_factory=list)

    @property
    def unknown(self) -> bool:
        return self.verdict is not None and self.verdict.unknown

    @property
    def label(self) -> str | None:
        """What the frame shows: "unknown" when rejected (the best class stays in `top`)."""
        if self.unknown:
            return UNKNOWN_LABEL
        return self.top[0].label if self.top else None

    @property
    def score(self) -> float | None:
        return self.top[0].score if self.top else None

    def to_json(self) -> dict[str, Any]:
        """The object `run --json` prints, one per line."""
        data: dict[str, Any] = {"frame": self.index, "ts": round(self.ts, 6)}
        if self.item is not None:
            data["item"] = self.item
        if self.counts is None:  # a classifier's answer; a detector's is its objects
            data["label"] = self.label
            if self.verdict is not None:
                data["confidence"] = round(self.verdict.confidence, 6)
            data["top"] = [p.to_json() for p in self.top]
        if self.detections or self.counts is not None:
            data["detections"] = [d.to_json() for d in self.detections]
        if self.counts is not None:
            data["counts"] = dict(self.counts)
            if self.zones:
                data["zones"] = {name: dict(counts) for name, counts in self.zones.items()}
            if self.events:
                data["events"] = [e.to_json() for e in self.events]
        data["latency_ms"] = {k: round(v, LATENCY_DECIMALS) for k, v in self.latency_ms.items()}
        data["fps"] = round(self.fps, 2)
        if self.regions:
            data["regions"] = {name: [p.to_json() for p in top] for name, top in self.regions.items()}
        return data

    def human_line(self, threshold: float = 0.0) -> str:
        """The line `run` prints without --json."""
        labels = ", ".join(scored(p.label, p.score) for p in self.top) or f"(nothing above {threshold:g})"
        where = f"frame {self.index}" + (f" {self.item}" if self.item is not None else "")
        if self.unknown:
            labels = f"{UNKNOWN_LABEL} (best: {labels})"
        for name, top in self.regions.items():
            labels += f" | {name}: " + (scored(top[0].label, top[0].score) if top else "-")
        if self.detections:
            labels += " | objects: " + ", ".join(scored(d.label, d.score) for d in self.detections)
        elif self.counts is not None:
            labels += " | objects: none"
        for name, counts in self.zones.items():
            labels += f" | {name}: " + (", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "-")
        return printable(f"{where}: {labels}  [inference {self.latency_ms['inference']:.1f} ms, {self.fps:.1f} fps]")

    @functools.cached_property
    def annotated(self) -> np.ndarray:
        """The frame with the result drawn on it, made once however many outputs show it."""
        from .annotate import annotate  # OpenCV drawing: only outputs that show frames need it

        if self.image is None:
            raise ValueError("this result carries no image to annotate")
        zones = None if self.counts is None else {  # a detector's zones, with what is in each
            n: (self.boxes[n], ", ".join(f"{c} {label}" for label, c in sorted(counts.items())) or "-")
            for n, counts in self.zones.items()}
        return annotate(self.image, self.top, self.fps, {n: (self.boxes[n], t) for n, t in self.regions.items()},
                        self.unknown, self.detections, zones)
