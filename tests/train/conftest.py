"""Fixtures of the train stage's tests: small odd-image folders and one
trained tiny run shared by the tests that only read it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgepipe.cli import main

TINY = ["--input-size", "96", "--alpha", "0.35", "--weights", "none", "--epochs", "2",
        "--fine-tune-epochs", "1", "--batch-size", "16"]


BAD_FILES = {"circle/zero.jpg": b"", "square/broken.png": b"\x89PNG\r\n\x1a\nnot really"}


@pytest.fixture(scope="session")
def shapes_with_bad_files(tmp_path_factory: pytest.TempPathFactory, shapes_dataset: Path) -> Path:
    """The shapes plus a zero-byte JPEG and a corrupt PNG (BAD_FILES)."""
    root = _copy_dataset(shapes_dataset, tmp_path_factory.mktemp("shapes_bad"))
    for rel, data in BAD_FILES.items():
        (root / rel).write_bytes(data)
    return root


@pytest.fixture(scope="session")
def pretrained_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MobileNetV2 alpha 0.35 backbone weights file whose BatchNormalization holds non-trivial
    statistics (as a real pretrained file does), so a test can see whether training moved them."""
    import tf_keras as keras

    keras.utils.set_random_seed(5)
    backbone = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, alpha=0.35, weights=None)
    rng = np.random.default_rng(5)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.8, 1.2, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_0.35_no_top.h5"
    backbone.save_weights(path)
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, shapes_with_bad_files: Path, pretrained_weights: Path) -> Path:
    """A run dir trained for 2+1 epochs on the shapes from `pretrained_weights` (checks plumbing, not accuracy)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = [str(pretrained_weights) if a == "none" else a for a in TINY]
    assert main(["train", str(shapes_with_bad_files), "--out", str(out), *args]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_args() -> list[str]:
    """`edgepipe train` flags for a seconds-long run on the shapes."""
    return list(TINY)


@pytest.fixture(scope="session")
def copy_dataset():
    """copy(src, dst, per_class=None): a writable copy of a dataset, optionally the first images of each class."""
    return _copy_dataset


def _copy_dataset(src: Path, dst: Path, per_class: int | None = None) -> Path:
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        (dst / folder.name).mkdir(parents=True, exist_ok=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, dst / folder.name / image.name)
    return dst


@pytest.fixture
def odd_images(tmp_path: Path) -> dict[str, Path]:
    """Real files of every awkward kind the data scan must handle."""
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = tmp_path / name
        files[name].write_bytes(data)

    put("gray.png", cv2.imencode(".png", colour[..., 0])[1].tobytes())
    rgba = np.dstack([colour, np.full((40, 60), 128, np.uint8)])
    put("rgba.png", cv2.imencode(".png", rgba)[1].tobytes())
    put("deep.png", cv2.imencode(".png", colour.astype(np.uint16) * 257)[1].tobytes())
    put("upper.JPG", cv2.imencode(".jpg", colour)[1].tobytes())
    put("photo.webp", cv2.imencode(".webp", colour)[1].tobytes())
    put("photo.bmp", cv2.imencode(".bmp", colour)[1].tobytes())
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(colour[..., ::-1]).convert("CMYK").save(buffer, "JPEG")
    put("cmyk.jpg", buffer.getvalue())
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    Image.fromarray(colour[..., ::-1]).save(buffer, "JPEG", exif=exif)
    put("exif_rotated.jpg", buffer.getvalue())
    jpeg = cv2.imencode(".jpg", colour)[1].tobytes()
    put("truncated.jpg", jpeg[: len(jpeg) // 3])
    put("empty.jpg", b"")
    put("text.png", b"this is not an image\n")
    return files


@pytest.fixture(scope="session")
def float_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle around a tiny float32 .tflite classifier (32x32, labels in SHAPES order, not sorted).

    Seconds to build, unlike an int8 conversion: enough to exercise evaluate's device-runtime path.
    """
    import json

    import tensorflow as tf
    import tf_keras as keras

    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.preprocess import InputSpec
    from edgepipe.synthetic import SHAPES

    keras.utils.set_random_seed(1)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(len(SHAPES), activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    tflite = tf.lite.TFLiteConverter.from_keras_model(keras.Model(inputs, outputs)).convert()
    root = tmp_path_factory.mktemp("bundles") / "float"
    root.mkdir()
    (root / CPU_MODEL).write_bytes(tflite)
    (root / LABELS).write_text("".join(f"{s}\n" for s in SHAPES))
    manifest = build_manifest(root, labels=list(SHAPES), input_spec=InputSpec(32, 32),
                              output={"dtype": "float32", "scale": 0.0, "zero_point": 0,
                                      "num_classes": len(SHAPES), "activation": "softmax"},
                              models={"cpu": CPU_MODEL})
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root
