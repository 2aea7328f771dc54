"""The RUN_DIR reader and the PNG writers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.train import run_dir as rd
from edgepipe.train.metrics import classification_report
from edgepipe.train.plots import save_confusion_matrix, save_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_confusion_matrix_png(tmp_path):
    report = classification_report([0, 1, 2, 2], [0, 2, 2, 2], ["a", "b", "c"])
    out = save_confusion_matrix(report, tmp_path / "cm.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert out.stat().st_size > 2000


def test_training_curves_png(tmp_path):
    history = [{"phase": "head", "loss": 1.0, "val_loss": 1.1, "accuracy": 0.5, "val_accuracy": 0.4},
               {"phase": "fine_tune", "loss": 0.5, "val_loss": 0.7, "accuracy": 0.8, "val_accuracy": 0.7}]
    out = save_training_curves(history, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_training_curves_legend_names_the_phase_line(tmp_path, monkeypatch):
    from edgepipe.train import plots

    legends = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (
        legends.append([[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]), save(fig, path)))
    history = [{"phase": "head", "loss": 1.0, "val_loss": 1.1}] * 2 + [{"phase": "fine_tune", "loss": 0.5, "val_loss": 0.7}]
    save_training_curves(history, tmp_path / "curves.png")
    assert legends[0][0] == ["loss", "val_loss", "fine_tune starts"]


def _fake_run(tmp_path, with_model=True):
    import tf_keras as keras

    root = tmp_path / "run"
    root.mkdir()
    if with_model:
        inputs = keras.Input((8, 8, 3))
        outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
        keras.Model(inputs, outputs).save(root / rd.MODEL)
    (root / rd.LABELS).write_text("cat\ndog\n")
    (root / rd.CONFIG).write_text(json.dumps({"input": InputSpec(8, 8).to_json(), "seed": 1}))
    (root / rd.SPLIT).write_text(json.dumps({"data_dir": str(tmp_path / "data"), "labels": ["cat", "dog"],
                                              "train": [["cat/1.jpg", 0]], "val": [["dog/2.jpg", 1]]}))
    return root


def test_load_run_reads_every_field_and_model(tmp_path):
    run = rd.load_run(_fake_run(tmp_path))
    assert run.labels == ["cat", "dog"]
    assert run.input_spec == InputSpec(8, 8)
    assert run.config["seed"] == 1
    assert run.split_files("val") == [(tmp_path / "data" / "dog" / "2.jpg", 1)]
    model = run.load_model()
    assert model.predict(np.zeros((1, 8, 8, 3), np.float32), verbose=0).shape == (1, 2)
    # A path to the model file inside the run dir is accepted too.
    assert rd.load_run(run.model_path).root == run.root


def test_load_run_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        rd.load_run(tmp_path / "nope")
    with pytest.raises(UserError, match="no model.keras") as exc:
        rd.load_run(_fake_run(tmp_path, with_model=False))
    assert "\n" not in str(exc.value)


def test_reading_a_run_and_metrics_import_no_tensorflow():
    code = ("import sys; import edgepipe.train.run_dir, edgepipe.train.metrics, edgepipe.train.plots; "
            "assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
