"""`edgepipe classify` on real images, including unreadable ones among good ones."""

from __future__ import annotations

import json

import pytest

from edgepipe.cli import main
from edgepipe.device.model.preprocess import load_image
from edgepipe.device.model.classifier import open_classifier
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


def _with_edgepipe_metadata(model, out, entry: bytes):
    from edgepipe.convert.metadata import METADATA_NAME, with_metadata

    out.write_bytes(with_metadata(model.read_bytes(), {METADATA_NAME: entry}))
    return out


EMBEDDED_LABELS = [f"embedded_{name}" for name in reversed(SHAPES)]


def test_bare_model_uses_its_embedded_labels_and_input_spec(tiny_int8_model, image_folder, tmp_path, capsys):
    spec = {"height": 96, "width": 96, "channel_order": "BGR", "mean": 127.5, "std": 127.5}
    model = _with_edgepipe_metadata(tiny_int8_model["model"], tmp_path / "model.tflite",
                                    json.dumps({"labels": EMBEDDED_LABELS, "input": spec}).encode())
    clf = open_classifier(model, threads=1)
    assert clf.labels == EMBEDDED_LABELS and clf.input_spec.channel_order == "BGR"
    good = str(image_folder["good"][0])
    assert main(["classify", str(model), good, "--json", "--top-k", "1"]) == 0
    out, err = capsys.readouterr()
    row = json.loads(out)
    assert row["top"][0]["label"] == EMBEDDED_LABELS[row["top"][0]["index"]]
    assert "warning" not in err
    # An explicit --labels wins over the embedded ones.
    assert main(["classify", str(model), good, "--json", "--labels", str(tiny_int8_model["labels"])]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["top"][0]["label"] == SHAPES[row["top"][0]["index"]]


@pytest.mark.parametrize("entry", [None, b"not json", b'{"labels": [1, 2], "input": {"height": "x"}}'])
def test_bare_model_without_usable_labels_warns_once(tiny_int8_model, image_folder, tmp_path, capsys, entry):
    from edgepipe.device.model import classifier as runtime

    runtime._warned.clear()
    model = tiny_int8_model["model"] if entry is None else _with_edgepipe_metadata(
        tiny_int8_model["model"], tmp_path / "model.tflite", entry)
    good = str(image_folder["good"][0])
    assert main(["classify", str(model), good, good, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.splitlines()[0])["top"][0]["label"].startswith("class_")
    assert err.count(f"warning: {model} has no labels") == 1
    assert "pass --labels FILE" in err


def test_metadata_reader_survives_garbage():
    from edgepipe.device.model.metadata import embedded_info
    from edgepipe.device.model.modelinfo import read_metadata

    assert read_metadata(b"") == {} and read_metadata(b"\xff" * 64) == {}
    info = embedded_info(b"TFL3" * 100)
    assert info.labels is None and info.input_spec is None
