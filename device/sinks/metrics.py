"""Prometheus metrics of a run (`run --serve`'s /metrics), via prometheus_client.

Per-stage latency histograms are observed per result (a few microseconds);
counters and gauges are read from the run's summary at scrape time, so the
inference loop pays nothing for them. On a Raspberry Pi the SoC temperature
and the firmware's throttling flags are exported too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from edgepipe import __version__

from ..host import PI_THROTTLED, THERMAL_ZONE, soc_temperature_c, throttle_flags, throttled_bits
from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.runstats import STAGES
from edgepipe.device.run.sink import RunInfo

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class RunMetrics:
    def __init__(self, running_summary: Callable[[], dict[str, Any]] = dict,
                 thermal_zone: Path = THERMAL_ZONE, throttled: Path = PI_THROTTLED) -> None:
        self.registry = CollectorRegistry()
        histogram = Histogram("edgepipe_stage_latency_seconds", "Latency of each stage of a frame",
                              ["stage"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self._stages = {stage: histogram.labels(stage) for stage in STAGES}
        self._info = Info("edgepipe_run", "What this run classifies with", registry=self.registry)
        # A detector's: objects reported per label (every frame's), and the tracked objects present now.
        self._detections = Counter("edgepipe_detections", "Objects detected, per label, summed over frames",
                                   ["label"], registry=self.registry)
        self._present = Gauge("edgepipe_objects", "Tracked objects present now, per label", ["label"],
                              registry=self.registry)
        self._zone_present = Gauge("edgepipe_zone_objects", "Tracked objects present now in each --roi zone",
                                   ["zone", "label"], registry=self.registry)
        self._labels: tuple[str, ...] = ()
        self._collector = _SummaryCollector(running_summary, thermal_zone, throttled)
        self.registry.register(self._collector)

    def start(self, run: RunInfo) -> None:
        self._info.info({"model": run.model, "accelerator": run.accelerator, "backend": run.backend,
                         "threads": str(run.threads), "source": run.source, "version": __version__})
        self._collector.running_summary = run.running_summary
        if run.detector:  # every reported label from the start, so a query sees 0 rather than nothing
            self._labels = run.labels
            for label in run.labels:
                self._detections.labels(label)
                self._present.labels(label).set(0)

    def observe(self, result: FrameResult) -> None:
        for stage, ms in result.latency_ms.items():
            child = self._stages.get(stage)
            if child is not None:
                child.observe(ms / 1000.0)
        self._collector.last_result = (result.ts, result.fps)
        if result.counts is not None:
            for detection in result.detections:
                self._detections.labels(detection.label).inc()
            for label in self._labels:
                self._present.labels(label).set(result.counts.get(label, 0))
            for zone, counts in result.zones.items():
                for label in self._labels:
                    self._zone_present.labels(zone, label).set(counts.get(label, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SummaryCollector:
    """Counters and gauges read at scrape time from the summary and the Pi's firmware."""

    def __init__(self, running_summary: Callable[[], dict[str, Any]], thermal_zone: Path, throttled: Path) -> None:
        self.running_summary = running_summary
        self.thermal_zone, self.throttled = thermal_zone, throttled
        self.last_result: tuple[float, float] | None = None

    def collect(self) -> Iterator[Any]:
        summary = self.running_summary()
        for key, name, text in (("frames", "edgepipe_frames", "Frames classified"),
                                ("dropped", "edgepipe_dropped_frames", "Frames dropped to stay live"),
                                ("errors", "edgepipe_errors", "Unreadable inputs skipped"),
                                ("retries", "edgepipe_source_retries", "Reopenings of a lost source")):
            if key in summary:
                yield CounterMetricFamily(name, text, value=summary[key])
        sink_drops = CounterMetricFamily("edgepipe_output_dropped", "Messages an output could not deliver",
                                         labels=["output"])
        for output in ("mqtt", "serve"):
            if isinstance(summary.get(output), dict):
                sink_drops.add_metric([output], summary[output].get("dropped", 0))
        yield sink_drops
        regions = CounterMetricFamily("edgepipe_region_label_frames", "Frames each region's top label was seen",
                                      labels=["region", "label"])
        for region, detail in summary.get("regions", {}).items():
            for label, count in detail["labels"].items():
                regions.add_metric([region, label], count)
        yield regions
        if self.last_result is not None:
            ts, fps = self.last_result
            yield GaugeMetricFamily("edgepipe_fps", "Current results per second", value=fps)
            yield GaugeMetricFamily("edgepipe_last_result_age_seconds", "Seconds since the last result",
                                    value=max(0.0, time.time() - ts))
        temperature = soc_temperature_c(self.thermal_zone)
        if temperature is not None:
            yield GaugeMetricFamily("edgepipe_soc_temperature_celsius", "SoC temperature", value=temperature)
        bits = throttled_bits(self.throttled)
        if bits is not None:
            throttled = GaugeMetricFamily("edgepipe_throttled", "Raspberry Pi firmware throttling flags "
                                          "(now, and since boot)", labels=["flag", "when"])
            for flag, state in throttle_flags(bits).items():
                throttled.add_metric([flag, "now"], int(state["now"]))
                throttled.add_metric([flag, "since_boot"], int(state["since_boot"]))
            yield throttled
