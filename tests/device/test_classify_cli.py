"""`edgepipe classify` on real images, including unreadable ones among good ones."""

from __future__ import annotations

import json

import pytest

from edgepipe.cli import main
from edgepipe.device.preprocess import load_image
from edgepipe.device.runtime import open_classifier
from edgepipe.synthetic import SHAPES


def test_classify_reports_unreadable_images_and_classifies_the_rest(tiny_bundle, image_folder, capsys):
    paths = [str(p) for p in sorted(image_folder["good"] + image_folder["bad"])]
    code = main(["classify", str(tiny_bundle), *paths, "--json", "--top-k", "2", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["path"] for r in rows] == [str(p) for p in image_folder["good"]]
    clf = open_classifier(tiny_bundle, threads=1)
    for row in rows:
        expected = clf.classify(load_image(row["path"]), top_k=2)
        assert [(t["index"], t["label"]) for t in row["top"]] == [(p.index, p.label) for p in expected]
        assert row["top"][0]["score"] == pytest.approx(expected[0].score, abs=1e-6)
        assert set(row["latency_ms"]) == {"preprocess", "inference", "postprocess"}
        assert row["latency_ms"]["inference"] > 0
    for bad in image_folder["bad"]:
        assert f"skipped: image {bad} is not a readable image" in err
    assert "2 of 7 images could not be read" in err


def test_classify_bare_tflite_with_coral_style_labels_human_output(tiny_int8_model, image_folder, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{i} {name}\n" for i, name in enumerate(SHAPES)))
    good = str(image_folder["good"][0])
    assert main(["classify", str(tiny_int8_model["model"]), good, "--labels", str(labels), "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{good}: ") and out.split(": ")[1].split()[0] in SHAPES
    assert "on cpu" in err and "ai_edge_litert" in err


def test_classify_labels_mismatch_is_one_line(tiny_int8_model, image_folder, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    code = main(["classify", str(tiny_int8_model["model"]), str(image_folder["good"][0]), "--labels", str(labels)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().count("\n") == 0 and "labels have 2 entries but" in err
