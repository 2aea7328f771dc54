"""Bad input is one clear line and a non-zero exit (2 for usage), never a traceback, an
`internal error` or a hang (issue 21): manifests of the wrong types or absurd sizes, a named
pipe among the images, non-finite numbers in flags."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgepipe.device.model.bundle import MANIFEST


def _bundle_with(tiny_bundle: Path, tmp_path: Path, change=None, raw: str | None = None) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    if raw is None:
        manifest = json.loads((root / MANIFEST).read_text())
        change(manifest)
        raw = json.dumps(manifest)  # NaN and Infinity as Python's json writes and reads them
    (root / MANIFEST).write_text(raw)
    return root


def _one_line(code: int, err: str, expected_code: int = 1) -> str:
    assert code == expected_code and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    return err


@pytest.mark.parametrize("field, value, says", [
    ("std", "127.5", "input std"), ("std", 0, "divides by zero"), ("std", float("nan"), "input std"),
    ("mean", None, "input mean"), ("mean", float("inf"), "input mean"), ("height", 1e9, "input height"),
    ("width", True, "input width"), ("zero_point", [1], "input zero_point"), ("channel_order", ["RGB"], "strings"),
])
def test_wrong_normalisation_values_are_refused(tiny_bundle, tmp_path, cli, shapes_dataset, field, value, says):
    root = _bundle_with(tiny_bundle, tmp_path, lambda m: m["input"].update({field: value}))
    err = _one_line(*cli("classify", root, next(shapes_dataset.rglob("*.jpg")))[::2])
    assert says in err


@pytest.mark.parametrize("change, raw, says", [
    (lambda m: m.update(labels_file=["labels.txt"]), None, "`labels_file` is"),
    (lambda m: m.update(num_labels=10**9), None, "`num_labels` is"),
    (None, '{"schema_version": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    (None, '{"num_labels": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_manifests_of_wrong_types_or_absurd_sizes_are_one_line(tiny_bundle, tmp_path, cli, shapes_dataset,
                                                                 change, raw, says):
    root = _bundle_with(tiny_bundle, tmp_path, change, raw)
    err = _one_line(*cli("classify", root, next(shapes_dataset.rglob("*.jpg")))[::2])
    assert says in err


def test_a_named_pipe_among_the_images_is_skipped_not_waited_on(tiny_bundle, tmp_path, cli, shapes_dataset):
    pipe = tmp_path / "camera.jpg"
    os.mkfifo(pipe)  # nothing ever writes to it: reading it would block for ever
    image = next(shapes_dataset.rglob("*.jpg"))
    code, out, err = cli("classify", tiny_bundle, pipe, image, "--json")
    assert code == 1 and f"{pipe} is not a regular file" in err
    assert [json.loads(line)["path"] for line in out.splitlines()] == [str(image)]


@pytest.mark.parametrize("flag", [["--roi", "a=inf,0,1,1"], ["--roi", "a=0,0,nan,1"], ["--roi", "a=0,0,1e300,1"],
                                  ["--collect", "DIR", "--collect-max-mb", "inf"],
                                  ["--collect", "DIR", "--collect-max-mb", "1e308"], ["--mqtt-rate", "nan"]])
def test_non_finite_numbers_in_flags_are_usage_errors(tiny_bundle, tmp_path, cli, video, flag):
    flag = [str(tmp_path / "c") if f == "DIR" else f for f in flag]
    code, _, err = cli("run", tiny_bundle, "--source", video.path, *flag)
    assert code == 2 and "Traceback" not in err and ("finite" in err), err
