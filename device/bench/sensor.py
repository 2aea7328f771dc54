"""`bench --accelerator imx500`: the AI Camera's own timings, read from each frame's `CnnKpiInfo`.

The network runs on the sensor, so there is no interpreter to time on the CPU: the sensor
reports, per frame, its DNN runtime and its DSP runtime (Picamera2's IMX500.get_kpi_info),
and the frames that carry an output set the inference rate.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepipe.core.errors import UserError

from ..model import imx500_sensor
from ..model.bundle import load_bundle
from ..model.imx500_package import ensure_rpk
from .stats import MS_DECIMALS, latency_summary
from .sysinfo import current_rss_mb, peak_rss_mb, thermal_snapshot


def measure_sensor(model: Path, runs: int, warmup: int, duration_s: float | None,
                   progress: Callable[[str], None]) -> dict[str, Any]:
    """`runs` frames (or `duration_s` seconds) after `warmup` ones: the sensor's DNN and DSP milliseconds."""
    bundle = load_bundle(model, verify=True)
    started = time.perf_counter()
    rpk = ensure_rpk(bundle, progress)
    camera = imx500_sensor.Imx500Camera(rpk, len(bundle.labels), factories=imx500_sensor.default_factories())
    camera.open()
    try:
        first = camera.next_scored()
        load_ms = (time.perf_counter() - started) * 1000.0
        for _ in range(warmup):
            camera.next_scored()
        progress(f"imx500: reading the sensor's timings of {f'{duration_s:g} s' if duration_s else f'{runs} frames'}")
        thermal_before = thermal_snapshot()
        dnn, dsp, stamps = [], [], []
        deadline = time.perf_counter() + duration_s if duration_s else None
        while (len(dnn) < runs) if deadline is None else (time.perf_counter() < deadline):
            frame = camera.next_scored()
            if frame.kpi_ms is None:
                raise UserError("the AI Camera sends no CnnKpiInfo: update picamera2 and the imx500 firmware")
            dnn.append(frame.kpi_ms[0])
            dsp.append(frame.kpi_ms[1])
            stamps.append(time.perf_counter())
        thermal_after = thermal_snapshot()
    finally:
        camera.close()
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    return {
        "accelerator": "imx500",
        "threads": 0,
        "workers": 1,
        "backend": "imx500 sensor",
        "backend_version": f"network.rpk {hashlib.sha256(rpk.read_bytes()).hexdigest()[:12]}",
        "model_file": str(rpk),
        "input": {"source": "the camera's frames (the sensor's own input)"},
        "load_ms": round(load_ms, 3),
        "first_inference_ms": first.kpi_ms[0] if first.kpi_ms else None,
        "warmup": warmup,
        "runs": len(dnn),
        "timed_s": round(sum(dnn) / 1000.0, 3),
        "latency_ms": latency_summary(np.asarray(dnn) * 1e6),
        "dsp_ms": latency_summary(np.asarray(dsp) * 1e6),
        "inferences_per_s": round((len(stamps) - 1) / span, 3) if span > 0 else None,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
        "thermal": {"before": thermal_before, "after": thermal_after},
        "windows": None,
        "samples_ms": [round(v, MS_DECIMALS) for v in dnn],
        "timing": "CnnKpiInfo: DNN runtime on the sensor (latency_ms) and DSP runtime (dsp_ms), per frame",
    }

