"""Fixtures of the device tests: copies of the shared tiny model/bundle that a
test may damage, and a real TFLite model that is not an image classifier."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture
def bundle_copy(tmp_path: Path, tiny_bundle: Path) -> Path:
    """A private copy of `tiny_bundle`, for tests that tamper with it."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def mark_as_compiled(model: Path, out: Path) -> Path:
    """The tiny model with the Edge TPU custom-op code appended: what the runtime
    looks for before it creates an interpreter (no compiler exists here)."""
    out.write_bytes(model.read_bytes() + b"edgetpu-custom-op")
    return out


@pytest.fixture
def edgetpu_bundle(bundle_copy: Path) -> Path:
    """`tiny_bundle` plus a model_edgetpu.tflite marked as compiled, with valid hashes."""
    from edgepipe.device.model.bundle import EDGETPU_MODEL, MANIFEST, build_manifest, load_bundle

    mark_as_compiled(bundle_copy / "model.tflite", bundle_copy / EDGETPU_MODEL)
    bundle = load_bundle(bundle_copy, verify=False)
    manifest = dict(bundle.manifest)
    manifest["models"] = {"cpu": "model.tflite", "edgetpu": EDGETPU_MODEL}
    manifest["files"] = build_manifest(
        bundle_copy, labels=bundle.labels, input_spec=bundle.input_spec, output={}, models={}
    )["files"]
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    return bundle_copy


@pytest.fixture
def compiled_model(tmp_path: Path, tiny_int8_model: dict) -> Path:
    return mark_as_compiled(tiny_int8_model["model"], tmp_path / "model_edgetpu.tflite")


@pytest.fixture(scope="session")
def vector_model(tmp_path_factory: pytest.TempPathFactory, tiny_int8_model: dict) -> Path:
    """A real float TFLite model whose input is a 10-vector (not an image)."""
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    path = tmp_path_factory.mktemp("vector") / "vector.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory, shapes_dataset: Path) -> dict:
    """Five real JPEGs plus a truncated JPEG and a text file posing as one."""
    root = tmp_path_factory.mktemp("images")
    good = sorted(shapes_dataset.rglob("*.jpg"))[::12][:5]
    for i, src in enumerate(good):
        shutil.copy(src, root / f"{i:02d}.jpg")
    data = good[0].read_bytes()
    (root / "03_truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "zz_notes.jpg").write_text("not an image\n")
    return {"root": root, "good": sorted(root.glob("0[0-4].jpg")),
            "bad": [root / "03_truncated.jpg", root / "zz_notes.jpg"]}



FAKE_LIBEDGETPU_C = Path(__file__).resolve().parent / "fake_libedgetpu.c"
FAKE_BEHAVIOURS = {"working": 0, "crashing": 1, "hanging": 2}


@pytest.fixture(scope="session")
def fake_libedgetpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"working"|"crashing"|"hanging": a directory holding that stand-in libedgetpu.so.1}, compiled
    here with gcc from fake_libedgetpu.c; point LD_LIBRARY_PATH at one (the loader's own setting)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in libedgetpu (.ci/run installs gcc)")
    import subprocess

    dirs = {}
    for name, number in FAKE_BEHAVIOURS.items():
        out = tmp_path_factory.mktemp(f"libedgetpu_{name}")
        subprocess.run([compiler, "-shared", "-fPIC", "-O1", f"-DBEHAVIOUR={number}", f'-DBEHAVIOUR_NAME="{name}"',
                        "-o", str(out / "libedgetpu.so.1"), str(FAKE_LIBEDGETPU_C)], check=True)
        dirs[name] = out
    return dirs


@pytest.fixture
def golden_edgetpu_bundle(tmp_path: Path, golden_bundle: Path) -> Path:
    """`golden_bundle` plus a model_edgetpu.tflite (the CPU model marked as compiled), hashes valid."""
    from bundle_helpers import rehash
    from edgepipe.device.model.bundle import EDGETPU_MODEL

    root = Path(shutil.copytree(golden_bundle, tmp_path / "golden_edgetpu"))
    mark_as_compiled(root / "model.tflite", root / EDGETPU_MODEL)
    rehash(root, models={"cpu": "model.tflite", "edgetpu": EDGETPU_MODEL})
    return root


@pytest.fixture(scope="session")
def constant_answer_model(tmp_path_factory: pytest.TempPathFactory, golden_bundle: Path) -> Path:
    """A real int8 96x96 model that answers the class golden_bundle expects least often, whatever the image:
    an Edge TPU model whose answers differ from the expected ones."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    expected = [int(np.argmax(e["expected"])) for e in json.loads((golden_bundle / "bundle.json").read_text())["golden"]["images"]]
    rare = int(np.argmin(np.bincount(expected, minlength=4)))
    inputs = keras.Input((96, 96, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(4, activation="softmax", kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant([4.0 if i == rare else 0.0 for i in range(4)]))
    model = keras.Model(inputs, dense(pooled))

    def representative():
        for value in (-1.0, 0.0, 1.0):
            yield [np.full((1, 96, 96, 3), value, np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    path = tmp_path_factory.mktemp("constant") / "constant.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 frames 160x120 at 10 fps: 30 s when paced with --realtime, longer than the tests that use it."""
    from edgepipe.synthetic import write_video

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, frames=300, size=(160, 120), fps=10.0)
    return path


@pytest.fixture(scope="session")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real float TFLite classifier whose answer is known: the frame's dominant colour
    (red, green or blue), from global average pooling and fixed weights. The tiny shapes
    model has random weights, so it cannot tell two halves of a frame apart; this can."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(pooled))
    dense.set_weights([np.eye(3, dtype=np.float32) * 10.0, np.zeros(3, np.float32)])  # RGB in, RGB out
    root = tmp_path_factory.mktemp("colour_model")
    (root / "colour.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    (root / "labels.txt").write_text("red\ngreen\nblue\n")
    return {"model": root / "colour.tflite", "labels": root / "labels.txt"}
