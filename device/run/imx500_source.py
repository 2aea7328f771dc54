"""The Raspberry Pi AI Camera as `run`'s frame source: each frame carries the scores its sensor computed.

The camera is the source and the accelerator at once, so `run --accelerator imx500`
opens both here: the source below, and model/imx500_sensor.SensorScores in the
classifier's seat. `auto_picks_ai_camera` is `--accelerator auto`'s first choice:
the AI Camera when the bundle has an IMX500 model and one is attached.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..model import imx500_sensor
from ..model.bundle import MANIFEST, is_bundle, load_bundle
from ..model.imx500_contract import imx500_block
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


def auto_picks_ai_camera(model: Path, in_the_way: str | None) -> tuple[bool, str | None]:
    """`run --accelerator auto`: whether the AI Camera runs `model`, and why (a phrase to print).

    The AI Camera when the model is a bundle with an IMX500 model, nothing asked of the run rules
    the camera out (`in_the_way` says what does, e.g. another --source) and Picamera2 lists an
    attached AI Camera; otherwise auto's usual order (the Edge TPU, else the CPU). A model without
    an IMX500 model gives (False, None): auto goes on as before, without looking for a camera.
    """
    if not is_bundle(model):
        return False, None
    bundle = load_bundle(model, verify=False)  # the manifest only: opening the model verifies the files
    if imx500_block(bundle.manifest, str(model / MANIFEST)) is None:
        return False, None
    if in_the_way:
        return False, f"not the IMX500, though the bundle has an IMX500 model: {in_the_way}"
    camera, why = imx500_sensor.find_ai_camera()
    if camera is None:
        return False, f"not the IMX500, though the bundle has an IMX500 model: {why}"
    return True, f"the IMX500: the bundle has an IMX500 model and {why}"
