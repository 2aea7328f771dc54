"""Where frames come from: the Pi camera (Picamera2), a V4L2/USB camera, a
video file, a network stream, or still images. Every source yields 8-bit BGR
frames, the layout the shared preprocessing expects.

A source is opened, read until it returns None (end of a file) or raises
`SourceLost` (a live camera or stream that went away, worth retrying), and
closed. The capture thread (capture.py) owns retrying and threading.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.device.model.imageheader import DEFAULT_MAX_PIXELS
from edgepipe.device.model.preprocess import IMAGE_SUFFIXES, ImageReadError, load_image
from edgepipe.core.safetext import redact

PICAMERA2 = "picamera2"
_STREAM_URL = re.compile(r"^(rtsp|rtsps|rtmp|http|https|udp|tcp)://", re.IGNORECASE)
_V4L2_DEVICE = re.compile(r"^/dev/video\d+$")
_GLOB_CHARS = re.compile(r"[*?\[]")


class SourceUnavailable(UserError):
    """A source that cannot be opened (absent, busy, unreachable); may be retried."""


class SourceLost(Exception):
    """A live source that stopped delivering frames mid-run; may be retried."""


class FrameSource(Protocol):
    name: str
    live: bool  # a camera or stream: keep only the newest frame, retry when lost
    current_item: str | None  # the name of the item the last read() returned, when items have names

    def open(self) -> None: ...

    def read(self) -> np.ndarray | None: ...

    @property
    def fps(self) -> float | None: ...

    def close(self) -> None: ...


class Picamera2Source:
    """The Raspberry Pi camera through Picamera2/libcamera.

    Asks for "RGB888", which libcamera names by its little-endian word order:
    the bytes in memory are B, G, R, exactly OpenCV's BGR, so frames need no
    channel swap. `camera_factory` is the seam tests use to pass an object with
    Picamera2's API; by default picamera2 is imported only here.
    """

    live = True
    current_item = None

    def __init__(self, size: tuple[int, int] | None = None, fps: float | None = None,
                 camera_factory: Callable[[], Any] | None = None) -> None:
        self.name = PICAMERA2
        self.size = size or (640, 480)
        self._fps = fps
        self._factory = camera_factory
        self._camera: Any = None

    @property
    def fps(self) -> float | None:
        return self._fps

    def _default_factory(self) -> Callable[[], Any]:
        try:
            module = importlib.import_module("picamera2")
        except ImportError:
            raise UserError(
                "--source picamera2 needs the picamera2 library: on Raspberry Pi OS run "
                "`sudo apt install python3-picamera2` and create the venv with --system-site-packages"
            ) from None
        return module.Picamera2

    def open(self) -> None:
        factory = self._factory or self._default_factory()
        try:
            camera = factory()
        except (IndexError, RuntimeError, OSError) as exc:  # no camera, or another process holds it
            raise SourceUnavailable(f"Pi camera (picamera2) is absent or busy: {exc}") from None
        try:
            controls = {"FrameRate": float(self._fps)} if self._fps else {}
            config = camera.create_video_configuration(main={"format": "RGB888", "size": tuple(self.size)},
                                                       controls=controls)
            camera.configure(config)
            camera.start()
        except (RuntimeError, OSError, ValueError) as exc:
            camera.close()
            raise SourceUnavailable(f"Pi camera (picamera2) cannot start: {exc}") from None
        self._camera = camera

    def read(self) -> np.ndarray | None:
        try:
            frame = self._camera.capture_array()
        except (RuntimeError, OSError) as exc:
            raise SourceLost(f"Pi camera stopped delivering frames: {exc}") from None
        if frame is None or frame.ndim != 3:
            raise SourceLost("Pi camera returned an empty frame")
        return frame[:, :, :3] if frame.shape[2] == 4 else frame

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            try:
                camera.stop()
            finally:
                camera.close()


# A JPEG decoded at 1/8, 1/4 or 1/2 of its size (libjpeg scales in its inverse DCT), largest first.
JPEG_REDUCTIONS = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))
MJPEG_FOURCCS = frozenset({"MJPG", "mjpg", "JPEG", "jpeg"})


def jpeg_reduction(block_factor: int) -> tuple[int, int]:
    """(factor, imdecode flag) of the largest JPEG reduction that divides the whole factor the
    preprocessing first shrinks a frame by (its k x k block mean), so that the reduced decode
    takes that step's place; (1, IMREAD_COLOR) when none does."""
    for factor, flag in JPEG_REDUCTIONS:
        if block_factor % factor == 0:
            return factor, flag
    return 1, cv2.IMREAD_COLOR


def _jpeg(packet: np.ndarray, flag: int) -> np.ndarray | None:
    """A container's packet decoded as a JPEG with `flag`; None when it is not a whole one."""
    data = packet.reshape(-1)
    return cv2.imdecode(data, flag) if data[:2].tobytes() == b"\xff\xd8" else None


def _fourcc(capture: Any) -> str:
    code = int(capture.get(cv2.CAP_PROP_FOURCC) or 0)
    return "".join(chr((code >> 8 * i) & 0xFF) for i in range(4))


class OpenCVSource:
    """A V4L2/USB camera, a video file or a network stream through OpenCV.

    Cameras and streams are live (frames arrive whether or not we keep up);
    a file is read frame by frame and ends.

    An MJPEG file or stream can be decoded smaller than it was recorded: when nothing of
    the run needs the full frame (`shrink_for`), each frame's JPEG is taken from the
    container as it is and decoded at 1/2, 1/4 or 1/8 scale in libjpeg's inverse DCT,
    which decodes and takes the place of the preprocessing's first shrinking step (a
    k x k block mean) for less than a full decode costs (640x480 to 320x240: 0.54
    instead of 0.87 ms here); the model's answers do not change
    (benchmarks/bench_run_accuracy.py).
    """

    def __init__(self, target: int | str, *, live: bool, size: tuple[int, int] | None = None,
                 fps: float | None = None) -> None:
        self.target = target
        self.live = live
        self.current_item: str | None = None
        self.name = f"camera {target}" if isinstance(target, int) else redact(str(target))  # shown everywhere
        self.size = size
        self._requested_fps = fps
        self._capture: Any = None
        self.frames_read = 0
        self.declared_frames = 0  # what a video file's container says it holds
        self._block_factor: Callable[[int, int], int] | None = None
        self.reduction = 1  # the JPEG reduction in use: frames are 1/reduction of the recorded size
        self._jpeg_flag: int | None = None  # set when frames arrive as JPEG packets decoded here
        self._pending: np.ndarray | None = None  # the first such frame, decoded to check the packets

    def shrink_for(self, block_factor: Callable[[int, int], int] | None) -> None:
        """From the next open(), decode frames already shrunk by what `block_factor(width, height)` (the
        preprocessing's whole factor for a frame of that size) allows; None: full frames."""
        self._block_factor = block_factor

    def lost_frames(self) -> int:
        """Frames a video file declares but that could not be decoded (corrupt or cut mid-file)."""
        return max(0, self.declared_frames - self.frames_read) if not self.live else 0

    @property
    def fps(self) -> float | None:
        if self._capture is not None:
            reported = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
            if 0 < reported < 1000:
                return reported
        return self._requested_fps

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            what = "absent or busy" if self.live and not _STREAM_URL.match(str(self.target)) else "unreachable"
            if not self.live:
                raise UserError(f"cannot open video {self.name}: not a video OpenCV can decode")
            raise SourceUnavailable(f"cannot open {self.name}: {what}")
        if self.live and self.size:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.live and self._requested_fps:
            capture.set(cv2.CAP_PROP_FPS, self._requested_fps)
        if self.live:
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # we want the newest frame, not a backlog
        else:
            self.declared_frames = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
            self.frames_read = 0
        self._capture = capture
        self._choose_decoding(capture)

    def _choose_decoding(self, capture: Any) -> None:
        """JPEG packets decoded here at a reduced size, when the frames allow it, OpenCV's FFmpeg back end
        hands packets over (CAP_PROP_FORMAT -1) and the first one is a JPEG that decodes; else OpenCV
        decodes whole frames, from the file's start."""
        self.reduction, self._jpeg_flag, self._pending = 1, None, None
        if self._block_factor is None or _fourcc(capture) not in MJPEG_FOURCCS:
            return
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        factor, flag = jpeg_reduction(self._block_factor(width, height) if width and height else 1)
        if factor == 1 or not capture.set(cv2.CAP_PROP_FORMAT, -1):
            return
        ok, packet = capture.read()
        first = _jpeg(packet, flag) if ok and packet is not None else None
        if first is None:  # not packets this decoder knows: whole frames, as OpenCV decodes them
            capture.release()
            self._capture = cv2.VideoCapture(self.target)
            return
        self.reduction, self._jpeg_flag, self._pending = factor, flag, first

    def _next_frame(self) -> np.ndarray | None:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        ok, frame = self._capture.read()
        if not ok or frame is None or self._jpeg_flag is None:
            return frame if ok else None
        while (image := _jpeg(frame, self._jpeg_flag)) is None:  # skipped, as a frame FFmpeg cannot decode
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return None
        return image

    def read(self) -> np.ndarray | None:
        frame = self._next_frame()
        if frame is not None:
            self.frames_read += 1
            return frame
        if self.live:
            raise SourceLost(f"{self.name} stopped delivering frames")
        return None

    def close(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()


@dataclass
class ImageError:
    path: Path
    message: str


class ImageFilesSource:
    """Still images in order; an unreadable one is reported through `on_error` and skipped."""

    live = False

    def __init__(self, paths: list[Path], name: str,
                 on_error: Callable[[ImageError], None] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.paths = paths
        self.name = name
        self.max_pixels = max_pixels
        self.on_error = on_error
        self.current_item: str | None = None
        self._next = 0

    @property
    def fps(self) -> float | None:
        return None

    def open(self) -> None:
        self._next = 0

    def read(self) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            try:
                image = load_image(path, self.max_pixels)
            except ImageReadError as exc:
                if self.on_error:
                    self.on_error(ImageError(path, str(exc)))
                continue
            self.current_item = path.name
            return image
        return None

    def close(self) -> None:
        pass


def default_source() -> str:
    """The Pi camera when picamera2 is installed, else the first V4L2 camera."""
    return PICAMERA2 if importlib.util.find_spec("picamera2") is not None else "/dev/video0"


def _image_files(paths: list[Path]) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def open_source(spec: str, size: tuple[int, int] | None = None, fps: float | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> FrameSource:
    """The source named by --source (not yet opened: open() may be retried)."""
    if spec == PICAMERA2:
        return Picamera2Source(size, fps)
    if spec.isdigit():
        return OpenCVSource(int(spec), live=True, size=size, fps=fps)
    if _V4L2_DEVICE.match(spec):
        if not Path(spec).exists():
            raise UserError(f"camera {spec} does not exist: check the cable, or list cameras with `v4l2-ctl --list-devices`")
        return OpenCVSource(spec, live=True, size=size, fps=fps)
    if _STREAM_URL.match(spec):
        return OpenCVSource(spec, live=True, size=size, fps=fps)
    path = Path(spec)
    if path.is_dir():
        images = _image_files(list(path.iterdir()))
        if not images:
            raise UserError(f"directory {spec} has no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFilesSource(images, spec, max_pixels=max_pixels)
    if _GLOB_CHARS.search(spec) and not path.exists():
        images = _image_files([Path(p) for p in glob.glob(spec, recursive=True)])
        if not images:
            raise UserError(f"no images match {spec}")
        return ImageFilesSource(images, spec, max_pixels=max_pixels)
    if not path.exists():
        raise UserError(
            f"source {spec} does not exist; use picamera2, a camera index (0), /dev/videoN, "
            "a video file, an rtsp:// or http:// URL, or a directory/glob of images"
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFilesSource([path], spec, max_pixels=max_pixels)
    return OpenCVSource(spec, live=False, size=size, fps=fps)

