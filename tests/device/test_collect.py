"""`run --collect`: which frames are kept, the JPEG + sidecar pairs, the rate and
disk limits, and that a slow disk never blocks the inference thread."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.sinks.collect import CollectSink, TokenBucket, collect_reason
from edgepipe.device.sinks.options import CollectOptions
from edgepipe.device.model.postprocess import Prediction
from edgepipe.device.run.results import FrameResult
from edgepipe.device.run.sink import RunInfo
from edgepipe.device.model.unknown import Verdict

LABELS = ("circle", "square", "triangle")


def result(index: int, scores, unknown: bool = False) -> FrameResult:
    scores = np.array(scores, np.float32)
    top = [Prediction(int(i), LABELS[i], float(scores[i])) for i in np.argsort(-scores)]
    frame = np.random.default_rng(index).integers(0, 256, (120, 160, 3), dtype=np.uint8)  # ~40 KB as JPEG
    verdict = Verdict(unknown, float(scores.max()))
    return FrameResult(index, 1_700_000_000.0 + index, top, {"inference": 1.0}, 10.0, None, frame, verdict, scores)


def run_info(model: Path) -> RunInfo:
    return RunInfo("test", None, str(model), "cpu", "litert", 1, LABELS, lambda reason, code: None)


def test_reasons_unknown_low_score_small_margin_and_a_sample_of_confident_frames():
    options = CollectOptions(Path("x"), below=0.5, margin=0.1, every=3)
    assert collect_reason(result(0, [0.9, 0.05, 0.05], unknown=True), options, 1) == "unknown"
    assert collect_reason(result(0, [0.45, 0.3, 0.25]), options, 1) == "low_score"
    assert collect_reason(result(0, [0.52, 0.46, 0.02]), options, 1) == "small_margin"
    assert collect_reason(result(0, [0.9, 0.05, 0.05]), options, 2) is None
    assert collect_reason(result(0, [0.9, 0.05, 0.05]), options, 3) == "sample"
    assert collect_reason(result(0, [0.9, 0.05, 0.05]), CollectOptions(Path("x")), 3) is None


def test_token_bucket_allows_the_rate_per_minute_in_bursts_of_at_most_the_rate():
    now = [0.0]
    bucket = TokenBucket(6, clock=lambda: now[0])
    assert [bucket.take() for _ in range(8)] == [True] * 6 + [False] * 2
    now[0] = 10.0  # one token a 10 s
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 1000.0  # a long pause refills to the burst size only
    assert sum(bucket.take() for _ in range(10)) == 6


def test_pairs_are_written_with_sidecars_and_the_oldest_evicted_beyond_the_budget(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"model bytes")
    root = tmp_path / "collect"
    root.mkdir()
    (root / "20000101T000000000Z-00000000.jpg").write_bytes(b"x" * 30_000)  # from an earlier run: oldest
    (root / "20000101T000000000Z-00000000.json").write_text(
        json.dumps({"time": "2000-01-01T00:00:00.000+00:00", "frame": 0, "reason": "unknown", "model": {}}))
    sink = CollectSink(CollectOptions(root, every=1, rate=1000, max_mb=0.1, min_free_mb=0))
    sink.start(run_info(model))
    for i in range(12):
        sink.emit(result(i, [0.2, 0.7, 0.1] if i % 2 else [0.9, 0.05, 0.05], unknown=bool(i % 2)))
    fields = sink.summary_fields()["collect"]
    sink.close({})
    jpegs, sidecars = sorted(root.glob("*.jpg")), sorted(root.glob("*.json"))
    assert [p.stem for p in jpegs] == [p.stem for p in sidecars]
    assert fields["saved"] + fields["dropped_queue_full"] == 12 and fields["evicted"] >= 1
    assert not (root / "20000101T000000000Z-00000000.jpg").exists()  # the oldest went first
    assert sum(p.stat().st_size for p in jpegs + sidecars) == fields["bytes"] <= 0.1 * 1024 * 1024
    newest = json.loads(sidecars[-1].read_text())
    assert newest["frame"] == int(sidecars[-1].stem.split("-")[1])
    assert newest["model"]["sha256"] == hashlib.sha256(b"model bytes").hexdigest()
    assert set(newest["scores"]) == set(LABELS) and newest["region"] is None
    assert newest["time"].startswith("2023-11-14T22:13:") and newest["time"].endswith("+00:00")
    unknown = [json.loads(p.read_text()) for p in sidecars if json.loads(p.read_text())["frame"] % 2]
    assert unknown and all(s["label"] == "unknown" and s["best"] == "square" and s["reason"] == "unknown"
                           for s in unknown)
    image = cv2.imread(str(jpegs[-1]))
    assert image.shape == (120, 160, 3)


def test_a_slow_disk_drops_and_counts_frames_instead_of_blocking_inference(tmp_path, monkeypatch):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"m")
    sink = CollectSink(CollectOptions(tmp_path / "c", every=1, rate=1000, min_free_mb=0, queue_frames=2))
    entered, release = threading.Event(), threading.Event()
    written, niceness = [], []

    def slow_write(res, reason):
        niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        entered.set()
        release.wait()
        written.append(res.index)

    monkeypatch.setattr(sink, "_write", slow_write)
    sink.start(run_info(model))
    sink.emit(result(0, [0.9, 0.05, 0.05]))
    assert entered.wait(10)  # the worker holds frame 0 on the "disk"
    for i in range(1, 10):
        sink.emit(result(i, [0.9, 0.05, 0.05]))  # returns at once although the disk is stuck
    assert sink.counts["dropped_queue_full"] == 7
    release.set()
    sink.close({})
    assert written == [0, 1, 2]
    assert niceness[0] == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)  # the writer yields the CPU


def test_nothing_is_written_when_the_disk_is_nearly_full(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"m")
    sink = CollectSink(CollectOptions(tmp_path / "c", every=1, rate=1000, min_free_mb=1e12))
    sink.start(run_info(model))
    sink.emit(result(0, [0.9, 0.05, 0.05]))
    assert sink.summary_fields()["collect"]["skipped_low_disk"] == 1
    sink.close({})
    assert list((tmp_path / "c").iterdir()) == []


def test_run_collect_end_to_end_with_the_real_interpreter(tiny_bundle, video, tmp_path, cli):
    root, stats = tmp_path / "collect", tmp_path / "stats.json"
    code, out, err = cli("run", tiny_bundle, "--source", video, "--unknown", "0.999", "--collect", root,
                         "--collect-rate", "3", "--stats-json", stats, "--json")
    assert code == 0, err
    collected = json.loads(stats.read_text())["collect"]
    kept = collected["saved"] + collected["dropped_queue_full"]
    assert 3 <= kept <= 4 and collected["rate_limited"] == video.frames - kept  # 3 at once, then one per 20 s
    sidecars = sorted(root.glob("*.json"))
    assert len(sidecars) == collected["saved"] == len(list(root.glob("*.jpg")))
    rows = {r["frame"]: r for r in map(json.loads, out.splitlines())}
    for path in sidecars:
        side = json.loads(path.read_text())
        assert side["label"] == "unknown" == rows[side["frame"]]["label"] and side["reason"] == "unknown"
        assert side["best"] == rows[side["frame"]]["top"][0]["label"]
    code, _, err = cli("run", tiny_bundle, "--source", video, "--collect-below", "0.5")
    assert code == 2 and "--collect-below needs --collect DIR" in err


def test_a_detectors_unsure_and_conflicting_frames_are_kept_and_confident_ones_sampled():
    from edgepipe.device.model.postprocess import Detection

    def detected(*found: Detection) -> FrameResult:
        return FrameResult(0, 0.0, [], {}, 0.0, detections=list(found), counts={})

    options = CollectOptions(Path("x"), below=0.7, every=5)
    sure = Detection(0, "cat", 0.9, (0, 0, 40, 40))
    assert collect_reason(detected(sure, Detection(1, "dog", 0.6, (100, 100, 140, 140))), options, 1) == "low_score"
    assert collect_reason(detected(sure, Detection(1, "dog", 0.8, (2, 2, 40, 40))), options, 1) == "conflict"
    assert collect_reason(detected(sure, Detection(0, "cat", 0.8, (2, 2, 40, 40))), options, 1) is None  # one label
    assert collect_reason(detected(sure), options, 4) is None and collect_reason(detected(sure), options, 5) == "sample"
    assert collect_reason(detected(), options, 5) == "sample"  # empty scenes teach what is not an object


def test_collected_detector_frames_carry_voc_prelabels_that_train_reads(cli, detect_bundle, raccoon_video, tmp_path):
    from edgepipe.train.detect.data import load_detection_data

    root = tmp_path / "field"
    code, out, err = cli("run", str(detect_bundle), "--source", str(raccoon_video[0]), "--json", "--accelerator",
                         "cpu", "--collect", str(root), "--collect-below", "0.999", "--collect-rate", "600")
    assert code == 0, err
    rows = {json.loads(line)["frame"]: json.loads(line) for line in out.splitlines()}
    sidecars = sorted(root.glob("*.json"))
    assert sidecars and len(sidecars) == len(list(root.glob("*.xml"))) == len(list(root.glob("*.jpg")))
    for path in sidecars:
        sidecar = json.loads(path.read_text())
        assert sidecar["task"] == "detect" and sidecar["reason"] == "low_score"
        assert sidecar["detections"] == rows[sidecar["frame"]]["detections"] and sidecar["size"] == [640, 480]
    data = load_detection_data([root], test_fraction=0.5)  # what `train --task detect field/` reads
    assert data.classes == ("raccoon",)
    read = {image.path.stem: image for image in data.train + data.test}
    assert set(read) == {p.stem for p in sidecars}
    for path in sidecars:
        sidecar, image = json.loads(path.read_text()), read[path.stem]
        boxes = np.array([d["box"] for d in sidecar["detections"]], np.float32)
        assert (image.width, image.height) == (640, 480) and image.boxes.shape == boxes.shape
        assert np.abs(image.boxes - boxes).max() <= 1.0  # VOC's inclusive 1-based corners, read back


def test_only_pairs_edgepipe_wrote_are_counted_or_evicted(tmp_path, capsys):
    """Pointing --collect at a folder of one's own photos must never delete them (issue 21)."""
    model = tmp_path / "model.tflite"
    model.write_bytes(b"model bytes")
    root = tmp_path / "photos"
    root.mkdir()
    mine = {"20000101T000000000Z-00000000.jpg": b"x" * 60_000, "20000101T000000000Z-00000000.json": b"{}",
            "holiday.jpg": b"y" * 60_000, "holiday.json": b'{"time": 1, "frame": 1, "reason": 1, "model": 1}',
            "notes.txt": b"z" * 1000}
    for name, data in mine.items():
        (root / name).write_bytes(data)
    sink = CollectSink(CollectOptions(root, every=1, rate=1000, max_mb=0.1, min_free_mb=0))
    assert "5 files (0.1 MB) there are not edgepipe's" in capsys.readouterr().err
    sink.start(run_info(model))
    for i in range(12):
        sink.emit(result(i, [0.9, 0.05, 0.05]))
    fields = sink.summary_fields()["collect"]
    sink.close({})
    assert all((root / name).read_bytes() == data for name, data in mine.items())
    assert fields["evicted"] >= 1 and fields["bytes"] <= 0.1 * 1024 * 1024


def test_an_unwritable_collect_folder_is_refused_before_the_run(tmp_path, mount_tmpfs):
    root = mount_tmpfs(tmp_path / "ro", "ro,size=1m")
    with pytest.raises(UserError, match="is not a writable folder"):
        CollectSink(CollectOptions(root))
