"""What `run` says about itself is true and said one way: the same score text as
`classify`, one wording for interpreters x threads, and a per-frame rate that is a
rate over completed frames, never one near-zero interval."""

from __future__ import annotations

import json
import re

import pytest

from edgepipe.device.run.runstats import FPS_WINDOW_FRAMES, RunStats

LATENCY = {"capture": 1.0, "preprocess": 1.0, "inference": 5.0, "postprocess": 0.1, "total": 8.0}


def test_run_prints_the_scores_classify_prints(cli, tiny_bundle, shapes_dataset):
    image = sorted((shapes_dataset / "circle").glob("*.jpg"))[0]
    code, classified, _ = cli("classify", tiny_bundle, image, "--threads", "1")
    assert code == 0
    code, ran, _ = cli("run", tiny_bundle, "--source", image.parent, "--max-frames", "1", "--threads", "1")
    assert code == 0
    scores = classified.split(": ", 1)[1].split("  [")[0]
    assert re.fullmatch(r"(\w+ \d\.\d{3}(, )?)+", scores)  # three decimals
    assert f": {scores}  [" in ran.splitlines()[0]


def test_interpreters_and_threads_are_described_one_way(cli, tiny_bundle, shapes_dataset):
    code, out, err = cli("run", tiny_bundle, "--source", shapes_dataset / "circle", "--max-frames", "4",
                         "--workers", "2", "--threads", "1", "--json")
    assert code == 0
    load_line = err.splitlines()[0]
    assert ", 2 interpreters x 1 thread, loaded in" in load_line and "(s)" not in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4 and all(r["fps"] > 0 for r in rows)  # the first frame too: a rate since the start


def test_per_frame_rate_is_over_a_window_of_results_never_one_interval():
    now = [100.0]
    stats = RunStats(clock=lambda: now[0])
    now[0] += 0.5
    stats.record(LATENCY)
    assert stats.current_fps == pytest.approx(2.0)  # one result 0.5 s after the start, not 0.0
    for _ in range(FPS_WINDOW_FRAMES * 2):  # two workers: results leave in pairs, 0.2 s apart, 1 us within a pair
        now[0] += 0.2
        stats.record(LATENCY)
        now[0] += 1e-6
        stats.record(LATENCY)
        assert stats.current_fps < 20.0  # never 1 / 1 us
    assert stats.current_fps == pytest.approx(10.0, rel=0.05)  # 2 results every 0.2 s
