"""Keras model -> TFLite bytes: post-training quantization (PTQ), quantization-aware
training (QAT) and float exports, all Edge TPU-safe by construction.

Every export goes through a concrete function with a fixed 1xHxWx3 input
(a dynamic batch makes the Edge TPU compiler say "Model not quantized"), and
Dense weights are quantized per tensor (newer converters default to per
channel, which compiler 16 does not accept).

QAT is done so that it cannot start behind PTQ: tfmot's activation quantizers
start at [-6, 6] and move with an EMA of 0.999, so a fresh QAT model is near
chance and a short fine-tune never recovers (design notes: -4.6 points). We
set every activation range from the float model's min/max on the
representative images (the same statistics PTQ uses), let one training-mode
pass set the weight ranges, keep BatchNormalization in inference mode (the
shared weights have BN folded; batch statistics would destroy them), and only
then fine-tune at a low learning rate. One more trap, measured on flowers12:
tfmot quantizes a DepthwiseConv2D kernel per axis along its LAST axis, which
is the depth multiplier (1), i.e. per tensor; for MobileNetV2 that alone cost
55 points (calibrated QAT 44% vs PTQ 99%). Depthwise kernels are therefore left
unquantized in the QAT graph and the converter quantizes them per channel, as
PTQ does.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.progress import say
from edgepipe.device.model.preprocess import ImageReadError, InputSpec, load_image, normalize, resize_to_input
from edgepipe.core.progress import Progress, Working, track
from edgepipe.core.tfenv import native_stderr_silenced

IO_TYPES = ("uint8", "int8", "float")


def load_pixels(files: list[tuple[Path, int]], spec: InputSpec, limit: int | None = None, seed: int = 0,
                progress: str | None = None) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Resized uint8 pixels (N, H, W, 3) exactly as the device makes them, their labels, and unreadable files.

    uint8 keeps 200 images at 224x224 at 30 MB; `normalize` turns a batch into model floats.
    """
    chosen = list(files)
    if limit is not None and limit < len(chosen):
        chosen = random.Random(seed).sample(chosen, limit)
    pixels, labels, unreadable = [], [], []
    for path, label in track(chosen, len(chosen), progress) if progress else chosen:
        try:
            pixels.append(resize_to_input(load_image(path), spec))
            labels.append(label)
        except ImageReadError:
            unreadable.append(path)
    if not pixels:
        return np.zeros((0, spec.height, spec.width, 3), np.uint8), np.zeros(0, np.int64), unreadable
    return np.stack(pixels), np.asarray(labels, np.int64), unreadable


def representative_pixels(files: list[tuple[Path, int]], spec: InputSpec, count: int) -> np.ndarray:
    pixels, _, unreadable = load_pixels(files, spec, limit=count)
    if len(pixels) == 0:
        raise UserError(
            f"the representative set has no readable images ({len(unreadable)} unreadable of {len(files)} "
            "training images in the run's split.json); check that the run's data_dir still holds the photos"
        )
    return pixels


def with_features_output(model):
    """The classifier with its pooled features (train.model's FEATURES_LAYER, or tfmot's wrapper of it) as a
    second output, for the feature-space "unknown" score; the model itself when it has no such layer."""
    from edgepipe.train.model import FEATURES_LAYER, sub_model

    for layer in model.layers:
        if layer.name in (FEATURES_LAYER, f"quant_{FEATURES_LAYER}"):
            return sub_model(model.inputs, [model.outputs[0], layer.output], model.name)
    return model


def _concrete_function(model, spec: InputSpec):
    import tensorflow as tf

    signature = tf.TensorSpec([1, spec.height, spec.width, 3], tf.float32, name="image")
    return tf.function(lambda image: model(image, training=False)).get_concrete_function(signature)


def _tf_type(io: str):
    import tensorflow as tf

    return {"uint8": tf.uint8, "int8": tf.int8, "float": tf.float32}[io]


def export_tflite(model, spec: InputSpec, pixels: np.ndarray | None, io: str = "uint8", float16: bool = False,
                  name: str = "conversion", serving=None, output_io: str | None = None) -> bytes:
    """The model as .tflite bytes: full-int8 when `pixels` (representative images) are given, else float.

    `serving` replaces the plain call of the model with another concrete function of the 1xHxWx3
    image (a detector's, which ends in a custom postprocess op); `output_io` sets the output tensors'
    type when it differs from the input's (that op's outputs are float). The converter's own output is
    silenced (edgepipe.core.tfenv); the calibration pass over the representative images, its long
    part, shows progress.
    """
    import tensorflow as tf

    concrete = serving if serving is not None else _concrete_function(model, spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.allow_custom_ops = serving is not None
    working = Working(f"{name}: converting")
    if pixels is not None:

        def representative() -> Iterator[list[np.ndarray]]:
            working.paused = True
            for p in track(pixels, len(pixels), f"{name}: calibrating on representative images"):
                yield [normalize(p, spec)[np.newaxis]]
            working.paused = False

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = _tf_type(io)
        converter.inference_output_type = _tf_type(output_io or io)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        with native_stderr_silenced(), working:
            return bytes(converter.convert())
    except Exception as exc:  # noqa: BLE001 - converter errors are long MLIR dumps
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise UserError(f"TFLite conversion failed: {first[:300]}") from None


def nested_models(model) -> list[str]:
    """Names of sub-models inside `model`; tfmot can only quantize a flat functional model."""
    from tf_keras import Model

    return [layer.name for layer in model.layers if isinstance(layer, Model)]


def _no_quantization_config():
    """A tfmot QuantizeConfig that quantizes nothing in its layer."""
    import tensorflow_model_optimization as tfmot

    class LeaveToConverter(tfmot.quantization.keras.QuantizeConfig):
        """Weights quantized later by the TFLite converter (per channel); output left to the next layer."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return LeaveToConverter


def _quantize_model(float_model):
    """tfmot's quantize_model, except depthwise convolutions (and the BatchNormalization after them),
    whose kernels the converter then quantizes per channel."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    api = tfmot.quantization.keras
    config = _no_quantization_config()
    depthwise = [layer for layer in float_model.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    leave = {layer.name for layer in depthwise}
    leave |= {node.outbound_layer.name for layer in depthwise for node in layer._outbound_nodes
              if isinstance(node.outbound_layer, keras.layers.BatchNormalization)}  # fmt: skip

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if layer.name in leave:
            return api.quantize_annotate_layer(layer, quantize_config=config())
        return api.quantize_annotate_layer(layer)

    annotated = keras.models.clone_model(float_model, clone_function=annotate)
    with api.quantize_scope({config.__name__: config}):
        return api.quantize_apply(annotated)


def _freeze_batch_norm(qat_model) -> None:
    from tf_keras.layers import BatchNormalization

    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, BatchNormalization):
            inner.trainable = False


def _float_ranges(model, pixels: np.ndarray, spec: InputSpec, layer_names: list[str], pre_activation: list[str], batch: int = 16) -> dict[str, tuple[float, float]]:
    """Min/max of each named layer's float output (and pre-activation output) over the images."""
    import tensorflow as tf
    import tf_keras as keras

    tensors = [model.get_layer(n).output for n in layer_names] + [model.get_layer(n).input for n in pre_activation]
    probe = keras.Model(model.input, tensors)
    linear = []
    for name in pre_activation:
        layer = model.get_layer(name)
        clone = layer.__class__.from_config({**layer.get_config(), "activation": "linear"})
        clone.build(layer.input_shape)
        clone.set_weights(layer.get_weights())
        linear.append(clone)
    lows = np.full(len(tensors), np.inf)
    highs = np.full(len(tensors), -np.inf)
    with Progress(len(pixels), "QAT: measuring float activation ranges") as progress:
        for start in range(0, len(pixels), batch):
            outs = probe(tf.constant(normalize(pixels[start : start + batch], spec)), training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            values = list(outs[: len(layer_names)]) + [lin(x) for lin, x in zip(linear, outs[len(layer_names) :])]
            for i, v in enumerate(values):
                lows[i] = min(lows[i], float(tf.reduce_min(v)))
                highs[i] = max(highs[i], float(tf.reduce_max(v)))
            progress.update(len(pixels[start : start + batch]))
    names = layer_names + [f"{n}/pre_activation" for n in pre_activation]
    # TFLite needs 0 inside every range.
    return {n: (min(lo, 0.0), max(hi, 0.0)) for n, lo, hi in zip(names, lows, highs)}


def calibrate_qat_ranges(qat_model, float_model, pixels: np.ndarray, spec: InputSpec) -> int:
    """Set the QAT model's activation ranges from the float model's; returns how many were set."""
    import tensorflow as tf

    # One training-mode pass: LastValue weight quantizers take the weights' exact ranges.
    qat_model(tf.constant(normalize(pixels[: min(len(pixels), 4)], spec)), training=True)
    targets: dict[str, list] = {}
    for layer in qat_model.layers:
        for w in layer.non_trainable_weights:
            short = w.name.split("/")[-1].split(":")[0]
            if short in ("output_min", "output_max", "pre_activation_min", "pre_activation_max"):
                key = layer.layer.name + ("/pre_activation" if short.startswith("pre_") else "")
                targets.setdefault(key, []).append((short.endswith("_max"), w))
            elif short in ("quantize_layer_min", "quantize_layer_max"):
                targets.setdefault("__input__", []).append((short.endswith("_max"), w))
    layer_names = [k for k in targets if k != "__input__" and "/" not in k]
    pre = [k.split("/")[0] for k in targets if k.endswith("/pre_activation")]
    ranges = _float_ranges(float_model, pixels, spec, layer_names, pre)
    low = float(normalize(np.zeros(1, np.uint8), spec)[0])
    high = float(normalize(np.full(1, 255, np.uint8), spec)[0])
    ranges["__input__"] = (min(low, high, 0.0), max(low, high, 0.0))
    for key, variables in targets.items():
        for is_max, var in variables:
            var.assign(np.float32(ranges[key][1 if is_max else 0]))
    return len(targets)


class _Batches:
    """Shuffled (images, labels) batches from the uint8 pixels, normalised per batch."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, spec: InputSpec, batch_size: int, seed: int) -> None:
        self.pixels, self.labels, self.spec, self.batch_size = pixels, labels, spec, batch_size
        self.rng = np.random.default_rng(seed)

    def epoch(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = self.rng.permutation(len(self.pixels))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            yield normalize(self.pixels[idx], self.spec), self.labels[idx]


def calibrated_qat_model(float_model, calibration: np.ndarray, spec: InputSpec, seed: int = 0,
                         progress: Callable[[str], None] = say):
    """tfmot's QAT model of `float_model` with BatchNormalization frozen and every quantizer range set from
    the float model on the `calibration` images: the starting point of any QAT fine-tune."""
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    with Working("QAT: building the quantization-aware model"):
        qat = _quantize_model(float_model)
    _freeze_batch_norm(qat)
    set_count = calibrate_qat_ranges(qat, float_model, calibration, spec)
    progress(f"  QAT: {set_count} quantizer ranges calibrated from {len(calibration)} training images")
    return qat


def quantization_aware_model(
    float_model,
    calibration: np.ndarray,
    train_pixels: np.ndarray,
    train_labels: np.ndarray,
    spec: InputSpec,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int = 0,
    progress: Callable[[str], None] = say,
):
    """A calibrated, briefly fine-tuned tfmot QAT model (convert it with `export_tflite`)."""
    import tensorflow as tf
    import tf_keras as keras

    nested = nested_models(float_model)
    if nested:
        raise UserError(
            f"QAT needs a flat functional model, but this one nests {', '.join(nested)}; "
            "retrain with edgepipe train, or use --method ptq"
        )
    qat = calibrated_qat_model(float_model, calibration, spec, seed, progress)
    if epochs == 0:
        return qat
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, qat(x, training=True))
        grads = tape.gradient(loss, qat.trainable_variables)
        optimizer.apply_gradients(zip(grads, qat.trainable_variables))
        return loss

    batches = _Batches(train_pixels, train_labels, spec, batch_size, seed)
    for epoch in range(epochs):
        losses = []
        with Progress(len(train_pixels), f"QAT epoch {epoch + 1}/{epochs}") as bar:
            for x, y in batches.epoch():
                losses.append(float(step(tf.constant(x), tf.constant(y))))
                bar.note(f"loss {np.mean(losses):.4f}")
                bar.update(len(x))
    return qat
