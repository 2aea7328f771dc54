"""`bench --e2e`: the real `edgepipe run` pipeline on a real synthetic video, per stage."""

import json

import pytest


STAGES = ("capture", "preprocess", "inference", "postprocess", "handoff", "total")


def test_e2e_reports_every_stage_over_the_timed_frames(cli, tiny_bundle, video):
    code, stdout, stderr = cli("bench", tiny_bundle, "--threads", "1", "--runs", "15", "--warmup", "4",
                               "--e2e", video, "--json")
    assert code == 0, stderr
    e2e = json.loads(stdout)["e2e"]
    assert e2e["source"] == str(video) and e2e["accelerator"] == "cpu" and e2e["threads"] == 1
    assert e2e["warmup"] == 4 and e2e["frames"] == 15 == len(e2e["total_samples_ms"])
    assert e2e["stop_reason"] == "max frames reached" and e2e["dropped"] == 0
    assert tuple(e2e["stages_ms"]) == STAGES
    for stage in STAGES:
        s = e2e["stages_ms"][stage]
        assert 0 <= s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    # The stages of one frame happen inside its total (capture start to result).
    parts = sum(e2e["stages_ms"][stage]["min"] for stage in STAGES[:-1])
    assert e2e["stages_ms"]["total"]["max"] >= parts
    assert e2e["stages_ms"]["inference"]["p50"] > 0 and e2e["fps"] > 0
    # The hand-offs are what the other stages leave of each frame's total.
    means = {stage: e2e["stages_ms"][stage]["mean"] for stage in STAGES}
    assert sum(means[stage] for stage in STAGES[:-1]) == pytest.approx(means["total"], rel=0.01, abs=0.01)
    assert 0 < e2e["cpu_ms_per_frame"]


def test_e2e_human_output_has_a_stage_table(cli, tiny_bundle, video):
    code, stdout, _ = cli("bench", tiny_bundle, "--threads", "1", "--runs", "5", "--warmup", "1", "--e2e", video)
    assert code == 0
    assert f"end to end: {video} (cpu, threads=1), 5 frames after 1 warm-up" in stdout
    assert "ms of CPU per frame" in stdout
    assert [line.split()[0] for line in stdout.splitlines()[-6:]] == list(STAGES)


def test_a_video_shorter_than_the_warmup_is_a_clear_error(cli, tiny_bundle, video):
    warmup = video.frames + 5
    code, _, stderr = cli("bench", tiny_bundle, "--threads", "1", "--runs", "5", "--warmup", warmup, "--e2e", video)
    assert code == 1
    assert f"yielded only {video.frames} frames, all spent on --warmup {warmup}" in stderr


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "does not exist"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "has no images"),
    (lambda d: (d / "bad.mp4").write_bytes(b"\x00" * 64) and d / "bad.mp4", "cannot open video"),
    (lambda d: (d / "bad").mkdir() or (d / "bad" / "a.jpg").write_bytes(b"not a jpeg") and d / "bad", "yielded no frames"),
])
def test_a_source_without_frames_is_one_line_exit_1(cli, tiny_bundle, tmp_path, make, message):
    code, stdout, stderr = cli("bench", tiny_bundle, "--threads", "1", "--runs", "2", "--e2e", make(tmp_path))
    assert code == 1
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], stderr
    assert stdout == ""
