"""`edgepipe train` end to end on the synthetic shapes: the RUN_DIR contract,
frozen BatchNormalization, a flat model, --force, Ctrl-C and bad weights."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.train import run_dir as rd
from edgepipe.train import trainer
from edgepipe.train.metrics import classification_report

from conftest import BAD_FILES  # tests/train/conftest.py (pytest puts this folder on sys.path)


def test_run_dir_has_every_output_and_they_parse(tiny_run, shapes_with_bad_files):
    run = rd.load_run(tiny_run)
    assert run.labels == ["circle", "cross", "square", "triangle"]
    assert run.input_spec == InputSpec(96, 96)
    cfg = run.config
    assert cfg["data_dir"] == str(shapes_with_bad_files.resolve())
    assert (cfg["architecture"], cfg["alpha"], cfg["input_size"]) == ("mobilenet_v2", 0.35, 96)
    assert cfg["input"]["dtype"] == "float32" and cfg["interrupted"] is False
    assert cfg["num_skipped"] == 2 and cfg["num_train"] + cfg["num_val"] == 64
    split = run.split
    assert split["labels"] == run.labels and len(split["val"]) == cfg["num_val"] == 12
    assert all((shapes_with_bad_files / rel).is_file() for rel, _ in split["train"] + split["val"])
    skipped = (tiny_run / rd.SKIPPED).read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in skipped) == sorted(
        str(shapes_with_bad_files.resolve() / rel) for rel in BAD_FILES)
    metrics = json.loads((tiny_run / rd.METRICS).read_text())
    assert set(metrics) == set(classification_report([0], [0], ["a"]))
    assert metrics["n"] == 12 and metrics["labels"] == run.labels
    rows = list(csv.DictReader((tiny_run / rd.HISTORY).open()))
    assert [r["phase"] for r in rows] == ["head", "head", "fine_tune"]
    assert all(float(r["val_loss"]) > 0 for r in rows)
    for png in (rd.CONFUSION_PNG, rd.CURVES_PNG):
        assert (tiny_run / png).read_bytes()[:4] == b"\x89PNG"
    assert not [p.name for p in tiny_run.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_model_is_flat_with_pretrained_batchnorm_untouched(tiny_run, pretrained_weights):
    import tf_keras as keras

    model = rd.load_run(tiny_run).load_model()
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    assert model.input_shape == (None, 96, 96, 3) and model.output_shape == (None, 4)
    pretrained = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, alpha=0.35,
                                                weights=str(pretrained_weights))
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bn) > 40 and not any(layer.trainable for layer in bn)
    for layer in bn:  # gamma, beta, moving mean and variance exactly as loaded, after head AND fine-tuning
        for trained, loaded in zip(layer.get_weights(), pretrained.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(trained, loaded, err_msg=layer.name)
    scores = model.predict(np.zeros((2, 96, 96, 3), np.float32), verbose=0)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_existing_run_dir_needs_force_and_mirrored_sgd_runs(tiny_run, shapes_dataset, tiny_args, capsys, tmp_path):
    before = (tiny_run / rd.MODEL).stat().st_mtime_ns
    assert main(["train", str(shapes_dataset), "--out", str(tiny_run), *tiny_args]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (tiny_run / rd.MODEL).stat().st_mtime_ns == before
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    args = ["train", str(shapes_dataset), "--out", str(out), *tiny_args, "--fine-tune-epochs", "0", "--epochs", "1",
            "--no-augment", "--force", "--json", "--strategy", "mirrored", "--optimizer", "sgd"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_val"] == 12 and summary["skipped"] == 0 and summary["best"] == "head epoch 1"
    config = rd.load_run(out).config
    assert (config["strategy"], config["optimizer"], config["augment"]) == ("mirrored", "sgd", None)
    assert config["replicas"] >= 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [rd.MODEL, rd.LABELS, rd.CONFIG, rd.SPLIT, rd.METRICS, rd.HISTORY, rd.CONFUSION_PNG, rd.CURVES_PNG,
         rd.SKIPPED])


def test_ctrl_c_during_fine_tuning_keeps_the_best_head(shapes_dataset, tiny_args, monkeypatch, capsys, tmp_path):
    real_fit = trainer._fit

    def fit_then_interrupt(model, train, val, cfg, phase, *args):
        if phase == "fine_tune":
            raise KeyboardInterrupt
        return real_fit(model, train, val, cfg, phase, *args)

    monkeypatch.setattr(trainer, "_fit", fit_then_interrupt)
    out = tmp_path / "run"
    assert main(["train", str(shapes_dataset), "--out", str(out), *tiny_args, "--no-augment", "--epochs", "1"]) == 130
    assert "interrupted: keeping the best model so far (head epoch" in capsys.readouterr().err
    run = rd.load_run(out)
    assert run.config["interrupted"] is True and run.config["best"].startswith("head epoch")
    assert run.load_model().output_shape == (None, 4)


def test_ctrl_c_before_any_epoch_leaves_nothing(shapes_dataset, tiny_args, monkeypatch, capsys, tmp_path):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_extract", interrupt)
    out = tmp_path / "run"
    assert main(["train", str(shapes_dataset), "--out", str(out), *tiny_args]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("weights, message", [
    ("missing.h5", "does not exist"),
    ("garbage.h5", "cannot read weights file"),
])
def test_bad_weights_file_is_one_line_error(shapes_dataset, tiny_args, capsys, tmp_path, weights, message):
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    args = [a if a != "none" else str(tmp_path / weights) for a in tiny_args]
    assert main(["train", str(shapes_dataset), "--out", str(tmp_path / "run"), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("edgepipe train: error:"), err


def test_weights_of_another_width_are_refused(shapes_dataset, tiny_args, capsys, tmp_path, mobilenet_v2_weights):
    args = [a if a != "none" else str(mobilenet_v2_weights) for a in tiny_args]  # alpha 0.35 vs a 1.0 file
    assert main(["train", str(shapes_dataset), "--out", str(tmp_path / "run"), *args]) == 1
    assert "does not fit mobilenet_v2 alpha 0.35" in capsys.readouterr().err


@pytest.mark.parametrize("flag, value", [("--input-size", "64"), ("--alpha", "0.6"), ("--val-split", "1.5"),
                                         ("--optimizer", "rmsprop")])
def test_bad_arguments_exit_2(shapes_dataset, tmp_path, capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(shapes_dataset), "--out", str(tmp_path / "run"), flag, value])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_train_on_two_folders_with_a_background_class_records_them(shapes_dataset, copy_dataset, tmp_path,
                                                                     tiny_args, pretrained_weights):
    photos = copy_dataset(shapes_dataset, tmp_path / "photos", per_class=6)
    field = tmp_path / "field"
    (field / "none").mkdir(parents=True)
    for image in sorted((photos / "cross").iterdir()):
        image.rename(field / "none" / image.name)  # the crosses become "none of these"
    (photos / "cross").rmdir()
    args = [str(pretrained_weights) if a == "none" else a for a in tiny_args]
    out = tmp_path / "run"
    assert main(["train", str(photos), str(field), "--out", str(out), "--background-class", "none", *args]) == 0
    run = rd.load_run(out)
    assert run.labels == ["circle", "none", "square", "triangle"]
    assert run.config["data_dirs"] == [str(photos.resolve()), str(field.resolve())]
    assert run.config["images_per_folder"] == {str(photos.resolve()): 18, str(field.resolve()): 6}
    assert run.config["background_class"] == "none" and run.split["data_dirs"] == run.config["data_dirs"]


def test_background_class_must_be_a_class_folder(shapes_dataset, tmp_path, tiny_args, capsys):
    assert main(["train", str(shapes_dataset), "--out", str(tmp_path / "run"), "--background-class", "nothing",
                 *tiny_args]) == 1
    err = capsys.readouterr().err
    assert "--background-class 'nothing' is not a class folder" in err and err.count("\n") <= 2
    assert not (tmp_path / "run").exists()
