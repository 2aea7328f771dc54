"""`edgepipe train --task detect`: flags, and the whole path on real photos with boxes (e2e)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepipe.cli import main


@pytest.mark.parametrize("flags, message", [
    (["--architecture", "mobilenet_v3_small"], "--architecture does not apply to --task detect"),
    (["--input-size", "300"], "must be a multiple of 32"),
])
def test_flags_a_detector_cannot_take_are_usage_errors(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "detect", str(tmp_path), "--out", str(tmp_path / "run"), *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_a_detector_size_is_not_a_classifier_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--input-size", "320"])
    assert exc.value.code == 2
    assert "between 96 and 224 for classification" in capsys.readouterr().err


def parsed_train(argv: list[str]):
    """`edgepipe train ARGV` parsed as the command line parses it (with the arguments as typed)."""
    from edgepipe.cli import build_parser

    args = build_parser().parse_args(["train", *argv])
    args.argv = argv
    return args


def test_detect_flags_reach_the_config(tmp_path):
    from edgepipe.train.cli import detect_config

    cfg = detect_config(parsed_train(["--task", "detect", "photos", "--out", str(tmp_path), "--epochs", "7",
                                      "--input-size", "256", "--no-flip", "--val-split", "0.3", "--test-split",
                                      "0.1"]))
    assert (cfg.epochs, cfg.model.input_size, cfg.augment.flip, cfg.val_fraction, cfg.test_fraction) == (
        7, 256, False, 0.3, 0.1)
    assert cfg.fine_tune_epochs == type(cfg)(data_dirs=[], out="").fine_tune_epochs  # untouched: the detector's default


def test_a_flag_typed_with_classifications_default_value_still_reaches_the_detector(tmp_path):
    from edgepipe.train.cli import detect_config
    from edgepipe.train.options import TrainConfig

    typed = TrainConfig.augment_copies  # 3, the classification default; a detector's own default differs
    cfg = detect_config(parsed_train(["--task", "detect", "photos", "--out", str(tmp_path),
                                      "--augment-copies", str(typed)]))
    assert cfg.augment_copies == typed != type(cfg)(data_dirs=[], out="").augment_copies
    assert detect_config(parsed_train(["--task", "detect", "photos", "--out", str(tmp_path)])).augment_copies == \
        type(cfg)(data_dirs=[], out="").augment_copies


@pytest.mark.e2e
def test_raccoon_train_and_convert_beat_the_spike_floor(raccoon, tmp_path, capsys):
    """Short training (a few minutes) must already beat the 2-minute spike's int8 mAP@0.5 of 0.57."""
    from edgepipe.device.inspect.report import inspect_file

    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", "--task", "detect", str(raccoon), "--out", str(run), "--epochs", "6",
                 "--fine-tune-epochs", "1", "--augment-copies", "2", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert (trained["n_train"], trained["n_val"], trained["n_test"]) == (136, 24, 40)
    for name in ("model.keras", "labels.txt", "config.json", "split.json", "metrics.json", "history.csv",
                 "training_curves.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["task"] == "detect"
    assert main(["convert", str(run), "--out", str(bundle), "--method", "ptq", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    manifest = json.loads((bundle / "bundle.json").read_text())
    assert manifest["task"] == "detect" and manifest["output"]["outputs_by_index"] == ["boxes", "classes", "scores", "count"]
    acc = manifest["accuracy"]
    assert acc["n"] == 40 and acc["int8"] >= 0.57, acc
    assert acc["float"] - acc["int8"] <= 0.05, acc
    assert summary["accuracy"]["int8"] == acc["int8"]
    assert main(["evaluate", str(bundle), str(raccoon), "--split", "test", "--json"]) == 0  # the fixed CSV split
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["photos"] == "the test part of the data set's fixed split" and evaluated["n_images"] == 40
    assert evaluated["map50"] == pytest.approx(acc["int8"], abs=1e-6)
    golden = manifest["golden"]["images"]
    assert golden and all((bundle / g["file"]).is_file() for g in golden)
    assert any(g["expected"] and g["expected"][0]["score"] > 0.3 for g in golden)
    assert "mAP@0.5" in (bundle / "MODEL_CARD.md").read_text()
    report = inspect_file(bundle / "model.tflite")
    assert report["cpu"] == report["prediction"]["expected_cpu"] == 3
    assert np.isfinite(acc["map50_95"]["int8"])
