"""Latency distributions as a PNG (`bench --plot`, `bench compare --plot`).

matplotlib is an optional extra (`edgepipe[plot]`) that a Pi rarely needs, so
it is imported only here, only when a plot is asked for, and its absence is
reported before any measuring starts.
"""

from __future__ import annotations

import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.errors import MissingExtraError
from edgepipe.core.files import atomic_write_bytes

# Above this max/min ratio a linear axis squeezes the fast rows (Edge TPU) into a line.
LOG_SCALE_RATIO = 20


@dataclass(frozen=True)
class LatencySeries:
    label: str
    samples_ms: list[float]
    windows: list[dict] | None = None


def require_matplotlib() -> None:
    """Fail fast without importing it: an import this early would inflate the peak RSS bench reports."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError("matplotlib", "plot")


def _horizontal(version: str) -> dict[str, object]:
    """boxplot's `vert` became `orientation` in matplotlib 3.10 (and `vert` is deprecated since)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}


def save_latency_plot(series: list[LatencySeries], path: Path, title: str) -> None:
    """Box plots (whiskers at p1/p99, p50 marked) per configuration, plus
    p50 over time for sustained runs, written atomically to `path`."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sustained = [s for s in series if s.windows]
    panels = 2 if sustained else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 1.2 + 0.55 * len(series) + 3.2 * (panels - 1)), squeeze=False)
    ax = axes[0][0]
    ax.boxplot(
        [s.samples_ms for s in series],
        **_horizontal(matplotlib.__version__),
        whis=(1, 99),
        showfliers=True,
        flierprops={"markersize": 2, "alpha": 0.4},
        medianprops={"color": "tab:red"},
    )
    ax.set_yticks(range(1, len(series) + 1), [s.label for s in series])
    ax.invert_yaxis()
    lows = [min(s.samples_ms) for s in series]
    highs = [max(s.samples_ms) for s in series]
    if min(lows) > 0 and max(highs) / min(lows) > LOG_SCALE_RATIO:
        ax.set_xscale("log")
    ax.set_xlabel("latency (ms); box p25-p75, red line p50, whiskers to p1/p99")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if sustained:
        drift = axes[1][0]
        for s in sustained:
            drift.plot([w["start_s"] for w in s.windows], [w["p50"] for w in s.windows], marker="o", label=s.label)
        drift.set_xlabel("time since the timed runs started (s)")
        drift.set_ylabel("p50 per window (ms)")
        drift.grid(alpha=0.3)
        drift.legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
