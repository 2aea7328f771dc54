"""Several interpreters on consecutive frames (`run --workers`): results in frame
order for files and folders, never an older frame after a newer one for live
sources, a bounded number of frames in flight, and `--workers auto`'s cached
measurement. Real interpreters, real videos and images throughout."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edgepipe.device.run.autotune import cache_path, choose_workers, combinations
from edgepipe.device.run.frames import Frame
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.run.ordering import Inferred, ResultOrder
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.sinks.lines import LinesSink
from edgepipe.device.run.sources import ImageFilesSource, open_source

from test_sources import BurstSource  # tests/device (pytest puts this folder on sys.path)


def _inferred(ticket: int) -> Inferred:
    frame = Frame(ticket, np.zeros((2, 2, 3), np.uint8), 0.0, 0.0, 0.0, ticket=ticket)
    return Inferred(frame, np.zeros(3, np.float32), 0.0, 0.0)


def _tickets(results: list[Inferred]) -> list[int]:
    return [r.frame.ticket for r in results]


def test_in_order_results_wait_for_earlier_frames():
    order = ResultOrder(in_order=True, workers=2, capacity=4)
    order.put(_inferred(1))
    order.put(_inferred(2))
    assert order.take(0) == []  # frame 0 is still being inferred
    order.put(_inferred(0))
    assert _tickets(order.take(0)) == [0, 1, 2]
    assert order.take_late() == 0


def test_live_results_never_go_back_in_time_and_late_ones_are_counted():
    order = ResultOrder(in_order=False, workers=2, capacity=4)
    order.put(_inferred(1))
    assert _tickets(order.take(0)) == [1]  # no waiting for frame 0: the newest answer goes out at once
    order.put(_inferred(0))
    order.put(_inferred(3))
    assert _tickets(order.take(0)) == [3]
    assert order.take_late() == 1


def test_frames_in_flight_are_bounded_until_results_are_taken():
    order = ResultOrder(in_order=True, workers=2, capacity=3)
    assert all(order.reserve(0) for _ in range(3))
    assert not order.reserve(0)  # a fourth frame waits: memory stays bounded
    order.put(_inferred(0))
    order.take(0)
    assert order.reserve(0)


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def _run_pipeline(classifiers, source, **options) -> tuple[list[dict], dict]:
    out = io.StringIO()
    result = Pipeline(classifiers, source, RunOptions(stats_interval=0, **options), [LinesSink(out, True)],
                      log=io.StringIO()).run()
    return _json_lines(out.getvalue()), result.summary


@pytest.fixture(scope="module")
def pool(tiny_bundle):
    first = open_classifier(tiny_bundle, threads=1)
    return [first, first.replica(1), first.replica(1)]


def test_three_workers_give_a_video_every_frame_in_order_with_the_same_smoothed_scores(pool, video):
    one, _ = _run_pipeline(pool[:1], open_source(str(video.path)), smooth=0.3)
    three, summary = _run_pipeline(pool, open_source(str(video.path)), smooth=0.3)
    assert [r["frame"] for r in three] == list(range(video.frames))
    # The smoother runs at emission, in frame order, so the scores match one worker's exactly.
    assert [r["top"] for r in three] == [r["top"] for r in one]
    assert summary["workers"] == 3 and summary["threads"] == 1 and summary["dropped"] == 0


def test_workers_keep_an_image_folder_in_file_order(pool, image_folder):
    source = open_source(str(image_folder["root"]))
    assert isinstance(source, ImageFilesSource)
    rows, summary = _run_pipeline(pool, source)
    assert [r["item"] for r in rows] == [p.name for p in image_folder["good"]]
    assert summary["errors"] == 2


def test_workers_on_a_live_source_answer_only_newer_frames(pool):
    rows, summary = _run_pipeline(pool, BurstSource(frames=300))
    frames = [r["frame"] for r in rows]
    assert frames == sorted(set(frames))
    assert summary["frames"] + summary["dropped"] == 300 and summary["dropped"] > 0


def test_a_replica_is_another_interpreter_with_the_same_answers(pool, tiny_bundle):
    first, second = pool[0], pool[1]
    assert first.interpreter is not second.interpreter and second.threads == 1
    assert second.model_sha256 == first.model_sha256
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert np.array_equal(first.invoke(first.preprocess(frame)), second.invoke(second.preprocess(frame)))


def test_combinations_fill_the_cores():
    assert combinations(2, None) == [(1, 2), (2, 1)]
    assert combinations(4, None) == [(1, 4), (2, 2), (4, 1)]
    assert combinations(4, 2) == [(1, 2), (2, 2)]
    assert combinations(1, 4) == [(1, 4)]


def test_auto_measures_once_then_reads_the_cache(tiny_bundle, tmp_path):
    cache = tmp_path / "workers.json"
    base = open_classifier(tiny_bundle, threads=1)
    choice, classifiers = choose_workers(base, None, cache=cache, cores=2)
    assert not choice.cached and (choice.workers, choice.threads) in [(1, 2), (2, 1)]
    assert len(classifiers) == choice.workers and all(c.threads == choice.threads for c in classifiers)
    assert {(w, t) for w, t, _ in choice.measured} == {(1, 2), (2, 1)} and choice.per_s > 0
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 1 and next(iter(entries)).startswith(base.model_sha256)
    again, classifiers = choose_workers(base, None, cache=cache, cores=2)
    assert again.cached and (again.workers, again.threads) == (choice.workers, choice.threads)
    assert len(classifiers) == again.workers
    assert "cached measurement" in again.describe()


def test_auto_ignores_a_damaged_or_impossible_cache_entry(tiny_bundle, tmp_path):
    cache = tmp_path / "workers.json"
    base = open_classifier(tiny_bundle, threads=1)
    cache.write_text("{not json")
    choice, _ = choose_workers(base, 1, cache=cache, cores=2)
    assert not choice.cached
    data = json.loads(cache.read_text())
    key = next(iter(data["entries"]))
    data["entries"][key]["workers"] = 64  # more than these cores: not to be trusted
    cache.write_text(json.dumps(data))
    choice, _ = choose_workers(base, 1, cache=cache, cores=2)
    assert not choice.cached and choice.workers in (1, 2)


def test_run_cli_workers_and_auto(cli, tiny_bundle, video, tmp_path):
    stats = tmp_path / "stats.json"
    code, out, err = cli("run", tiny_bundle, "--source", video, "--json", "--workers", "2", "--threads", "1",
                         "--stats-json", stats)
    assert code == 0, err
    assert [json.loads(line)["frame"] for line in out.splitlines()] == list(range(video.frames))
    summary = json.loads(stats.read_text())
    assert summary["workers"] == 2 and summary["threads"] == 1
    code, out, err = cli("run", tiny_bundle, "--source", video, "--max-frames", "2")
    assert code == 0 and "--workers auto: " in err and len(out.splitlines()) == 2
    assert cache_path().is_file()


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_impossible_workers_exit_2(cli, tiny_bundle, video, value):
    code, _, err = cli("run", tiny_bundle, "--source", video, "--workers", value)
    assert code == 2 and "--workers" in err
