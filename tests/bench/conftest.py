"""Bench results measured once per session on the shared tiny model, so the
schema, CSV, compare and plot tests read real bench output without timing the
model again each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgepipe.cli import main

RUNS = 20
WARMUP = 3


@pytest.fixture(scope="session")
def measured() -> dict[str, int]:
    """--runs and --warmup of the session's bench results."""
    return {"runs": RUNS, "warmup": WARMUP}


@pytest.fixture(scope="session")
def bench_files(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path) -> dict[str, Path]:
    """Two real bench results: the bundle at threads 1 and 2 (JSON + CSV), and the bare .tflite at 1 thread."""
    root = tmp_path_factory.mktemp("bench")
    files = {"bundle": root / "bundle.json", "csv": root / "bundle.csv", "tflite": root / "tflite.json"}
    common = ["--runs", str(RUNS), "--warmup", str(WARMUP)]
    assert main(["bench", str(tiny_bundle), *common, "--threads", "1,2", "--out", str(files["bundle"]),
                 "--csv", str(files["csv"])]) == 0
    assert main(["bench", str(tiny_bundle / "model.tflite"), *common, "--threads", "1",
                 "--out", str(files["tflite"])]) == 0
    return files


@pytest.fixture(scope="session")
def bundle_report(bench_files: dict[str, Path]) -> dict:
    return json.loads(bench_files["bundle"].read_text())
