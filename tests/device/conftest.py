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
    from edgepipe.device.bundle import EDGETPU_MODEL, MANIFEST, build_manifest, load_bundle

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

