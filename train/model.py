"""The classifier: an ImageNet MobileNet backbone and a small softmax head, as
ONE flat functional tf_keras model.

Flat (the application built on our Input tensor, not nested as a layer)
because tfmot's quantize_model cannot quantize a model inside a model.
BatchNormalization is frozen for good: with small data, updating BN
statistics hurts, and the shared ImageNet weights have BN folded into the
convolutions, so BN in training mode destroys them.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import replace
from pathlib import Path

import edgepipe
from edgepipe.core.errors import UserError

from .keras_io import keras
from .options import ARCHITECTURES, MAX_INPUT_SIZE, MIN_INPUT_SIZE, ModelConfig

FEATURES_LAYER = "features"  # the global-average-pooled backbone output
HEAD_LAYER = "predictions"
# Keras' 0.999 moving averages stay near their initial values for hundreds of
# steps; a small data set trains for fewer, so validation would use stale BN.
RANDOM_INIT_BN_MOMENTUM = 0.9
# ImageNet backbones shipped inside the package (see edgepipe/weights/README.md), taken
# before Keras' download: (architecture, alpha) -> file.
SHIPPED_WEIGHTS_DIR = Path(edgepipe.__file__).resolve().parent / "weights"
SHIPPED_BACKBONES = {("mobilenet_v2", 1.0): SHIPPED_WEIGHTS_DIR / "mobilenet_v2_1.0_224_no_top.h5"}


def _application(architecture: str):
    apps = keras().applications
    return {"mobilenet_v2": apps.MobileNetV2, "mobilenet_v3_small": apps.MobileNetV3Small,
            "mobilenet_v3_large": apps.MobileNetV3Large}[architecture]


def _weights_argument(weights: str) -> str | None:
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist; pass --weights imagenet, none or a weights file")
    return str(path.resolve())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class ImageNetDownloadError(UserError):
    """Keras could not download its ImageNet weights (offline, proxy, ...)."""

    def __init__(self, cfg: ModelConfig, why: str) -> None:
        self.reason = f"Keras cannot download the ImageNet weights for {cfg.architecture} alpha {cfg.alpha:g} ({why})"
        super().__init__(f"{self.reason}; pass --weights PATH to a weights file, or --weights none")


def _shipped_backbones_sentence() -> str:
    served = ", ".join(f"{arch} alpha {alpha:g}" for arch, alpha in SHIPPED_BACKBONES)
    files = ", ".join(str(path) for path in SHIPPED_BACKBONES.values())
    return f"the ImageNet weights shipped with edgepipe ({files}) serve only {served}"


def resolve_weights(cfg: ModelConfig) -> tuple[ModelConfig, str]:
    """The config to build with, and one line saying where the backbone weights come from.

    `--weights imagenet` takes the ImageNet backbone shipped with edgepipe when there is one
    for this architecture and alpha, without touching the network (most training machines
    for this field are offline or behind a proxy, and Keras would print a download attempt
    first); otherwise Keras' own download (or its cache). When neither is possible this
    fails here, before any training, with an error naming the shipped file and what it serves.
    """
    if cfg.weights == "none":
        return cfg, "backbone weights: random initialisation (--weights none)"
    if cfg.weights != "imagenet":
        return cfg, f"backbone weights: {_weights_argument(cfg.weights)}"
    shipped = SHIPPED_BACKBONES.get((cfg.architecture, float(cfg.alpha)))
    if shipped is not None and shipped.is_file():
        return replace(cfg, weights=str(shipped)), f"backbone weights: ImageNet, the copy shipped with edgepipe ({shipped.name})"
    try:
        build_backbone(cfg, keras().Input((cfg.input_size, cfg.input_size, 3)))
    except ImageNetDownloadError as exc:
        raise UserError(
            f"{exc.reason}, and {_shipped_backbones_sentence()}; use --architecture mobilenet_v2 --alpha 1.0, "
            "pass --weights PATH to a weights file, or --weights none"
        ) from None
    return cfg, "backbone weights: ImageNet (Keras)"


def build_backbone(cfg: ModelConfig, inputs):
    """The application built on `inputs`, with its weights; one-line errors for the usual failures."""
    if cfg.architecture not in ARCHITECTURES:
        raise UserError(f"architecture {cfg.architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    weights = _weights_argument(cfg.weights)
    # input_shape as well as input_tensor: from the tensor alone Keras infers no size and warns
    # that "`rows` is not in [96, 128, ...]" even at 96.
    kwargs = dict(input_tensor=inputs, input_shape=tuple(inputs.shape[1:]), include_top=False, alpha=cfg.alpha,
                  weights=weights)
    if cfg.architecture != "mobilenet_v2":
        # The Edge TPU has no hard-swish; our pipeline feeds [-1, 1] pixels already.
        kwargs.update(minimalistic=True, include_preprocessing=False)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints its download progress; stdout is for results
            return _application(cfg.architecture)(**kwargs)
    except ValueError as exc:
        if weights not in (None, "imagenet"):
            raise UserError(
                f"weights file {weights} does not fit {cfg.architecture} alpha {cfg.alpha}: {_first_line(exc)}"
            ) from None
        raise UserError(f"cannot build {cfg.architecture} alpha {cfg.alpha}: {_first_line(exc)}") from None
    except OSError as exc:
        if weights == "imagenet":
            raise ImageNetDownloadError(cfg, _first_line(exc)) from None
        raise UserError(f"cannot read weights file {weights}: {_first_line(exc)}") from None
    except Exception as exc:  # keras.utils.get_file raises a bare Exception when offline
        if weights == "imagenet" and "URL fetch failure" in str(exc):
            raise ImageNetDownloadError(cfg, "offline?") from None
        raise


def build_classifier(cfg: ModelConfig, num_classes: int):
    """Input (normalised RGB) -> backbone -> GlobalAveragePooling -> Dropout -> Dense softmax (L2)."""
    if not MIN_INPUT_SIZE <= cfg.input_size <= MAX_INPUT_SIZE:
        raise UserError(f"input size {cfg.input_size} is outside {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE}")
    k = keras()
    inputs = k.Input((cfg.input_size, cfg.input_size, 3), name="image")
    backbone = build_backbone(cfg, inputs)
    x = k.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(backbone.output)
    x = k.layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = k.layers.Dense(num_classes, activation="softmax", name=HEAD_LAYER,
                             kernel_regularizer=k.regularizers.l2(cfg.l2) if cfg.l2 > 0 else None)(x)
    model = k.Model(inputs, outputs, name=f"{cfg.architecture}_classifier")
    freeze_backbone(model)
    return model


def backbone_layers(model) -> list:
    """The backbone's layers in topological order (no input layer, no head)."""
    names = {FEATURES_LAYER, "dropout", HEAD_LAYER}
    return [layer for layer in model.layers[1:] if layer.name not in names]


def freeze_backbone(model) -> None:
    for layer in backbone_layers(model):
        layer.trainable = False


def is_batch_norm(layer) -> bool:
    return isinstance(layer, keras().layers.BatchNormalization)


def unfreeze_top(model, layers: list, train_batch_norm: bool = False) -> int:
    """Make `layers` trainable, BatchNormalization only if asked (frozen = inference mode); returns how many.

    Pretrained BN must stay frozen. A randomly initialised network is the
    exception: frozen at its initial statistics BN is the identity, and
    without normalisation activations shrink layer by layer (~1e-11 at
    MobileNetV2's output), so nothing trains.
    """
    count = 0
    for layer in layers:
        if train_batch_norm and is_batch_norm(layer):
            layer.momentum = RANDOM_INIT_BN_MOMENTUM
        if (train_batch_norm or not is_batch_norm(layer)) and layer.weights:
            layer.trainable = True
            count += 1
    return count


def _inbound_layers(layer) -> list:
    node = layer.inbound_nodes[0]
    inbound = node.inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def top_block(model, n_layers: int) -> list:
    """The last >= n_layers backbone layers, extended up to a point where one tensor enters them.

    Cutting inside a residual block would need two boundary tensors; extending
    the cut to the block's start keeps the feature cache one tensor per image.
    """
    layers = backbone_layers(model)
    n = max(0, min(n_layers, len(layers)))
    while 0 < n < len(layers):
        top = layers[len(layers) - n:]
        inside = {id(layer) for layer in top}
        entering = {id(src) for layer in top for src in _inbound_layers(layer) if id(src) not in inside}
        if len(entering) == 1:
            return top
        n += 1
    return layers[len(layers) - n:] if n else []


def boundary_tensor(model, top: list):
    """The tensor that feeds `top` (the backbone output when `top` is empty)."""
    if not top:
        return model.get_layer(FEATURES_LAYER).input
    inside = {id(layer) for layer in top}
    for layer in top:
        for src in _inbound_layers(layer):
            if id(src) not in inside:
                return src.output
    raise AssertionError("top block has no input")


def sub_model(inputs, outputs, name: str):
    """A view of part of the flat model; shares its layers (and weights), adds no nodes."""
    return keras().Model(inputs, outputs, name=name)
