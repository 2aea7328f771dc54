"""`edgepipe run` end to end in-process on real video files and images with the
real interpreter: ordering, limits, outputs, overwrite protection, bad sources."""

from __future__ import annotations

import json

import cv2
import pytest


JSON_KEYS = {"frame", "ts", "label", "top", "latency_ms", "fps"}
STAGES = {"capture", "preprocess", "inference", "postprocess", "total"}


def test_video_file_every_frame_in_order_with_json_and_stats(cli, tiny_bundle, video, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code, out, err = cli("run", tiny_bundle, "--source", video.path, "--json", "--top-k", "3",
                          "--stats-json", stats, "--threads", "1")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(video.frames))
    for row in rows:
        assert set(row) == JSON_KEYS and set(row["latency_ms"]) == STAGES
        assert len(row["top"]) == 3 and set(row["top"][0]) == {"index", "label", "score"}
        assert row["latency_ms"]["total"] >= row["latency_ms"]["inference"] > 0
    summary = json.loads(stats.read_text())
    assert summary["frames"] == video.frames and summary["dropped"] == 0
    assert summary["reason"] == "end of source" and summary["exit_code"] == 0
    assert summary["latency_ms"]["inference"]["p99"] >= summary["latency_ms"]["inference"]["p50"] > 0
    assert summary["source"] == str(video.path) and summary["accelerator"] == "cpu"
    assert f"summary: {video.frames} frames" in err and "(end of source)" in err


def test_max_frames_threshold_and_human_lines(cli, tiny_bundle, video, capsys):
    code, out, err = cli("run", tiny_bundle, "--source", video.path, "--max-frames", "3", "--threshold", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and all("(nothing above 1)" in line for line in lines)
    assert lines[0].startswith("frame 0: ") and "fps]" in lines[0]
    assert "(max frames reached)" in err


def test_record_writes_annotated_video_and_never_overwrites(cli, tiny_bundle, video, tmp_path, capsys):
    out_video = tmp_path / "annotated.mp4"
    code, _, _ = cli("run", tiny_bundle, "--source", video.path, "--record", out_video, "--max-frames", "10")
    assert code == 0
    capture = cv2.VideoCapture(str(out_video))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    capture.release()
    assert len(frames) == 10 and frames[0].shape == (240, 320, 3)
    assert not list(tmp_path.glob(".*partial*"))
    before = out_video.stat().st_mtime_ns
    code, _, err = cli("run", tiny_bundle, "--source", video.path, "--record", out_video)
    assert code == 1 and "already exists; pass --force" in err
    assert out_video.stat().st_mtime_ns == before


def test_realtime_paces_a_file_to_its_frame_rate(cli, tiny_bundle, video, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code, out, _ = cli("run", tiny_bundle, "--source", video.path, "--realtime", "--json", "--stats-json", stats)
    assert code == 0
    summary = json.loads(stats.read_text())
    assert summary["duration_s"] >= (video.frames - 1) / video.fps
    assert summary["frames"] + summary["dropped"] == video.frames


def test_image_folder_source_skips_unreadable_and_exits_nonzero(cli, tiny_bundle, image_folder, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code, out, err = cli("run", tiny_bundle, "--source", image_folder["root"], "--json", "--stats-json", stats)
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["item"] for row in rows] == [p.name for p in sorted(image_folder["good"])]
    summary = json.loads(stats.read_text())
    assert summary["errors"] == 2 and summary["frames"] == 5
    assert err.count("skipped: image") == 2


def test_glob_source(cli, tiny_bundle, image_folder, capsys):
    code, out, _ = cli("run", tiny_bundle, "--source", image_folder["root"] / "0[0-2].jpg", "--json")
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = cli("run", tiny_bundle, "--source", image_folder["root"] / "0[0-2].jpg")
    assert [line.split(":")[0] for line in out.splitlines()] == [
        f"frame {i} 0{i}.jpg" for i in range(3)]


@pytest.mark.parametrize("source, message", [
    ("no/such/video.mp4", "source no/such/video.mp4 does not exist"),
    ("/dev/video97", "camera /dev/video97 does not exist"),
])
def test_missing_sources_are_named_in_one_line(cli, tiny_bundle, capsys, source, message):
    code, out, err = cli("run", tiny_bundle, "--source", source)
    assert code == 1 and out == ""
    assert message in err and err.strip().count("\n") == 0


def test_absent_camera_is_retried_then_exits_nonzero_with_summary(cli, tiny_bundle, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code, out, err = cli("run", tiny_bundle, "--source", "9", "--max-retries", "1", "--stats-json", stats)
    assert code == 1 and out == ""
    assert "cannot open camera 9: absent or busy; retry 1/1" in err
    assert "gave up after 1 retries" in err and "summary: 0 frames" in err
    summary = json.loads(stats.read_text())
    assert summary["reason"] == "source lost" and summary["retries"] == 1


def test_display_without_a_screen_warns_and_keeps_running(cli, tiny_bundle, video, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out, err = cli("run", tiny_bundle, "--source", video.path, "--display", "--max-frames", "2")
    assert code == 0 and len(out.splitlines()) == 2
    assert "--display ignored: no display" in err


def test_display_with_headless_opencv_turns_itself_off(cli, tiny_bundle, video, capsys, monkeypatch):
    monkeypatch.setenv("DISPLAY", ":99")
    code, out, err = cli("run", tiny_bundle, "--source", video.path, "--display", "--max-frames", "2")
    assert code == 0 and len(out.splitlines()) == 2
    assert "--display turned off: OpenCV cannot open a window" in err and "--display ignored" not in err


def test_bad_arguments_exit_2(cli, tiny_bundle):
    code, _, err = cli("run", tiny_bundle, "--size", "640by480")
    assert code == 2 and "is not a size like 640x480" in err