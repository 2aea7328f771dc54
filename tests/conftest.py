"""Fixtures shared by every stage's tests.

../shared (real photos, ImageNet weights) is optional: tests that need it skip
with a reason when it is absent. A tiny real int8 TFLite classifier and a
bundle around it are built once per session from synthetic shapes, so the
device, convert and deploy tests exercise real interpreters without training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgepipe.synthetic import SHAPES, write_dataset, write_detection_dataset
from edgepipe.core.tfenv import configure_tensorflow

import raccoon_data

configure_tensorflow()  # before any test imports TensorFlow

SHARED = Path(os.environ.get("EDGEPIPE_SHARED", Path(__file__).resolve().parents[2] / "shared"))
FLOWERS12 = SHARED / "datasets" / "flowers12" / "train"
MOBILENET_V2_WEIGHTS = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
RACCOON = SHARED / "datasets" / "raccoon"
CORAL_TEST_DATA = SHARED / "coral-test-data" / "104342d"


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _private_cache(_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --workers auto` caches its measurement under $XDG_CACHE_HOME: never the user's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(_session_cache))


@pytest.fixture(scope="session")
def flowers12() -> Path:
    if not FLOWERS12.is_dir():
        pytest.skip(f"real photos not present: {FLOWERS12} (../shared beside the checkout)")
    return FLOWERS12


@pytest.fixture(scope="session")
def mobilenet_v2_weights() -> Path:
    if not MOBILENET_V2_WEIGHTS.is_file():
        pytest.skip(f"ImageNet weights not present: {MOBILENET_V2_WEIGHTS} (../shared beside the checkout)")
    return MOBILENET_V2_WEIGHTS


@pytest.fixture(scope="session")
def raccoon() -> Path:
    """200 real photos with raccoon boxes: VOC per image and a fixed CSV split."""
    if not (RACCOON / "train_labels.csv").is_file():
        pytest.skip(f"real photos with boxes not present: {RACCOON} (../shared beside the checkout)")
    return RACCOON


@pytest.fixture(scope="session")
def coral_test_data() -> Path:
    """Coral's published models at test_data commit 104342d (see ../shared/README.md)."""
    if not CORAL_TEST_DATA.is_dir():
        pytest.skip(f"Coral's test data not present: {CORAL_TEST_DATA} (../shared beside the checkout)")
    return CORAL_TEST_DATA


@pytest.fixture(scope="session")
def shapes_detection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic 256x256 scenes of circles, squares and triangles, a VOC file beside each image."""
    root = tmp_path_factory.mktemp("shapes_detection")
    write_detection_dataset(root, images=40, seed=5)
    return root


@pytest.fixture(scope="session")
def postprocess_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real .tflite ending in TFLite_Detection_PostProcess (tests/detector_model.py), built in seconds."""
    from detector_model import build_postprocess_model

    path = tmp_path_factory.mktemp("detector") / "detector.tflite"
    path.write_bytes(build_postprocess_model())
    return path


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 16 synthetic 96x96 JPEGs."""
    root = tmp_path_factory.mktemp("shapes")
    write_dataset(root, per_class=16, size=96, seed=3)
    return root


def _tiny_float_model(input_size: int, classes: int):
    """A small MobileNetV2-shaped tf_keras classifier with random weights."""
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((input_size, input_size, 3))
    backbone = keras.applications.MobileNetV2(
        input_tensor=inputs, include_top=False, alpha=0.35, weights=None, pooling="avg"
    )
    outputs = keras.layers.Dense(classes, activation="softmax")(backbone.output)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="session")
def tiny_int8_model(tmp_path_factory: pytest.TempPathFactory, shapes_dataset: Path) -> dict:
    """A real full-int8 (uint8 I/O) TFLite MobileNetV2 classifier, 96x96, 4 labels; random weights.

    Exported exactly as `edgepipe convert` exports (static batch 1, per-tensor
    Dense), and built once per session: the device, bench, convert (inspect)
    and deploy tests all share this one conversion, the slowest set-up there is.
    Returns {"model": Path, "labels": Path, "float_model": keras model}.
    """
    from edgepipe.convert.quantize import export_tflite
    from edgepipe.device.model.preprocess import InputSpec, load_image, resize_to_input

    spec = InputSpec(height=96, width=96)
    model = _tiny_float_model(96, len(SHAPES))
    pixels = np.stack([resize_to_input(load_image(p), spec) for p in sorted(shapes_dataset.rglob("*.jpg"))[:32]])
    root = tmp_path_factory.mktemp("tiny_model")
    (root / "model.tflite").write_bytes(export_tflite(model, spec, pixels, "uint8"))
    (root / "labels.txt").write_text("".join(f"{s}\n" for s in SHAPES))
    return {"model": root / "model.tflite", "labels": root / "labels.txt", "float_model": model}


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_int8_model: dict) -> Path:
    """A valid bundle directory around `tiny_int8_model` (no Edge TPU model)."""
    import json
    import shutil

    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.preprocess import InputSpec

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tiny_int8_model["model"]))
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    spec = InputSpec(height=96, width=96).with_tensor("uint8", *inp["quantization"])
    root = tmp_path_factory.mktemp("bundles") / "tiny"
    root.mkdir()
    shutil.copy(tiny_int8_model["model"], root / CPU_MODEL)
    shutil.copy(tiny_int8_model["labels"], root / LABELS)
    manifest = build_manifest(
        root,
        labels=list(SHAPES),
        input_spec=spec,
        output={"dtype": "uint8", "scale": out["quantization"][0], "zero_point": out["quantization"][1],
                "num_classes": len(SHAPES), "activation": "softmax"},
        models={"cpu": CPU_MODEL},
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


@dataclass(frozen=True)
class Video:
    """A real video file; usable wherever a path is (str(), os.fspath())."""

    path: Path
    frames: int
    fps: float

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Video:
    """A real 40-frame 320x240 MP4 of drawn shapes at 25 fps (a camera for `run`, bench and services)."""
    from edgepipe.synthetic import write_video

    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    truth = write_video(path, frames=40, size=(320, 240), fps=25.0)
    return Video(path, len(truth), 25.0)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """`edgepipe ARGV` in-process -> (exit code, stdout, stderr); argparse's exits count as exit codes."""
    from edgepipe.cli import main

    def run(*argv) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def mount_tmpfs():
    """mount_tmpfs(path, options) -> path: a real tmpfs (a full disk, a read-only mount), unmounted
    after the test. Mounting needs root/CAP_SYS_ADMIN; where it is not allowed the test skips, saying so."""
    import subprocess

    mounted: list[Path] = []

    def mount(path: Path, options: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                              text=True)
        if made.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {made.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def golden_bundle(tmp_path_factory: pytest.TempPathFactory, tiny_bundle: Path, shapes_dataset: Path) -> Path:
    """`tiny_bundle` plus a golden set as convert writes it: 8 shapes images (2 per class) with
    the CPU model's own device-runtime scores as the expected answers."""
    import shutil

    from bundle_helpers import rehash

    from edgepipe.convert.golden import select_golden, write_golden
    from edgepipe.train.device_eval import run_files

    root = Path(shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("bundles") / "golden"))
    files = sorted(shapes_dataset.rglob("*.jpg"))
    labels = np.array([SHAPES.index(p.parent.name) for p in files])
    outputs = run_files(root, files)
    scores, unreadable = outputs.scores, outputs.unreadable
    assert unreadable == []
    block = write_golden(root, files, labels, scores, select_golden(labels, 8, seed=0),
                         {"model": "model.tflite", "backend": "ai_edge_litert", "backend_version": "test"})
    rehash(root, golden=block)
    return root


@pytest.fixture(scope="session")
def raccoon_detector() -> dict[str, Path]:
    """{"model", "labels"} of the trained raccoon detector."""
    model, labels = raccoon_data.DETECT_SAMPLE / "model.tflite", raccoon_data.DETECT_SAMPLE / "labels.txt"
    if not model.is_file() or not labels.is_file():
        pytest.skip(f"the trained raccoon detector is not present: {model} (EDGEPIPE_DETECT_SAMPLE)")
    return {"model": model, "labels": labels}


@pytest.fixture(scope="session")
def detect_bundle(tmp_path_factory: pytest.TempPathFactory, raccoon_detector: dict[str, Path]) -> Path:
    """A detection bundle (`"task": "detect"`) around the raccoon detector."""
    import json
    import shutil

    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.modelinfo import read_model_info
    from edgepipe.device.model.preprocess import InputSpec

    root = tmp_path_factory.mktemp("bundles") / "raccoon"
    root.mkdir()
    shutil.copy(raccoon_detector["model"], root / CPU_MODEL)
    shutil.copy(raccoon_detector["labels"], root / LABELS)
    info = read_model_info(root / CPU_MODEL)
    tensor = info.tensors[info.inputs[0]]
    spec = InputSpec(height=320, width=320).with_tensor(tensor.dtype, tensor.scale, tensor.zero_point)
    manifest = build_manifest(root, labels=["raccoon"], input_spec=spec, models={"cpu": CPU_MODEL}, task="detect",
                              output={"task": "detect", "postprocess": "TFLite_Detection_PostProcess",
                                      "outputs_by_index": ["boxes", "classes", "scores", "count"]})
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


@pytest.fixture(scope="session")
def raccoon_video(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[tuple[int, int, int, int]]]]:
    """A short video of the first 5 raccoon test photos (the detector finds each at 0.9 or more) held 4
    frames each, and each frame's true boxes."""
    path = tmp_path_factory.mktemp("raccoon-video") / "raccoons.mp4"
    return path, raccoon_data.write_raccoon_video(path, photos=5, hold=4)


@pytest.fixture(scope="session")
def raccoon_long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """75 s of the same 5 raccoon photos at 10 fps (150 frames each): a camera for served runs."""
    path = tmp_path_factory.mktemp("raccoon-long") / "raccoons.mp4"
    raccoon_data.write_raccoon_video(path, photos=5, hold=150)
    return path


@pytest.fixture(scope="session")
def detect_golden_bundle(tmp_path_factory: pytest.TempPathFactory, detect_bundle: Path) -> Path:
    """`detect_bundle` with a golden set of 3 raccoon test photos (the boxes its CPU model finds)."""
    return raccoon_data.with_detect_golden(detect_bundle, tmp_path_factory.mktemp("detect-golden"))
