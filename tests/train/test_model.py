"""The classifier graph: flat, BN frozen, Edge-TPU-friendly V3, and where fine-tuning cuts it."""

from __future__ import annotations

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.train.model import backbone_layers, boundary_tensor, build_classifier, top_block, unfreeze_top
from edgepipe.train.options import ModelConfig


@pytest.fixture(scope="module")
def keras():
    import tf_keras

    return tf_keras


@pytest.fixture(scope="module")
def v2(keras):
    return build_classifier(ModelConfig(alpha=0.35, input_size=96, weights="none"), 3)


def test_v2_is_one_flat_model_with_a_regularised_softmax_head(v2, keras):
    assert not [layer for layer in v2.layers if isinstance(layer, keras.Model)]
    assert [layer.name for layer in v2.layers[-3:]] == ["features", "dropout", "predictions"]
    assert v2.get_layer("predictions").kernel_regularizer is not None
    assert not any(layer.trainable for layer in backbone_layers(v2))
    assert v2.get_layer("predictions").trainable


def test_fine_tune_cut_extends_to_a_single_tensor_boundary(v2, keras):
    top = top_block(v2, 11)
    assert top[0].name == "block_16_expand" and boundary_tensor(v2, top).name.startswith("block_15_add")
    # 12 would cut block 15 between its residual add and its branch: the cut moves to block 14's output.
    top = top_block(v2, 12)
    assert top[0].name == "block_15_expand" and boundary_tensor(v2, top).name.startswith("block_14_add")
    assert boundary_tensor(v2, []).name.startswith("out_relu")


def test_unfreezing_never_unfreezes_batchnorm(keras):
    model = build_classifier(ModelConfig(alpha=0.35, input_size=96, weights="none"), 3)
    top = top_block(model, 11)
    assert unfreeze_top(model, top) == 4  # expand, depthwise, project, Conv_1
    for layer in top:
        assert layer.trainable == (not isinstance(layer, keras.layers.BatchNormalization) and bool(layer.weights))
    # Frozen BN runs in inference mode even inside fit (training=True): features do not depend on the batch.
    features = keras.Model(model.input, model.get_layer("features").output)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 96, 96, 3)).astype(np.float32)
    np.testing.assert_allclose(features(x, training=True), features(x, training=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features(x[:1], training=True), features(x, training=False)[:1], rtol=1e-4, atol=1e-5)


def test_v3_small_is_minimalistic_and_flat(keras):
    model = build_classifier(ModelConfig(architecture="mobilenet_v3_small", alpha=0.75, input_size=96,
                                         weights="none"), 5)
    assert not [layer for layer in model.layers if isinstance(layer, keras.Model)]
    names = " ".join(layer.name.lower() for layer in model.layers)
    assert "hard_swish" not in names and "hard_sigmoid" not in names and "rescaling" not in names
    assert model.output_shape == (None, 5)


def test_input_size_outside_range_is_user_error():
    with pytest.raises(UserError, match="outside 96..224"):
        build_classifier(ModelConfig(input_size=64, weights="none"), 3)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Keras' download fails as on a machine without internet: an empty Keras cache and a
    proxy on a closed local port (urllib reads https_proxy on every request)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")


def test_imagenet_takes_the_shipped_backbone_without_trying_the_network(offline, keras, caplog, capfd):
    from edgepipe.train.model import SHIPPED_BACKBONES, resolve_weights

    shipped = SHIPPED_BACKBONES[("mobilenet_v2", 1.0)]
    cfg, note = resolve_weights(ModelConfig(alpha=1.0, input_size=96, weights="imagenet"))
    assert cfg.weights == str(shipped) and shipped.is_file()
    assert note == "backbone weights: ImageNet, the copy shipped with edgepipe (mobilenet_v2_1.0_224_no_top.h5)"
    assert "Downloading" not in capfd.readouterr().err  # Keras' download line never shows
    with caplog.at_level("WARNING"):
        model = build_classifier(cfg, 3)
    assert "`rows` is not in" not in caplog.text  # 96 is one of Keras' ImageNet sizes
    import h5py

    with h5py.File(shipped, "r") as f:
        kernel = np.asarray(f["Conv1"]["Conv1"]["kernel:0"])
    np.testing.assert_array_equal(model.get_layer("Conv1").get_weights()[0], kernel)


def test_imagenet_offline_without_a_shipped_backbone_names_the_shipped_file(offline):
    from edgepipe.train.model import SHIPPED_BACKBONES, resolve_weights

    with pytest.raises(UserError) as error:
        resolve_weights(ModelConfig(alpha=0.35, input_size=96, weights="imagenet"))
    message = str(error.value)
    assert "cannot download the ImageNet weights for mobilenet_v2 alpha 0.35" in message
    assert str(SHIPPED_BACKBONES[("mobilenet_v2", 1.0)]) in message and "serve only mobilenet_v2 alpha 1" in message
    assert "\n" not in message
