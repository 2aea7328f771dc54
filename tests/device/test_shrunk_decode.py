"""MJPEG frames decoded at a reduced size when only the model sees them (issue 26): libjpeg's
scaled inverse DCT takes the place of the preprocessing's first k x k block mean, so the model's
input barely moves, while every output that shows or keeps frames still gets them whole."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.preprocess import InputSpec, frame_block_factor, resize_to_input
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.run.regions import parse_region
from edgepipe.device.run.sources import OpenCVSource, jpeg_reduction
from edgepipe.device.sinks.lines import LinesSink
from edgepipe.device.sinks.recorder import RecorderSink
from edgepipe.synthetic import write_video


@pytest.fixture(scope="module")
def mjpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mjpeg") / "shapes.avi"
    write_video(path, frames=12, size=(640, 480), fps=10.0, fourcc="MJPG")
    return path


def read_all(source: OpenCVSource) -> list[np.ndarray]:
    source.open()
    try:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        return frames
    finally:
        source.close()


@pytest.mark.parametrize(("k", "factor"), [(1, 1), (2, 2), (3, 1), (4, 4), (6, 2), (8, 8), (16, 8)])
def test_the_reduction_is_the_largest_jpeg_scale_that_divides_the_block_factor(k, factor):
    assert jpeg_reduction(k)[0] == factor


@pytest.mark.parametrize(("size", "resize", "k"), [((640, 480), "stretch", 2), ((640, 480), "center_crop", 2),
                                                   ((1280, 720), "stretch", 3), ((224, 224), "stretch", 1),
                                                   ((1920, 1080), "center_crop", 4), ((300, 300), "stretch", 1)])
def test_the_block_factor_is_the_whole_factor_shrink_starts_with(size, resize, k):
    assert frame_block_factor(*size, InputSpec(height=224, width=224, resize=resize)) == k


def test_a_reduced_decode_gives_the_model_nearly_the_input_of_a_whole_decode(mjpeg):
    spec = InputSpec(height=224, width=224)  # 640x480 shrinks by 2 first: the JPEG is decoded at 1/2
    whole = read_all(OpenCVSource(str(mjpeg), live=False))
    source = OpenCVSource(str(mjpeg), live=False)
    source.shrink_for(lambda w, h: frame_block_factor(w, h, spec))
    shrunk = read_all(source)
    assert source.reduction == 2 and len(shrunk) == len(whole) == 12
    assert {f.shape for f in shrunk} == {(240, 320, 3)} and {f.shape for f in whole} == {(480, 640, 3)}
    differences = [np.abs(resize_to_input(a, spec).astype(int) - resize_to_input(b, spec).astype(int))
                   for a, b in zip(whole, shrunk)]
    assert max(float(d.mean()) for d in differences) < 2.0  # of 255 levels: JPEG's DCT scaling vs a 2x2 mean
    assert max(float(np.percentile(d, 99)) for d in differences) <= 12


def test_a_video_that_is_not_mjpeg_is_decoded_whole(video):
    source = OpenCVSource(str(video.path), live=False)
    source.shrink_for(lambda w, h: 2)
    frames = read_all(source)
    assert source.reduction == 1 and frames[0].shape == (240, 320, 3) and len(frames) == video.frames


@pytest.fixture(scope="module")
def mjpeg_for_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """480x400: the tiny model's 96x96 input shrinks it by 4 first, so its JPEGs decode at 1/4."""
    path = tmp_path_factory.mktemp("mjpeg-tiny") / "shapes.avi"
    write_video(path, frames=12, size=(480, 400), fps=10.0, fourcc="MJPG")
    return path


def run_pipeline(bundle: Path, video: Path, sinks: tuple = (), **options) -> tuple[OpenCVSource, list[str], str]:
    source = OpenCVSource(str(video), live=False)
    out, log = io.StringIO(), io.StringIO()
    result = Pipeline(open_classifier(bundle, threads=1), source, RunOptions(stats_interval=0, **options),
                      [LinesSink(out, True), *sinks], log=log).run()
    assert result.exit_code == 0, log.getvalue()
    labels = [json.loads(line)["label"] for line in out.getvalue().splitlines()]
    return source, labels, log.getvalue()


def test_a_run_whose_outputs_need_no_frames_decodes_them_reduced_with_the_same_answers(mjpeg_for_tiny, tiny_bundle,
                                                                                        tmp_path):
    source, labels, log = run_pipeline(tiny_bundle, mjpeg_for_tiny)
    assert source.reduction == 4 and "JPEG frames at 1/4 size: only the model sees them" in log
    whole, whole_labels, _ = run_pipeline(tiny_bundle, mjpeg_for_tiny,
                                          sinks=(RecorderSink(tmp_path / "out.mp4", False, None),))
    assert whole.reduction == 1 and len(labels) == len(whole_labels) == 12
    assert sum(a == b for a, b in zip(labels, whole_labels)) >= 11


@pytest.mark.parametrize("why", ["recorder", "roi"])
def test_outputs_that_show_or_keep_frames_and_regions_get_whole_frames(mjpeg_for_tiny, tiny_bundle, tmp_path, why):
    sinks = (RecorderSink(tmp_path / "out.mp4", False, None),) if why == "recorder" else ()
    regions = (parse_region("left=0,0,0.5,1"),) if why == "roi" else ()
    source, labels, log = run_pipeline(tiny_bundle, mjpeg_for_tiny, sinks=sinks, regions=regions)
    assert source.reduction == 1 and "JPEG frames at" not in log and len(labels) == 12


def test_packets_that_do_not_decode_as_jpeg_fall_back_to_whole_frames_from_the_start(mjpeg, monkeypatch):
    """An OpenCV build whose raw packets are not whole JPEGs: the first packet is checked at open, and the
    file is read again from its start as OpenCV decodes it; no frame is lost."""
    from edgepipe.device.run import sources

    monkeypatch.setattr(sources, "_jpeg", lambda packet, flag: None)
    source = OpenCVSource(str(mjpeg), live=False)
    source.shrink_for(lambda w, h: 2)
    frames = read_all(source)
    assert source.reduction == 1 and len(frames) == 12 and frames[0].shape == (480, 640, 3)
    assert source.lost_frames() == 0
