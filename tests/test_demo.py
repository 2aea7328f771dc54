"""`edgepipe demo` end to end, offline: every stage runs through the real CLI
and the int8 model keeps its accuracy (the foundation issue's promise)."""

from __future__ import annotations

import json

import pytest

from edgepipe.cli import main


@pytest.mark.e2e
def test_demo_runs_every_stage_offline_and_int8_keeps_float_accuracy(tmp_path, capsys):
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--json"]) == 0
    summary = json.loads((work / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out) == summary

    assert summary["heldout_n"] == 80  # 20% of 4 x 100 drawn images
    assert summary["accuracy_float"] >= 0.9
    assert summary["accuracy_int8"] >= summary["accuracy_float"] - 0.02
    assert summary["accuracy_ptq"] is not None and summary["accuracy_qat"] is not None
    assert summary["edgetpu_cpu"] == 0 and summary["edgetpu_mapped"] > 50
    assert summary["video_accuracy"] >= 0.8
    assert summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    assert summary["run_fps"] > 0
    assert (work / "bundle" / "bundle.json").is_file()
    assert 0 < summary["model_bytes"] < 4 * 1024 * 1024


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_demo_refuses_to_overwrite_an_existing_workdir_without_force(tmp_path, capsys, task):
    work = tmp_path / "demo"
    work.mkdir()
    (work / "keep.txt").write_text("user data")
    assert main(["demo", "--task", task, "--workdir", str(work)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (work / "keep.txt").read_text() == "user data"


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_demo_force_never_replaces_a_folder_it_did_not_make(tmp_path, capsys, task):
    work = tmp_path / "photos"
    work.mkdir()
    (work / "holiday.jpg").write_bytes(b"precious")
    assert main(["demo", "--task", task, "--workdir", str(work), "--force"]) == 1
    assert "not made by `edgepipe demo`" in capsys.readouterr().err
    assert (work / "holiday.jpg").read_bytes() == b"precious"


def test_demo_device_stages_measure_a_process_without_tensorflow(tiny_bundle, tmp_path):
    """The demo's own process holds TensorFlow (gigabytes); bench must not count it."""
    import resource

    import tensorflow as tf

    from edgepipe.demo_stages import device_stage

    tf.constant(1.0) + 1.0  # TensorFlow loaded and initialised here, as in the demo
    own_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = tmp_path / "bench.json"
    device_stage("bench", ["bench", str(tiny_bundle), "--runs", "5", "--warmup", "1", "--out", str(out)])
    result = json.loads(out.read_text())["results"][0]
    assert result["latency_ms"]["p50"] > 0
    assert 0 < result["peak_rss_mb"] < own_peak_mb / 2, (result["peak_rss_mb"], own_peak_mb)


def test_demo_table_says_each_thing_once():
    from edgepipe.demo import _table

    summary = {"workdir": "/tmp/demo", "weights": "backbone weights: ImageNet, the copy shipped with edgepipe (x.h5)",
               "accuracy_float": 0.95, "accuracy_int8": 0.94, "accuracy_ptq": None, "accuracy_qat": None,
               "model_bytes": 2_000_000, "float32_model_bytes": None, "edgetpu_mapped": 60, "edgetpu_cpu": 0,
               "threads": 2, "latency_p50_ms": 3.0, "latency_p99_ms": 4.0, "bench_peak_rss_mb": 80.0,
               "run_fps": 50.0, "video_accuracy": 0.9, "timings_s": {"train_s": 30.0}}
    row = next(line for line in _table(summary).splitlines() if "ImageNet" in line)
    assert row.split()[:3] == ["backbone", "weights", "ImageNet,"] and row.count("backbone") == 1
