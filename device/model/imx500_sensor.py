"""The Raspberry Pi AI Camera's sensor as an accelerator: the IMX500 runs the network itself.

Picamera2 hands each frame's output tensor over in the frame's metadata, so the
CPU runs no interpreter: `Imx500Camera` captures frames that carry their scores
(`SensorFrame`), and `SensorScores` takes the classifier's seat, passing them on
to the same postprocessing, `FrameResult` and sinks as every other accelerator
(run/imx500_source.py makes the camera a frame source). Tensor injection runs a
given image on the sensor instead of the camera's view: what verify uses.

Picamera2's `IMX500` class (picamera2.devices), `Picamera2` and its camera list
are reached through one seam, `Imx500Factories`, as Picamera2Source does: tests
pass fakes with the metadata layout Picamera2 documents, since neither library
nor the sensor exists off a Pi. `find_ai_camera` asks the same seam whether an
AI Camera is attached, for `run --accelerator auto`.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepipe.core.errors import UserError
from .bundle import Bundle
from .imx500_contract import injection_tensor
from .preprocess import InputSpec, resize_to_input

IMX500 = "imx500"
AI_CAMERA_MODEL = "imx500"  # the "Model" Picamera2.global_camera_info() gives the AI Camera's sensor
FIRST_OUTPUT_TIMEOUT_S = 180.0  # the network firmware upload takes up to a minute or two on first load
INJECTION_TIMEOUT_S = 10.0
FRAME_COUNT_OFFSET = 64 + 4 + 16 * (4 + 4 + 2 * 16)  # CnnOutputTensorInfoExported.frameCount (libcamera)
INSTALL_HINT = ("on Raspberry Pi OS: `sudo apt install imx500-all python3-picamera2` and create the venv with "
                "--system-site-packages (edgepipe deploy setup does both)")


@dataclass(frozen=True)
class Imx500Factories:
    """picamera2.devices.IMX500, picamera2.Picamera2 and Picamera2.global_camera_info (one dict per
    attached camera: "Model", "Num", "Id", ...), or stand-ins with their API."""

    imx500: Callable[..., Any]
    picamera2: Callable[[int], Any]
    cameras: Callable[[], list[dict[str, Any]]]


def default_factories() -> Imx500Factories:
    try:
        picamera2 = importlib.import_module("picamera2")
        devices = importlib.import_module("picamera2.devices")
    except ImportError:
        raise UserError(f"--accelerator imx500 needs picamera2 with IMX500 support: {INSTALL_HINT}") from None
    return Imx500Factories(devices.IMX500, picamera2.Picamera2, picamera2.Picamera2.global_camera_info)


def find_ai_camera() -> tuple[dict[str, Any] | None, str]:
    """The first attached AI Camera as Picamera2 lists it, or None; and a phrase saying so, or why not.

    Never raises: `run --accelerator auto` asks this on machines without picamera2 or a camera,
    where the answer is simply "no" and the Edge TPU or the CPU runs the model.
    """
    try:
        factories = default_factories()
    except UserError:
        return None, "picamera2 with IMX500 support is not installed"
    try:
        cameras = list(factories.cameras())
    except (RuntimeError, OSError) as exc:  # libcamera could not list the cameras
        return None, f"Picamera2 could not list the cameras ({exc})"
    camera = next((c for c in cameras if c.get("Model") == AI_CAMERA_MODEL), None)
    if camera is None:
        models = ", ".join(str(c.get("Model", "?")) for c in cameras) or "none"
        return None, f"no AI Camera is attached (cameras: {models})"
    return camera, f"an AI Camera is attached (camera {camera.get('Num', 0)})"


class CameraUnavailable(UserError):
    """The AI Camera is absent, busy or refuses the network; may be retried."""


class CameraLost(Exception):
    """The AI Camera stopped delivering frames or outputs; may be retried."""


class SensorFrame(np.ndarray):
    """A camera frame (BGR) carrying what the sensor computed for it."""

    scores: np.ndarray | None
    kpi_ms: tuple[float, float] | None  # (DNN runtime, DSP runtime) from CnnKpiInfo
    frame_count: int | None

    def __array_finalize__(self, obj: Any) -> None:
        self.scores = getattr(obj, "scores", None)
        self.kpi_ms = getattr(obj, "kpi_ms", None)
        self.frame_count = getattr(obj, "frame_count", None)


def frame_count(metadata: dict[str, Any]) -> int | None:
    """The sensor's frame counter in CnnOutputTensorInfo (what tensor injection is matched by)."""
    info = metadata.get("CnnOutputTensorInfo")
    if not info or len(bytes(info)) <= FRAME_COUNT_OFFSET:
        return None
    return struct.unpack_from("B", bytes(info), FRAME_COUNT_OFFSET)[0]


class Imx500Camera:
    """The AI Camera with a network loaded: open, capture frames with their outputs, inject tensors, close."""

    def __init__(self, rpk: Path, num_classes: int, size: tuple[int, int] | None = None, fps: float | None = None,
                 factories: Imx500Factories | None = None, tensor_injection: bool = False) -> None:
        self.rpk = Path(rpk)
        self.num_classes = num_classes
        self.size = size or (640, 480)
        self.fps = fps
        self.tensor_injection = tensor_injection
        self._factories = factories
        self.imx500: Any = None
        self.picam2: Any = None

    def open(self) -> None:
        factories = self._factories or default_factories()
        try:  # the IMX500 object must exist before Picamera2 is made: it uploads the network firmware
            self.imx500 = factories.imx500(str(self.rpk), tensor_injection=self.tensor_injection)
            self.picam2 = factories.picamera2(self.imx500.camera_num)
        except (RuntimeError, OSError, IndexError, StopIteration) as exc:
            raise CameraUnavailable(f"AI Camera (IMX500) is absent, busy or refused {self.rpk.name}: {exc}") from None
        controls: dict[str, Any] = {"FrameRate": float(self.fps)} if self.fps else {}
        if self.tensor_injection:
            controls["CnnEnableInputTensor"] = True
        try:
            config = self.picam2.create_preview_configuration(
                main={"format": "RGB888", "size": tuple(self.size)}, controls=controls, buffer_count=12)
            self.picam2.start(config, show_preview=False)
        except (RuntimeError, OSError, ValueError) as exc:
            self.close()
            raise CameraUnavailable(f"AI Camera (IMX500) cannot start: {exc}") from None

    def capture(self) -> SensorFrame:
        """The next frame with the sensor's output for it (scores None while the network is not running yet)."""
        try:
            request = self.picam2.capture_request()
        except (RuntimeError, OSError) as exc:
            raise CameraLost(f"AI Camera stopped delivering frames: {exc}") from None
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        frame = np.asarray(image)[:, :, :3].view(SensorFrame)
        outputs = self.imx500.get_outputs(metadata)
        frame.scores = self._scores(outputs) if outputs else None
        kpi = self.imx500.get_kpi_info(metadata)
        frame.kpi_ms = (float(kpi[0]), float(kpi[1])) if kpi else None
        frame.frame_count = frame_count(metadata)
        return frame

    def _scores(self, outputs: list[np.ndarray]) -> np.ndarray:
        scores = np.asarray(outputs[0], np.float32).reshape(-1)
        if len(outputs) != 1 or scores.size != self.num_classes:
            shapes = ", ".join(str(tuple(np.shape(o))) for o in outputs)
            raise UserError(f"{self.rpk} outputs {shapes} but the bundle has {self.num_classes} labels; "
                            "deploy the network.rpk made from this bundle's packerOut.zip")
        return scores

    def next_scored(self, timeout_s: float = FIRST_OUTPUT_TIMEOUT_S) -> SensorFrame:
        """The next frame that carries the network's output (the first ones may not while it loads)."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self.capture()
            if frame.scores is not None:
                return frame
            if time.monotonic() > deadline:
                raise CameraLost(f"the AI Camera sent no network output for {timeout_s:.0f} s; is {self.rpk.name} "
                                 "the network.rpk imx500-package made?")

    def infer(self, rgb: np.ndarray) -> SensorFrame:
        """The sensor's output for an injected input tensor (uint8 RGB at the network's input size)."""
        if not self.tensor_injection:
            raise UserError("tensor injection is off for this camera")
        config = self.imx500.config["input_tensor"]
        tensor = injection_tensor(rgb, signed=config.get("dtype", "signed") == "signed",
                                  input_format=config.get("input_format", "RGB"))
        fd = _memfd(tensor)
        try:
            self.imx500._IMX500__set_input_tensor(fd)  # Picamera2's injection example calls it so too
            wanted = self.imx500.get_injection_cmp_frm()
        finally:
            os.close(fd)
        deadline = time.monotonic() + INJECTION_TIMEOUT_S
        while time.monotonic() < deadline:
            frame = self.capture()
            if frame.scores is not None and frame.frame_count == wanted:
                return frame
        raise CameraLost(f"the AI Camera did not answer an injected tensor within {INJECTION_TIMEOUT_S:.0f} s")

    def close(self) -> None:
        picam2, self.picam2 = self.picam2, None
        if picam2 is not None:
            try:
                picam2.stop()
            finally:
                picam2.close()


def _memfd(data: bytes) -> int:
    fd = os.memfd_create("edgepipe-tensor", os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class SensorScores:
    """The classifier seat of `run --accelerator imx500`: the network ran on the sensor, so
    "preprocess" takes the scores the frame carries and "invoke" passes them on."""

    accelerator = IMX500
    backend = "imx500 sensor"
    threads = 0
    is_detector = False  # a classifier's scores: `convert --imx500` converts classifiers only

    def __init__(self, bundle: Bundle, rpk: Path, load_ms: float = 0.0) -> None:
        self.bundle = bundle
        self.labels = list(bundle.labels)
        self.num_classes = len(self.labels)
        self.input_spec: InputSpec = bundle.input_spec
        self.model_path = Path(rpk)
        self.load_ms = load_ms
        self._sha256 = hashlib.sha256(self.model_path.read_bytes()).hexdigest()
        self.backend_version = f"network.rpk {self._sha256[:12]}"
        self.accelerator_note = "the network runs on the sensor; scores come in the frame metadata"
        self._loaded = np.zeros(self.num_classes, np.float32)  # the last frame's scores (load_frame)

    @property
    def model_sha256(self) -> str:
        return self._sha256

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        scores = getattr(frame, "scores", None)
        if scores is None:
            raise UserError("--accelerator imx500 reads each frame's scores from the AI Camera: it needs the camera "
                            "as the source (no --source, no --roi)")
        return scores

    def invoke(self, scores: np.ndarray) -> np.ndarray:
        return scores

    def load_frame(self, frame: np.ndarray) -> None:
        """The run loop's in-tensor path: there is no tensor here, the frame's own scores are kept."""
        self._loaded = self.preprocess(frame)

    def invoke_loaded(self) -> np.ndarray:
        return self._loaded

    def features(self) -> None:
        """The sensor outputs the class scores only: no pooled features for a feature-space "unknown"."""
        return None

    def replica(self, threads: int) -> "SensorScores":
        raise UserError("the AI Camera has one sensor: --workers 1 with --accelerator imx500")

    def describe(self) -> str:
        return f"{self.model_path} on the IMX500 sensor ({self.accelerator_note}), loaded in {self.load_ms:.0f} ms"


def sensor_pixels(bgr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A golden image at the network's input size in RGB, as the injected tensor carries it."""
    return resize_to_input(bgr, InputSpec(height=spec.height, width=spec.width, channel_order="RGB",
                                          resize=spec.resize))

