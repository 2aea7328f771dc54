"""The statistics bench reports, checked against numpy and the statistics module."""

import statistics

import numpy as np
import pytest

from edgepipe.device.bench.stats import LATENCY_KEYS, latency_summary, rate_per_s, time_windows


@pytest.fixture
def skewed_ns() -> np.ndarray:
    """Latency-like samples: a log-normal body with a long right tail, in integer ns."""
    rng = np.random.default_rng(7)
    return (rng.lognormal(mean=np.log(4e6), sigma=0.3, size=997)).astype(np.int64)


def test_percentiles_match_numpy(skewed_ns):
    summary = latency_summary(skewed_ns)
    ms = skewed_ns / 1e6
    for q in (50, 90, 95, 99):
        assert summary[f"p{q}"] == pytest.approx(np.percentile(ms, q), abs=1e-4)
    assert summary["min"] == pytest.approx(ms.min(), abs=1e-4)
    assert summary["max"] == pytest.approx(ms.max(), abs=1e-4)
    assert summary["mean"] == pytest.approx(statistics.fmean(ms), abs=1e-4)
    assert summary["std"] == pytest.approx(statistics.stdev(ms), abs=1e-4)


def test_summary_is_ordered_and_complete(skewed_ns):
    summary = latency_summary(skewed_ns)
    assert tuple(summary) == LATENCY_KEYS
    ordered = [summary[k] for k in ("min", "p50", "p90", "p95", "p99", "max")]
    assert ordered == sorted(ordered)
    assert summary["p50"] < summary["p99"]


def test_known_small_sample():
    # 1, 2, 3, 10 ms: linear interpolation between closest ranks.
    summary = latency_summary([1_000_000, 2_000_000, 3_000_000, 10_000_000])
    assert summary["p50"] == 2.5
    assert summary["p90"] == pytest.approx(7.9)
    assert summary["mean"] == 4.0
    assert summary["std"] == pytest.approx(statistics.stdev([1, 2, 3, 10]), abs=1e-4)


def test_single_sample_has_zero_spread():
    summary = latency_summary([5_000_000])
    assert summary["std"] == 0.0
    assert summary["min"] == summary["p50"] == summary["p99"] == summary["max"] == 5.0


def test_empty_samples_are_refused():
    with pytest.raises(ValueError):
        latency_summary([])


def test_rate_is_back_to_back_throughput():
    assert rate_per_s([2_000_000] * 50) == pytest.approx(500.0)
    assert rate_per_s([1_000_000, 3_000_000]) == pytest.approx(500.0)


def test_time_windows_split_a_sustained_run():
    # 8 runs of 0.25 s then 2 of 0.5 s, back to back, in 1 s windows: 4 + 4 + 2 runs.
    samples = np.full(10, 250_000_000, dtype=np.int64)
    samples[8:] = 500_000_000
    starts = np.concatenate([[0], np.cumsum(samples[:-1])])
    windows = time_windows(starts, samples, 1.0)
    assert [w["runs"] for w in windows] == [4, 4, 2]
    assert [w["start_s"] for w in windows] == [0.0, 1.0, 2.0]
    assert windows[0]["p50"] == 250.0 and windows[-1]["p50"] == 500.0
