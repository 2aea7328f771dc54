"""Frame sources. The Pi camera is reached through one seam (Picamera2Source's
camera_factory) with a fake object that has Picamera2's API: picamera2 and
libcamera are not installable here."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.sinks.lines import LinesSink
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.run.sources import (
    ImageFilesSource,
    OpenCVSource,
    Picamera2Source,
    SourceLost,
    SourceUnavailable,
    open_source,
)


class FakePicamera2:
    """Picamera2's API as edgepipe uses it; frames are BGR bytes like libcamera's RGB888."""

    instances: list["FakePicamera2"] = []

    def __init__(self, frames: int = 1000, fail_after: int | None = None) -> None:
        self.calls: list[tuple] = []
        self.frames = frames
        self.fail_after = fail_after
        self.captured = 0
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main: dict, controls: dict | None = None) -> dict:
        self.calls.append(("create_video_configuration", main, controls))
        return {"main": dict(main), "controls": controls or {}}

    def configure(self, config: dict) -> None:
        self.calls.append(("configure", config))
        self.size = config["main"]["size"]

    def start(self) -> None:
        self.calls.append(("start",))

    def capture_array(self) -> np.ndarray:
        if self.fail_after is not None and self.captured >= self.fail_after:
            raise RuntimeError("camera frontend has timed out")
        width, height = self.size
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0], frame[..., 1], frame[..., 2] = 10, 20, 30 + self.captured % 200  # B, G, R bytes
        self.captured += 1
        return frame

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))


def test_picamera2_source_with_fake_camera_asks_rgb888_and_keeps_bgr_bytes():
    camera = FakePicamera2()
    source = Picamera2Source(size=(320, 240), fps=30, camera_factory=lambda: camera)
    assert source.live and source.name == "picamera2"
    source.open()
    frame = source.read()
    source.close()
    assert camera.calls[0] == ("create_video_configuration", {"format": "RGB888", "size": (320, 240)},
                               {"FrameRate": 30.0})
    assert [c[0] for c in camera.calls[1:]] == ["configure", "start", "stop", "close"]
    assert frame.shape == (240, 320, 3)
    assert frame[0, 0].tolist() == [10, 20, 30]  # no channel swap: already OpenCV's BGR


def test_picamera2_source_with_fake_camera_absent_or_failing_raises_retryable_errors():
    def no_camera():
        raise IndexError("list index out of range")  # what Picamera2() raises with no camera attached

    with pytest.raises(SourceUnavailable, match="Pi camera .* absent or busy"):
        Picamera2Source(camera_factory=no_camera).open()
    source = Picamera2Source(camera_factory=lambda: FakePicamera2(fail_after=1))
    source.open()
    source.read()
    with pytest.raises(SourceLost, match="timed out"):
        source.read()
    source.close()


def test_picamera2_source_with_fake_camera_survives_a_disconnect_through_the_pipeline(tiny_bundle):
    """The camera dies after 5 frames once; the run reopens it (one retry) and goes on."""
    FakePicamera2.instances = []
    cameras = iter([FakePicamera2(fail_after=5), FakePicamera2()])
    source = Picamera2Source(size=(160, 120), camera_factory=lambda: next(cameras))
    out, log = io.StringIO(), io.StringIO()
    pipeline = Pipeline(open_classifier(tiny_bundle, threads=1), source,
                        RunOptions(max_frames=8, max_retries=2, stats_interval=0), [LinesSink(out, False)], log=log)
    result = pipeline.run()
    assert result.exit_code == 0 and result.reason == "max frames reached"
    assert len(out.getvalue().splitlines()) == 8
    assert result.summary["retries"] == 1 and "retry 1/2" in log.getvalue()
    assert all(("close",) in camera.calls for camera in FakePicamera2.instances)


def test_real_picamera2_import_is_lazy_and_its_absence_is_explained():
    source = open_source("picamera2")
    with pytest.raises(UserError, match="sudo apt install python3-picamera2"):
        source.open()


def test_open_source_recognises_every_kind(video, image_folder, tmp_path):
    assert isinstance(open_source("0"), OpenCVSource) and open_source("0").live
    stream = open_source("rtsp://camera.local:554/stream")
    assert isinstance(stream, OpenCVSource) and stream.live
    file_source = open_source(str(video.path))
    assert isinstance(file_source, OpenCVSource) and not file_source.live
    file_source.open()
    assert file_source.fps == pytest.approx(video.fps)
    assert file_source.read().shape == (240, 320, 3)
    file_source.close()
    folder = open_source(str(image_folder["root"]))
    assert isinstance(folder, ImageFilesSource) and len(folder.paths) == 7
    assert isinstance(open_source(str(image_folder["good"][0])), ImageFilesSource)
    with pytest.raises(UserError, match="has no images"):
        open_source(str(tmp_path))
    garbage = tmp_path / "clip.mp4"
    garbage.write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match="not a video OpenCV can decode"):
        open_source(str(garbage)).open()


class BurstSource:
    """A live source delivering `frames` frames as fast as it can, then ending."""

    live = True
    fps = None
    name = "burst"
    current_item = None

    def __init__(self, frames: int) -> None:
        self.frames = frames
        self.sent = 0
        self.image = np.full((48, 64, 3), 128, np.uint8)

    def open(self) -> None:
        pass

    def read(self):
        if self.sent == self.frames:
            return None
        self.sent += 1
        return self.image

    def close(self) -> None:
        pass


def test_live_source_keeps_only_the_newest_frame_and_counts_the_rest_as_dropped(tiny_bundle):
    source = BurstSource(frames=300)
    out = io.StringIO()
    result = Pipeline(open_classifier(tiny_bundle, threads=1), source,
                      RunOptions(stats_interval=0), [LinesSink(out, True)], log=io.StringIO()).run()
    frames = [int(line.split('"frame": ')[1].split(",")[0]) for line in out.getvalue().splitlines()]
    assert frames == sorted(set(frames))  # never an older frame after a newer one
    assert result.summary["frames"] + result.summary["dropped"] == 300
    assert result.summary["dropped"] > 0  # capture (microseconds) outruns inference (milliseconds)


def test_stop_event_ends_a_live_run_promptly(tiny_bundle):
    source = BurstSource(frames=10**9)
    stop = threading.Event()
    out = io.StringIO()

    class StopAfterFive(io.StringIO):
        def write(self, text: str) -> int:
            if out.getvalue().count("\n") >= 5:
                stop.set()
            return out.write(text)

    pipeline = Pipeline(open_classifier(tiny_bundle, threads=1), source, RunOptions(stats_interval=0),
                        [LinesSink(StopAfterFive(), False)], log=io.StringIO(), stop=stop)
    result = pipeline.run()
    assert result.reason == "stopped" and result.exit_code == 0
    assert 5 <= result.summary["frames"] <= 7


def test_memory_retained_by_a_run_does_not_grow_with_its_length(tiny_bundle):
    """Six times the frames, the same retained Python memory: nothing per frame is kept."""
    import os
    import tracemalloc

    classifier = open_classifier(tiny_bundle, threads=1)

    def retained_after(frames: int) -> int:
        with open(os.devnull, "w") as sink:
            pipeline = Pipeline(classifier, BurstSource(frames), RunOptions(stats_interval=0),
                                [LinesSink(sink, True)], log=sink)
            tracemalloc.start()
            try:
                pipeline.run()
                return tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()

    retained_after(50)  # first-use allocations (imports, caches) out of the way
    short, long = retained_after(100), retained_after(600)
    assert long - short < 32 * 1024
