"""`bench compare` never shows two different measurements under one name."""

from __future__ import annotations

from edgepipe.device.bench.compare import model_names


def report(model: str, host: str = "pi") -> dict:
    from pathlib import Path

    return {"model": model, "model_name": Path(model).name, "environment": {"hostname": host}}


def test_unique_names_stay_short():
    assert model_names([report("/a/bundle"), report("/b/model.tflite")]) == ["bundle", "model.tflite"]


def test_same_name_on_different_devices_is_told_apart_by_the_device_column():
    assert model_names([report("/a/bundle", "pi"), report("/a/bundle", "laptop")]) == ["bundle", "bundle"]


def test_two_bundle_folders_get_the_path_tail_that_differs():
    names = model_names([report("/work/flowers/v1/bundle"), report("/work/flowers/v2/bundle"), report("/x/model.tflite")])
    assert names == ["v1/bundle", "v2/bundle", "model.tflite"]


def test_one_bundle_benched_twice_is_named_by_its_json_file():
    names = model_names([report("bundle"), report("bundle")], ["runs/before.json", "runs/after.json"])
    assert names == ["bundle (before.json)", "bundle (after.json)"]
