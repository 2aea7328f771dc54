"""Summary statistics of latency samples taken with `time.perf_counter_ns`.

Samples stay integer nanoseconds until summarised, so no precision is lost in
the timed loop; every number a user reads is in milliseconds. Percentiles use
numpy's default linear interpolation between the closest ranks (the same
definition numpy users and most benchmark tools report).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
LATENCY_KEYS = ("min", "mean", "std", "p50", "p90", "p95", "p99", "max")
# 0.1 microsecond: finer than perf_counter_ns jitter, coarse enough to keep JSON readable.
MS_DECIMALS = 4


def to_ms(samples_ns: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(samples_ns, dtype=np.float64) / 1e6


def latency_summary(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """min, mean, std, p50, p90, p95, p99, max in ms.

    std is the sample standard deviation (ddof=1): the runs are a sample of
    the latency distribution, not the whole of it; 0 for a single run.
    """
    ms = to_ms(samples_ns)
    if ms.size == 0:
        raise ValueError("no latency samples to summarise")
    p50, p90, p95, p99 = np.percentile(ms, PERCENTILES)
    summary = {
        "min": ms.min(),
        "mean": ms.mean(),
        "std": ms.std(ddof=1) if ms.size > 1 else 0.0,
        "p50": p50,
        "p90": p90,
        "p95": p95,
        "p99": p99,
        "max": ms.max(),
    }
    return {key: round(float(summary[key]), MS_DECIMALS) for key in LATENCY_KEYS}


def rate_per_s(samples_ns: Sequence[int] | np.ndarray) -> float:
    """Back-to-back throughput: how many of these operations fit in one second."""
    total_ns = float(np.sum(np.asarray(samples_ns, dtype=np.float64)))
    if total_ns <= 0:
        raise ValueError("no latency samples to turn into a rate")
    return round(len(samples_ns) * 1e9 / total_ns, 3)


def time_windows(
    starts_ns: Sequence[int] | np.ndarray,
    samples_ns: Sequence[int] | np.ndarray,
    window_s: float,
) -> list[dict[str, float]]:
    """Latency per consecutive time window of a sustained run.

    A board that heats up throttles its clock; comparing the first window
    with the last shows the drift that one overall p50 hides.
    """
    starts = np.asarray(starts_ns, dtype=np.int64)
    samples = np.asarray(samples_ns, dtype=np.int64)
    if starts.size == 0:
        return []
    if not window_s > 0:
        raise ValueError(f"window length {window_s} must be positive")
    window_ns = int(window_s * 1e9)
    index = (starts - starts[0]) // window_ns
    windows = []
    for w in np.unique(index):
        chosen = samples[index == w]
        ms = to_ms(chosen)
        windows.append({
            "start_s": round(float(w * window_s), 3),
            "runs": int(chosen.size),
            "mean": round(float(ms.mean()), MS_DECIMALS),
            "p50": round(float(np.percentile(ms, 50)), MS_DECIMALS),
            "p99": round(float(np.percentile(ms, 99)), MS_DECIMALS),
        })
    return windows
