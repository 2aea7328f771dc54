"""`edgepipe evaluate` through TensorFlow (run dirs) and through the device
runtime (bundles, .tflite), and `run_files`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.device.model.preprocess import load_image
from edgepipe.device.model.classifier import open_classifier
from edgepipe.train import run_dir as rd
from edgepipe.train.device_eval import run_files


def test_evaluate_on_the_runs_split_matches_training_metrics(tiny_run, capsys):
    """The trainer scores validation on cached activations; evaluate runs the saved model on the files."""
    assert main(["evaluate", str(tiny_run), "--split", "val", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((tiny_run / rd.METRICS).read_text())
    assert result["n"] == saved["n"] == 12
    assert result["confusion"] == saved["confusion"]
    assert result["accuracy"] == saved["accuracy"]
    assert result["engine"] == "keras" and result["skipped"] == []


def test_evaluate_folder_human_output_and_out_dir(tiny_run, shapes_with_bad_files, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(tiny_run), str(shapes_with_bad_files), "--out", str(out), "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    assert "(n=64)" in text and "top-2" in text and "confusion matrix" in text
    assert "skipped 2 unreadable files" in text
    report = json.loads((out / rd.METRICS).read_text())
    assert report["n"] == 64 and sum(map(sum, report["confusion"])) == 64
    assert (out / rd.CONFUSION_PNG).read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(tiny_run), str(shapes_with_bad_files), "--out", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err


def test_evaluate_bundle_through_device_runtime(float_bundle, shapes_dataset, capsys):
    assert main(["evaluate", str(float_bundle), str(shapes_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 64 and result["engine"].startswith("tflite:") and result["engine"].endswith(":cpu")
    assert result["labels"] == ["circle", "square", "triangle", "cross"]  # the bundle's order, not the folders'
    assert [result["per_class"][k]["support"] for k in result["labels"]] == [16, 16, 16, 16]


def test_tflite_needs_labels(float_bundle, shapes_dataset, capsys):
    model = float_bundle / "model.tflite"
    assert main(["evaluate", str(model), str(shapes_dataset)]) == 1
    assert "pass --labels" in capsys.readouterr().err
    assert main(["evaluate", str(model), str(shapes_dataset), "--labels", str(float_bundle / "labels.txt"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 64


def test_run_files_scores_like_the_classifier_and_skips_unreadable(float_bundle, shapes_dataset, tmp_path):
    files = sorted(shapes_dataset.rglob("*.jpg"))[:5]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff")
    outputs = run_files(float_bundle, [files[0], broken, *files[1:]])
    scores, unreadable = outputs.scores, outputs.unreadable
    assert unreadable == [broken]
    assert scores.shape == (5, 4) and scores.dtype == np.float32
    classifier = open_classifier(float_bundle)
    for row, path in zip(scores, files):
        np.testing.assert_array_equal(row, classifier.invoke(classifier.preprocess(load_image(path))))


@pytest.mark.parametrize("args, message", [
    (["nowhere", "."], "does not exist"),
    ([".", "--split", "val"], "not a run dir, .keras model, bundle dir or .tflite"),
])
def test_evaluate_bad_model_is_one_line_error(args, message, capsys):
    assert main(["evaluate", *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    ((), "or --split val to use the run's held-out split"),
    (("photos/", "--split", "val"), "pass either DATA_DIR or --split, not both"),
])
def test_evaluate_needs_data_or_split_a_usage_error(cli, tiny_run, extra, message):
    code, _, err = cli("evaluate", tiny_run, *extra)
    assert code == 2 and message in err


def test_bare_keras_model_needs_labels(tiny_run, shapes_dataset, tmp_path, capsys):
    import shutil

    model = tmp_path / "exported.keras"
    shutil.copy(tiny_run / rd.MODEL, model)
    assert main(["evaluate", str(model), str(shapes_dataset)]) == 1
    assert "pass --labels" in capsys.readouterr().err
    assert main(["evaluate", str(model), str(shapes_dataset), "--labels", str(tiny_run / rd.LABELS), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 64


def test_evaluate_unknown_dir_reports_rejection_metrics(float_bundle, shapes_dataset, capsys):
    from edgepipe.device.model.unknown import UnknownRule
    from edgepipe.train.metrics import unknown_report

    known, unknown = shapes_dataset / "circle", sorted((shapes_dataset / "cross").glob("*.jpg"))
    assert main(["evaluate", str(float_bundle), str(shapes_dataset), "--unknown-dir", str(shapes_dataset / "cross"),
                 "--unknown", "0.9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["unknown"]
    classifier = open_classifier(float_bundle)
    in_files = sorted(p for p in shapes_dataset.rglob("*.jpg"))
    in_scores = run_files(classifier, in_files).scores
    y = np.array([classifier.labels.index(p.parent.name) for p in in_files])
    expected = unknown_report(UnknownRule("max_softmax", 0.9), in_scores, y, run_files(classifier, unknown).scores)
    assert result == pytest.approx(expected)
    assert result["n_unknown"] == 16 and result["n_in_class"] == 64 and 0 <= result["auroc"] <= 1
    assert result["accuracy_rejection_on"] <= result["accuracy_rejection_off"]
    assert known.is_dir()


def test_evaluate_unknown_dir_needs_a_threshold(float_bundle, shapes_dataset, capsys):
    assert main(["evaluate", str(float_bundle), str(shapes_dataset), "--unknown-dir", str(shapes_dataset)]) == 1
    assert "no \"unknown\" threshold to evaluate" in capsys.readouterr().err
