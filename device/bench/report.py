"""Bench results for people (aligned tables) and spreadsheets (CSV).

The JSON report is the source of truth; these are views of it, so a table
and the JSON it came from can never disagree.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

from .plot import LatencySeries
from .stats import LATENCY_KEYS

# Bump on any change a reader of old files would misread (docs/commands/bench.md documents it).
SCHEMA = "edgepipe.bench/1"

CSV_COLUMNS = (
    "model", "accelerator", "threads", "workers", "backend", "backend_version", "load_ms", "first_inference_ms",
    "warmup", "runs", *(f"{key}_ms" for key in LATENCY_KEYS), "inferences_per_s", "peak_rss_mb",
)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Right-aligned columns (numbers line up), first column left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [row[0].ljust(widths[0])] + [v.rjust(w) for v, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def describe_environment(env: dict[str, Any]) -> str:
    machine = env.get("board") or env.get("cpu") or env.get("machine")
    line = f"{env.get('hostname')}: {machine}, {env.get('cores_available')} cores, {env.get('os')}, Python {env.get('python')}"
    if env.get("edgetpu_runtime"):
        line += f", Edge TPU runtime {env['edgetpu_runtime']}"
    return line


def format_report(report: dict[str, Any]) -> str:
    """The human summary of one `edgepipe bench` report."""
    lines = [f"model {report['model']} on {describe_environment(report['environment'])}"]
    rows = []
    for r in report["results"]:
        lat = r["latency_ms"]
        rows.append([
            r["accelerator"], r["threads"], r.get("workers", 1), f"{r['backend']} {r['backend_version']}", r["load_ms"],
            r["first_inference_ms"], r["runs"], lat["min"], lat["p50"], lat["p90"], lat["p99"], lat["max"],
            f"{lat['mean']:.3f}±{lat['std']:.3f}", r["inferences_per_s"], r["peak_rss_mb"],
        ])
    lines.append(render_table(
        ["accelerator", "threads", "workers", "backend", "load ms", "first ms", "runs", "min", "p50", "p90", "p99", "max",
         "mean±std ms", "inf/s", "peak RSS MB"],
        rows,
    ))
    for skip in report.get("skipped", []):
        lines.append(f"skipped {skip['accelerator']}: {skip['reason']}")
    for r in report["results"]:
        lines.extend(_sustained_lines(r))
    if report.get("e2e"):
        lines.append(format_e2e(report["e2e"]))
    return "\n".join(lines)


def _sustained_lines(result: dict[str, Any]) -> list[str]:
    windows = result.get("windows")
    if not windows:
        return []
    first, last = windows[0], windows[-1]
    before, after = result["thermal"]["before"], result["thermal"]["after"]
    return [
        f"sustained {result['accelerator']} threads={result['threads']}: p50 {first['p50']:.3f} ms in the first "
        f"window, {last['p50']:.3f} ms in the last ({last['p50'] / first['p50']:.2f}x) over {len(windows)} windows; "
        f"SoC {_temperature(before)} -> {_temperature(after)}, throttled {_throttle(before)} -> {_throttle(after)}"
    ]


def _temperature(snapshot: dict[str, Any]) -> str:
    value = snapshot.get("temperature_c")
    return "n/a" if value is None else f"{value:.1f} C"


def _throttle(snapshot: dict[str, Any]) -> str:
    state = snapshot.get("throttled")
    return "n/a" if state is None else state["raw"]


def format_e2e(e2e: dict[str, Any]) -> str:
    head = (
        f"end to end: {e2e['source']} ({e2e['accelerator']}, threads={e2e['threads']}"
        + (f", workers={e2e['workers']}" if e2e.get("workers", 1) > 1 else "") + "), "
        f"{e2e['frames']} frames after {e2e['warmup']} warm-up, "
        + ("FPS n/a (one frame)" if e2e["fps"] is None else f"{e2e['fps']:.2f} FPS")
    )
    total_mean = e2e["stages_ms"]["total"]["mean"]
    rows = [
        [stage, s["p50"], s["p90"], s["p99"], s["max"], s["mean"],
         f"{100 * s['mean'] / total_mean:.0f}%" if total_mean > 0 else "-"]
        for stage, s in e2e["stages_ms"].items()
    ]
    cpu = e2e.get("cpu_ms_per_frame")
    if cpu is not None:
        head += f", {cpu:.2f} ms of CPU per frame (all threads, warm-up included)"
    return head + "\n" + render_table(["stage", "p50 ms", "p90", "p99", "max", "mean", "of total"], rows)


def csv_text(report: dict[str, Any]) -> str:
    """One row per configuration, the summary numbers only (samples stay in the JSON)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in report["results"]:
        row = {key: r.get(key) for key in CSV_COLUMNS}
        row["model"] = report["model"]
        row.update({f"{key}_ms": r["latency_ms"][key] for key in LATENCY_KEYS})
        writer.writerow(row)
    return out.getvalue()


def report_series(report: dict[str, Any]) -> list[LatencySeries]:
    """What `bench --plot` draws: each configuration's timed runs (and the e2e total per frame)."""
    series = [
        LatencySeries(f"{r['accelerator']} t={r['threads']}" + (f" w={r['workers']}" if r.get("workers", 1) > 1 else ""),
                      r["samples_ms"], r.get("windows"))
        for r in report["results"]
    ]
    e2e = report.get("e2e")
    if e2e:
        series.append(LatencySeries(f"e2e total ({e2e['accelerator']} t={e2e['threads']})", e2e["total_samples_ms"]))
    return series
