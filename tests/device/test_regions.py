"""`run --roi`: each named region of a frame classified on its own, in JSON lines,
human lines and the summary; regions given in pixels or fractions."""

from __future__ import annotations

import argparse
import json

import cv2
import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.device.run.regions import parse_region

RED, BLUE, GREEN = (0, 0, 230), (230, 0, 0), (0, 230, 0)  # BGR


@pytest.fixture(scope="module")
def split_video(tmp_path_factory) -> dict:
    """12 frames 320x240: the left half red, the right half blue, a green band along the bottom."""
    path = tmp_path_factory.mktemp("split") / "split.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(12):
        frame = np.zeros((240, 320, 3), np.uint8)
        frame[:, :160], frame[:, 160:], frame[200:] = RED, BLUE, GREEN
        writer.write(np.clip(frame + rng.normal(0, 8, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return {"path": path, "frames": 12}


def test_each_region_gets_its_own_label(colour_model, split_video, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    code = main(["run", str(colour_model["model"]), "--labels", str(colour_model["labels"]),
                 "--source", str(split_video["path"]), "--json", "--top-k", "2", "--stats-json", str(stats),
                 "--roi", "left=0,0,0.5,0.8", "--roi", "right=160,0,160,190", "--roi", "floor=0,205,320,35"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == split_video["frames"]
    for row in rows:
        assert list(row["regions"]) == ["left", "right", "floor"]
        assert [row["regions"][name][0]["label"] for name in ("left", "right", "floor")] == ["red", "blue", "green"]
        assert len(row["regions"]["left"]) == 2
    summary = json.loads(stats.read_text())["regions"]
    assert summary["left"] == {"roi": "0,0,0.5,0.8", "labels": {"red": 12}}
    assert summary["right"]["labels"] == {"blue": 12} and summary["floor"]["labels"] == {"green": 12}

    code = main(["run", str(colour_model["model"]), "--labels", str(colour_model["labels"]),
                 "--source", str(split_video["path"]), "--max-frames", "1", "--roi", "right=0.5,0,0.5,0.8"])
    out, _ = capsys.readouterr()
    assert code == 0 and "| right: blue" in out


def test_region_outside_the_frame_is_one_line_error(colour_model, split_video, capsys):
    code = main(["run", str(colour_model["model"]), "--labels", str(colour_model["labels"]),
                 "--source", str(split_video["path"]), "--roi", "far=400,300,50,50"])
    _, err = capsys.readouterr()
    assert code == 1 and "region far (400,300,50,50) lies outside the 320x240 frame" in err


@pytest.mark.parametrize("text, box, fractional", [
    ("door=10,20,200,150", (10, 20, 200, 150), False),
    ("left=0,0,0.5,1", (0, 0, 0.5, 1), True),
    ("a_b-1=0.25,0.25,0.5,0.5", (0.25, 0.25, 0.5, 0.5), True),
])
def test_parse_region(text, box, fractional):
    region = parse_region(text)
    assert region.box == box and region.fractional is fractional


@pytest.mark.parametrize("text", ["noequals", "bad name=1,2,3,4", "x=1,2,3", "x=1,2,0,4", "x=-1,0,2,2",
                                  "x=0.6,0,0.5,1", "x=1.5,2,30,40", "x=a,b,c,d"])
def test_parse_region_rejects(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_region(text)


def test_duplicate_region_names_are_refused(colour_model, split_video, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["run", str(colour_model["model"]), "--labels", str(colour_model["labels"]),
              "--source", str(split_video["path"]), "--roi", "a=0,0,10,10", "--roi", "a=10,10,10,10"])
    assert excinfo.value.code == 2 and "--roi names must differ: a given twice" in capsys.readouterr().err
