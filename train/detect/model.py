"""SSDLite on MobileNetV2, as ONE flat functional tf_keras model.

The graph is built only from ops Edge TPU compiler 16 maps (CONV_2D,
DEPTHWISE_CONV_2D with ReLU6, ADD, RESHAPE, CONCATENATION, LOGISTIC): the
whole network, up to the box offsets and the per-class sigmoid scores, runs on
the TPU, and only the postprocess op added at export (decode + NMS) stays on
the CPU, as in Coral's own compiled SSDs. Flat, because tfmot's QAT cannot
quantize a model nested in a model. The shipped backbone has BatchNorm folded
into its convolutions (BN must stay in inference mode), so the new layers have
no BN either: convolutions with biases, ReLU6 as MobileNetV2 uses.

Feature maps follow the OD API's ssdlite_mobilenet_v2: the expansion output of
block 13 (stride 16) and the backbone's last ReLU (stride 32), then four extra
1x1 -> depthwise 3x3 stride 2 -> 1x1 layers. Each map gets a separable box head
and class head (depthwise 3x3 + ReLU6, then a linear 1x1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..keras_io import keras
from ..model import ModelConfig, build_backbone
from .anchors import anchors_per_cell, feature_sizes
from .sizes import DEFAULT_INPUT_SIZE, check_input_size

STRIDE16_LAYER = "block_13_expand_relu"
STRIDE32_LAYER = "out_relu"
# The input of block 13: below it the backbone stays frozen in both phases, so its output is cached once.
BOUNDARY_LAYER = "block_12_add"
EXTRA_DEPTHS = (512, 256, 256, 128)
BOXES_OUTPUT, SCORES_OUTPUT = "box_encodings", "class_scores"
# RetinaNet's prior: every anchor starts at a 1% object score, so the early focal loss is not
# swamped by thousands of easy background anchors.
PRIOR_PROBABILITY = 0.01


@dataclass(frozen=True)
class DetectorConfig:
    input_size: int = DEFAULT_INPUT_SIZE
    weights: str = "imagenet"  # "imagenet" (the shipped copy offline), "none" or a backbone weights file
    alpha: float = 1.0

    def backbone(self) -> ModelConfig:
        return ModelConfig(architecture="mobilenet_v2", alpha=self.alpha, input_size=self.input_size,
                           weights=self.weights)

    def with_backbone(self, cfg: ModelConfig) -> "DetectorConfig":
        return replace(self, weights=cfg.weights)


def _separable_head(x, filters: int, name: str, bias: float = 0.0):
    layers = keras().layers
    x = layers.DepthwiseConv2D(3, padding="same", name=f"{name}_depthwise")(x)
    x = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    return layers.Conv2D(filters, 1, name=f"{name}_conv",
                         bias_initializer=keras().initializers.Constant(bias))(x)


def _extra_layer(x, depth: int, index: int):
    layers = keras().layers
    name = f"extra_{index}"
    x = layers.Conv2D(depth // 2, 1, name=f"{name}_reduce")(x)
    x = layers.ReLU(6.0, name=f"{name}_reduce_relu")(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name=f"{name}_depthwise")(x)
    x = layers.ReLU(6.0, name=f"{name}_depthwise_relu")(x)
    x = layers.Conv2D(depth, 1, name=f"{name}_expand")(x)
    return layers.ReLU(6.0, name=f"{name}_expand_relu")(x)


def head_layer_names(model) -> list[str]:
    """The layers the detector adds to the backbone (trained from the first phase on)."""
    return [layer.name for layer in model.layers
            if layer.name.startswith(("extra_", "boxes_", "classes_", "reshape_", BOXES_OUTPUT, SCORES_OUTPUT))]


def build_detector(cfg: DetectorConfig, num_classes: int):
    """Input (normalised RGB, HxWx3) -> [box offsets [B, N, 4], class scores [B, N, classes] (sigmoid)]."""
    check_input_size(cfg.input_size)
    k = keras()
    layers = k.layers
    inputs = k.Input((cfg.input_size, cfg.input_size, 3), name="image")
    backbone = build_backbone(cfg.backbone(), inputs)
    features = [backbone.get_layer(STRIDE16_LAYER).output, backbone.get_layer(STRIDE32_LAYER).output]
    for index, depth in enumerate(EXTRA_DEPTHS):
        features.append(_extra_layer(features[-1], depth, index))
    sides = feature_sizes(cfg.input_size)
    for level, feature in enumerate(features):
        if tuple(feature.shape[1:3]) != (sides[level], sides[level]):
            raise AssertionError(f"feature map {level} is {feature.shape}, anchors expect {sides[level]}")
    prior = -math.log((1 - PRIOR_PROBABILITY) / PRIOR_PROBABILITY)
    boxes, scores = [], []
    for level, (feature, count) in enumerate(zip(features, anchors_per_cell())):
        b = _separable_head(feature, count * 4, f"boxes_{level}")
        c = _separable_head(feature, count * num_classes, f"classes_{level}", bias=prior)
        boxes.append(layers.Reshape((-1, 4), name=f"reshape_boxes_{level}")(b))
        scores.append(layers.Reshape((-1, num_classes), name=f"reshape_classes_{level}")(c))
    box_out = layers.Concatenate(axis=1, name=BOXES_OUTPUT)(boxes)
    logits = layers.Concatenate(axis=1, name=f"{SCORES_OUTPUT}_logits")(scores)
    score_out = layers.Activation("sigmoid", name=SCORES_OUTPUT)(logits)
    model = k.Model(inputs, [box_out, score_out], name="ssdlite_mobilenet_v2")
    for layer in backbone.layers:
        layer.trainable = False
    return model
