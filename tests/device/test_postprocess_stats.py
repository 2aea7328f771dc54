"""Top-k, threshold, smoothing, and the constant-memory latency statistics."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.device.model.postprocess import ScoreSmoother, top_k
from edgepipe.device.run.runstats import LatencyHistogram, RunStats


def test_top_k_orders_best_first_and_applies_threshold():
    scores = np.array([0.1, 0.5, 0.05, 0.3, 0.05], np.float32)
    labels = list("abcde")
    assert [(p.index, p.label) for p in top_k(scores, labels, 3)] == [(1, "b"), (3, "d"), (0, "a")]
    assert [p.label for p in top_k(scores, labels, 5, threshold=0.3)] == ["b", "d"]
    assert top_k(scores, labels, 10)[-1].score == pytest.approx(0.05)
    assert len(top_k(scores, labels, 10)) == 5


def test_smoothing_is_an_exponential_moving_average():
    smoother = ScoreSmoother(0.25)
    first = smoother.update(np.array([1.0, 0.0], np.float32))
    second = smoother.update(np.array([0.0, 1.0], np.float32))
    np.testing.assert_allclose(first, [1.0, 0.0])
    np.testing.assert_allclose(second, [0.75, 0.25])
    np.testing.assert_allclose(smoother.update(np.array([0.0, 1.0], np.float32)), [0.5625, 0.4375])
    with pytest.raises(ValueError):
        ScoreSmoother(0)


def test_histogram_percentiles_match_exact_ones_within_one_percent():
    samples = np.random.default_rng(0).lognormal(mean=3.0, sigma=0.6, size=20_000)
    histogram = LatencyHistogram()
    size_before = histogram.counts.nbytes
    for value in samples:
        histogram.add(float(value))
    assert histogram.counts.nbytes == size_before  # memory does not grow with samples
    for q in (50, 90, 99):
        assert histogram.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.01)
    summary = histogram.summary()
    assert summary["max"] == pytest.approx(samples.max(), abs=1e-3)
    assert summary["mean"] == pytest.approx(samples.mean(), abs=1e-3)


def test_run_stats_period_line_and_summary():
    now = [100.0]
    stats = RunStats(clock=lambda: now[0])
    for i in range(10):
        now[0] += 0.1
        stats.record({"capture": 1.0, "preprocess": 2.0, "inference": 20.0 + i, "postprocess": 0.1, "total": 30.0})
    stats.drop(3)
    line = stats.period_line()
    assert line.startswith("stats: 10.0 fps | capture p50 1.0") and line.endswith("dropped 3")
    assert stats.current_fps == pytest.approx(10.0)
    summary = stats.summary(reason="end of source")
    assert summary["frames"] == 10 and summary["fps"] == pytest.approx(10.0) and summary["dropped"] == 3
    assert summary["first_result_s"] == pytest.approx(0.1)
    assert summary["latency_ms"]["inference"]["p50"] == pytest.approx(24.0, rel=0.01)
    assert summary["reason"] == "end of source"
    assert stats.period_line() == "stats: 0.0 fps | no frames | dropped 0"


def test_top_k_breaks_ties_by_the_lower_class_index_as_argmax_does_for_every_k():
    """Evaluate, verify and the golden set take argmax: run and classify must name the class they name."""
    labels = list("abcd")
    grid = np.stack(np.meshgrid(*[np.arange(3, dtype=np.float32)] * 4, indexing="ij"), -1).reshape(-1, 4)
    for scores in grid:  # every vector of 4 scores from 3 levels: 81, most of them with ties
        expected = sorted(range(4), key=lambda i: (-scores[i], i))
        for k in (1, 2, 3, 4, 5):
            assert [p.index for p in top_k(scores, labels, k)] == expected[:k], (scores, k)
    assert top_k(np.array([0.2, 0.1, 0.35, 0.35], np.float32), labels, 1)[0].label == "c"  # argpartition said "d"
    big = np.zeros(1001, np.float32)
    big[[7, 500, 999]] = 0.5
    assert [p.index for p in top_k(big, [str(i) for i in range(1001)], 2)] == [7, 500]
