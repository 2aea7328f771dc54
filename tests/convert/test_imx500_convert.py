"""convert --imx500's side of the Sony venv, with a stand-in for that venv's python (the real one is the
e2e test's): what is handed over, the memory check that refuses a model too big for the sensor with
its numbers, and a failure in the venv as one line."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from edgepipe.convert import imx500
from edgepipe.convert.imx500_toolchain import Toolchain
from edgepipe.core.errors import UserError

STAND_IN = """
import json, pathlib, sys
job = pathlib.Path(sys.argv[-1])
assert sys.argv[1] == "-I"  # the script's folder must not shadow the standard library
spec = json.loads((job / "job.json").read_text())
n = len(__import__("numpy").load(job / "evaluate.npy"))
behaviour = json.loads(pathlib.Path(__file__).with_name("behaviour.json").read_text())
if behaviour.get("crash"):
    (job / "child.log").write_text("Traceback ...\\nImportError: Keras cannot be imported.\\n")
    sys.exit(1)
(job / "converted").mkdir()
(job / "converted" / "packerOut.zip").write_bytes(b"PK")
(job / "quantized.keras").write_bytes(b"q")
result = {"ok": True, "package": str(job / "converted" / "packerOut.zip"), "quantized_model": str(job / "quantized.keras"),
          "memory": behaviour["memory"], "levels": [[255, 0]] * n, "float_scores": [[1.0, 0.0]] * n,
          "seconds": {"quantize": 1.0, "convert": 2.0}, "versions": {"imx500-converter": "3.19.2"},
          "handed": sorted(p.name for p in job.iterdir()), "env_legacy": __import__("os").environ.get("TF_USE_LEGACY_KERAS")}
(job / "result.json").write_text(json.dumps(result))
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!{sys.executable}\n" + STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(imx500, "ensure_toolchain", lambda _=None: Toolchain(tmp_path / "venv", python, {}))
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")

    def behave(**behaviour) -> None:
        (python.parent / "behaviour.json").write_text(json.dumps(behaviour))

    return behave


@pytest.fixture(scope="module")
def model():
    import tf_keras as keras

    inputs = keras.Input((8, 8, 3))
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))


def _pixels(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)


FITS = {"used_bytes": 4_079_000, "available_bytes": 8_388_480, "fits_in_chip": True}


def test_the_venv_gets_architecture_weights_and_both_image_sets_and_none_of_edgepipes_tensorflow_settings(
        stand_in, model, tmp_path):
    stand_in(memory=FITS)
    conversion = imx500.convert_for_imx500(model, _pixels(5), _pixels(3), tmp_path / "scratch")
    result = json.loads((tmp_path / "scratch" / "imx500-job" / "result.json").read_text())
    assert {"job.json", "model.json", "weights.h5", "representative.npy", "evaluate.npy"} <= set(result["handed"])
    assert result["env_legacy"] is None
    assert conversion.memory.fits and conversion.memory.text() == "3.89 MiB of the sensor's 8.00 MiB"
    assert conversion.scores.shape == (3, 2) and conversion.scores[0, 0] == 1.0


def test_a_model_that_does_not_fit_the_sensor_is_refused_with_the_numbers(stand_in, model, tmp_path):
    stand_in(memory={"used_bytes": 9_961_472, "available_bytes": 8_388_480, "fits_in_chip": False})
    with pytest.raises(UserError, match=r"does not fit the IMX500: it needs 9\.50 MiB of the sensor's 8\.00 MiB.*"
                                        r"--alpha 0\.5"):
        imx500.convert_for_imx500(model, _pixels(5), _pixels(3), tmp_path / "scratch")


@pytest.mark.parametrize("memory, message", [
    ({"error": "imxconv-tf wrote no memory report"}, "cannot tell whether the model fits"),
    ({"used_bytes": "lots", "available_bytes": 8_388_480, "fits_in_chip": True}, "no usable numbers"),
    ({"used_bytes": 1, "available_bytes": 8_388_480, "fits_in_chip": False}, "contradicts itself"),
])
def test_a_memory_report_that_cannot_be_trusted_is_refused(stand_in, model, tmp_path, memory, message):
    stand_in(memory=memory)
    with pytest.raises(UserError, match=message):
        imx500.convert_for_imx500(model, _pixels(5), _pixels(3), tmp_path / "scratch")


def test_a_failure_in_the_venv_is_one_line_with_its_last_log_line(stand_in, model, tmp_path):
    stand_in(crash=True)
    with pytest.raises(UserError, match=r"failed in the Sony venv .*: ImportError: Keras cannot be imported\. "
                                        r"\(rerun with --verbose"):
        imx500.convert_for_imx500(model, _pixels(5), _pixels(3), tmp_path / "scratch")
