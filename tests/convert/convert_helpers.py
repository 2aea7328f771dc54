"""Builders shared by the convert tests and fixtures: RUN_DIRs in the layout
`edgepipe train` writes and small real Keras classifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgepipe.synthetic import SHAPES

SMALL_SIZE = 32


def write_run_dir(root: Path, model, data_dir: Path, size: int, train_per_class: int = 10) -> Path:
    """`model` and a per-class split of `data_dir` in the RUN_DIR layout."""
    from edgepipe.device.model.preprocess import InputSpec
    from edgepipe.train.run_dir import write_run_inputs

    root.mkdir(parents=True)
    model.save(root / "model.keras")
    config = {"input": InputSpec(height=size, width=size).to_json(), "data_dir": str(data_dir),
              "architecture": "test", "input_size": size, "weights": "none", "seed": 0, "epochs": 1}
    train, val = [], []
    for index, label in enumerate(SHAPES):
        files = sorted((data_dir / label).glob("*.jpg"))
        train += [[f.relative_to(data_dir).as_posix(), index] for f in files[:train_per_class]]
        val += [[f.relative_to(data_dir).as_posix(), index] for f in files[train_per_class:]]
    write_run_inputs(root, list(SHAPES), config,
                     {"data_dir": str(data_dir), "labels": list(SHAPES), "train": train, "val": val})
    return root


def small_mobilenet_like(size: int = SMALL_SIZE, classes: int = len(SHAPES), activation: str = "relu6"):
    """A flat functional MobileNetV2-shaped block (conv-BN-ReLU6, depthwise, projection, residual add,
    pooling, softmax Dense): the same op kinds as MobileNetV2, converted in seconds."""
    import tf_keras as keras

    act = (lambda: keras.layers.ReLU(6.0)) if activation == "relu6" else (lambda: keras.layers.LeakyReLU(0.1))
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = act()(keras.layers.BatchNormalization(momentum=0.5)(x))
    y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    y = act()(keras.layers.BatchNormalization(momentum=0.5)(y))
    y = keras.layers.BatchNormalization(momentum=0.5)(keras.layers.Conv2D(16, 1, use_bias=False)(y))
    x = keras.layers.Add()([x, y])
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)  # the name edgepipe's models give it
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


def fitted(model, data_dir: Path, size: int, epochs: int):
    """`model` trained briefly on every image of `data_dir`, so its predictions mean something."""
    import tf_keras as keras

    from edgepipe.device.model.preprocess import InputSpec, load_image, to_model_float

    keras.utils.set_random_seed(0)
    spec = InputSpec(height=size, width=size)
    files = sorted(data_dir.rglob("*.jpg"))
    x = np.stack([to_model_float(load_image(p), spec) for p in files])
    y = np.array([SHAPES.index(p.parent.name) for p in files])
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model
