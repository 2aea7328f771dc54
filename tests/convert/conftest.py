"""Fixtures for the convert tests: real RUN_DIRs in the layout `edgepipe train`
writes, real exported .tflite models, and a stand-in
`edgetpu_compiler` (the real one is x86-64 Linux only)."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from convert_helpers import SMALL_SIZE, fitted, small_mobilenet_like, write_run_dir

STAND_IN_COMPILER = Path(__file__).resolve().parent / "stand_in_edgetpu_compiler.py"


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, shapes_dataset: Path) -> Path:
    """A RUN_DIR around a trained small flat model (32x32, 4 shapes; 40 train / 24 held-out images)."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = fitted(small_mobilenet_like(), shapes_dataset, SMALL_SIZE, epochs=30)
    return write_run_dir(tmp_path_factory.mktemp("runs") / "small", model, shapes_dataset, SMALL_SIZE)


@pytest.fixture(scope="session")
def mobilenet_v2_export(tiny_int8_model: dict) -> Path:
    """convert's default int8 export (static batch 1, uint8 I/O, per-tensor Dense) of conftest's
    MobileNetV2 (alpha 0.35, 96x96): the session's shared tiny model, not a second conversion."""
    return tiny_int8_model["model"]


@pytest.fixture(scope="session")
def small_int8_export(tmp_path_factory: pytest.TempPathFactory, small_run: Path) -> Path:
    """convert's default int8 export of the small run's model: what the compiler tests feed the stand-in."""
    from edgepipe.convert.quantize import export_tflite, representative_pixels
    from edgepipe.train.run_dir import load_run

    run = load_run(small_run)
    pixels = representative_pixels(run.split_files("train"), run.input_spec, 8)
    path = tmp_path_factory.mktemp("exports") / "model.tflite"
    path.write_bytes(export_tflite(run.load_model(), run.input_spec, pixels, "uint8"))
    return path


@pytest.fixture
def stand_in_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put a stand-in `edgetpu_compiler` first on PATH; returns a function choosing its behaviour
    (success, partial, zero, not_quantized, crash, hang: see the script)."""
    bin_dir = tmp_path / "stand_in_bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(f"#!{sys.executable}\n" + STAND_IN_COMPILER.read_text())
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def choose(mode: str) -> Path:
        monkeypatch.setenv("EDGETPU_STAND_IN", mode)
        return script

    return choose


@pytest.fixture
def no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with neither edgetpu_compiler nor docker (as on these machines and on every Pi)."""
    import shutil

    keep = [d for d in os.environ["PATH"].split(os.pathsep)
            if not any(Path(d, tool).exists() for tool in ("edgetpu_compiler", "docker"))]
    monkeypatch.setenv("PATH", os.pathsep.join(keep))
    assert shutil.which("edgetpu_compiler") is None and shutil.which("docker") is None
