"""`edgepipe bench compare`: several bench JSON files side by side.

Rows are model x device x accelerator x threads x workers, in the order given; every
row is also expressed as a ratio to the first, so "the Edge TPU is 9x faster
than 4 CPU threads" is read off, not computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .plot import LatencySeries
from .report import SCHEMA, render_table
from edgepipe.core.errors import UserError

COMPARE_SCHEMA = "edgepipe.bench-compare/1"


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"bench result {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable JSON file ({exc}); pass files written by `edgepipe bench --out`") from None
    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        found = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise UserError(f"{path} is not an edgepipe bench result (schema {found!r}, expected {SCHEMA!r})")
    if not report.get("results"):
        raise UserError(f"{path} holds no measured configuration (every accelerator was skipped)")
    return report


def _path_tail(path: str, parts: int) -> str:
    return "/".join(Path(path).parts[-parts:])


def model_names(reports: list[dict[str, Any]], files: list[str] | None = None) -> list[str]:
    """A name per report that tells it apart: the bundle's or model's name; when two reports on one
    device share it (two folders called bundle/), the shortest tail of their paths that differs,
    and when the paths are the same too (one bundle benched twice), the JSON file's name."""
    keys = [(r["model_name"], r["environment"].get("hostname")) for r in reports]
    names = []
    for i, report in enumerate(reports):
        twins = [j for j, key in enumerate(keys) if key == keys[i]]
        paths = [reports[j]["model"] for j in twins]
        if len(twins) == 1:
            names.append(report["model_name"])
        elif len(set(paths)) == len(paths):
            depth = next(n for n in range(2, 64) if len({_path_tail(p, n) for p in paths}) == len(paths)
                         or n >= max(len(Path(p).parts) for p in paths))
            names.append(_path_tail(report["model"], depth))
        else:
            names.append(f"{report['model_name']} ({Path(files[i]).name})" if files else f"{report['model_name']} #{i + 1}")
    return names


def compare_rows(reports: list[dict[str, Any]], files: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per measured configuration of each report; `files` (the JSON paths) name twins."""
    rows = []
    for report, name in zip(reports, model_names(reports, files)):
        for result in report["results"]:
            rows.append({
                "model": name,
                "device": report["environment"].get("hostname"),
                "accelerator": result["accelerator"],
                "threads": result["threads"],
                "workers": result.get("workers", 1),  # results saved before --workers had one
                "p50_ms": result["latency_ms"]["p50"],
                "p99_ms": result["latency_ms"]["p99"],
                "fps": result["inferences_per_s"],
                "peak_rss_mb": result["peak_rss_mb"],
                "samples_ms": result.get("samples_ms"),
            })
    first = rows[0]
    for row in rows:
        row["p50_ratio"] = round(row["p50_ms"] / first["p50_ms"], 3)
        row["fps_ratio"] = round(row["fps"] / first["fps"], 3)
    return rows


def row_label(row: dict[str, Any]) -> str:
    workers = f" w={row['workers']}" if row["workers"] > 1 else ""
    return f"{row['model']} @{row['device']} {row['accelerator']} t={row['threads']}{workers}"


def format_comparison(rows: list[dict[str, Any]]) -> str:
    table = render_table(
        ["model", "device", "accelerator", "threads", "workers", "p50 ms", "p99 ms", "FPS", "peak RSS MB",
         "p50 vs row 1", "FPS vs row 1"],
        [
            [r["model"], r["device"], r["accelerator"], r["threads"], r["workers"], r["p50_ms"], r["p99_ms"], r["fps"],
             r["peak_rss_mb"], f"{r['p50_ratio']:.2f}x", f"{r['fps_ratio']:.2f}x"]
            for r in rows
        ],
    )
    return table + ("\n(p50 vs row 1 below 1 is faster than the first row; FPS = back-to-back inferences "
                    "per second, all workers together)")


def comparison_json(rows: list[dict[str, Any]], files: list[str]) -> dict[str, Any]:
    return {
        "schema": COMPARE_SCHEMA,
        "files": files,
        "rows": [{k: v for k, v in row.items() if k != "samples_ms"} for row in rows],
    }


def comparison_series(rows: list[dict[str, Any]]) -> list[LatencySeries]:
    missing = [row_label(r) for r in rows if not r["samples_ms"]]
    if missing:
        raise UserError(f"cannot plot {missing[0]}: its JSON has no samples_ms; re-run `edgepipe bench --out`")
    return [LatencySeries(row_label(r), r["samples_ms"]) for r in rows]
