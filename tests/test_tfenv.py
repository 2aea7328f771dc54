"""TensorFlow says nothing unless asked (--verbose/--debug), and our own progress still shows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np


def _train_on_an_empty_folder(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    """`edgepipe train` imports TensorFlow before it finds no classes in the folder: a fast real run
    (a missing folder is reported before TensorFlow is imported: tests/test_args_before_tensorflow.py)."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("TF_", "EDGEPIPE_TF"))}
    (tmp_path / "empty").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "edgepipe", "train", str(tmp_path / "empty"), "--out",
                           str(tmp_path / "run"), "--weights", "none", *flags], capture_output=True, text=True,
                          env=env, timeout=300)


def test_tensorflow_import_is_silent_by_default_and_verbose_on_request(tmp_path: Path):
    quiet = _train_on_an_empty_folder(tmp_path)
    assert quiet.returncode == 1
    assert quiet.stderr.splitlines() == [f"edgepipe train: error: data folder {tmp_path / 'empty'} has no class "
                                         "sub-folders; put each class's images in DATA/<label>/"]
    verbose = _train_on_an_empty_folder(tmp_path, "--verbose")
    assert verbose.returncode == 1
    assert len(verbose.stderr.splitlines()) > 1  # TensorFlow's own start-up logging, then the error
    assert verbose.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]


def test_conversion_output_is_silenced_but_progress_shows(capfd):
    from edgepipe.convert.quantize import export_tflite
    from edgepipe.device.model.preprocess import InputSpec
    import tf_keras as keras

    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    pixels = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    capfd.readouterr()
    data = export_tflite(keras.Model(inputs, outputs), InputSpec(32, 32), pixels, name="PTQ")
    captured = capfd.readouterr()
    assert data[4:8] == b"TFL3"
    assert captured.out == ""
    assert "PTQ: calibrating on representative images: 8/8 img in" in captured.err
    assert "PTQ: converting: done in" in captured.err
    assert "fully_quantize" not in captured.err and "I0000" not in captured.err and "W0000" not in captured.err
