"""The Raspberry Pi AI Camera as `run`'s frame source: each frame carries the scores its sensor computed.

The camera is the source and the accelerator at once, so `run --accelerator imx500`
opens both here: the source below, and model/imx500_sensor.SensorScores in the
classifier's seat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..model import imx500_sensor
from ..model.bundle import load_bundle
from ..model.imx500_package import ensure_rpk
from ..model.imx500_sensor import CameraLost, CameraUnavailable, Imx500Camera, SensorFrame, SensorScores
from .sources import SourceLost, SourceUnavailable


class Imx500Source:
    """Frames from the AI Camera, each carrying the sensor's scores (a FrameSource)."""

    live = True
    current_item = None
    name = "imx500"

    def __init__(self, camera: Imx500Camera) -> None:
        self.camera = camera

    @property
    def fps(self) -> float | None:
        return self.camera.fps

    def open(self) -> None:
        try:
            self.camera.open()
        except CameraUnavailable as exc:
            raise SourceUnavailable(str(exc)) from None

    def read(self) -> SensorFrame:
        try:
            return self.camera.next_scored()
        except CameraLost as exc:
            raise SourceLost(str(exc)) from None

    def close(self) -> None:
        self.camera.close()


def open_ai_camera(bundle_path: Path, size: tuple[int, int] | None, fps: float | None,
                   say: Callable[[str], None] = lambda message: None) -> tuple[Imx500Source, SensorScores]:
    """`run --accelerator imx500`'s source and classifier seat for a bundle with an IMX500 model."""
    started = time.perf_counter()
    bundle = load_bundle(bundle_path, verify=True)
    rpk = ensure_rpk(bundle, say)
    camera = Imx500Camera(rpk, len(bundle.labels), size, fps, imx500_sensor.default_factories())
    return Imx500Source(camera), SensorScores(bundle, rpk, (time.perf_counter() - started) * 1000.0)
