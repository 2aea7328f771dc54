"""What `edgepipe train` and `edgepipe evaluate` can be asked for: each option
once, with its default, flag and help (edgepipe.core.options).

Light on purpose (no TensorFlow, no numpy): the CLI imports it to build its
parser, the trainer and the evaluator take these objects.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgepipe.core.args import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from edgepipe.core.options import flag
from edgepipe.device.model.options import unknown_mode

from .detect.sizes import MAX_INPUT_SIZE as DETECT_MAX_INPUT_SIZE

if TYPE_CHECKING:
    from edgepipe.device.model.unknown import UnknownMode

ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large")
ALPHAS = (0.35, 0.5, 0.75, 1.0)
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 96, 224
STRATEGIES = ("default", "mirrored", "multiworker")
OPTIMIZERS = ("adam", "sgd")
DATA, TRAINING, AUGMENTATION = "data", "training", "augmentation (training images only)"


def input_size(text: str) -> int:
    """Parse-time bounds cover both tasks (a detector takes up to 640); train checks classification's 96..224."""
    value = positive_int(text)
    if not MIN_INPUT_SIZE <= value <= DETECT_MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} must be between {MIN_INPUT_SIZE} and {DETECT_MAX_INPUT_SIZE}")
    return value


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = flag("--architecture", default="mobilenet_v2", choices=ARCHITECTURES,
                             help="the ImageNet backbone")
    alpha: float = flag("--alpha", default=1.0, choices=ALPHAS, help="width multiplier")
    input_size: int = flag("--input-size", default=224, parse=input_size,
                           help=f"square input, {MIN_INPUT_SIZE}..{MAX_INPUT_SIZE}; a detector: a multiple of 32 in "
                                f"160..{DETECT_MAX_INPUT_SIZE}, default 320")
    weights: str = flag("--weights", default="imagenet", metavar="imagenet|none|PATH",
                        help="backbone weights: ImageNet (Keras' download, offline the copy shipped with edgepipe "
                             "for mobilenet_v2 alpha 1.0), none (random) or a .h5 file")
    dropout: float = flag("--dropout", default=0.2, parse=fraction, help="dropout before the softmax")
    l2: float = flag("--l2", default=1e-4, parse=non_negative_float, help="L2 on the softmax kernel")


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training images only (never validation)."""

    flip: bool = flag("--no-flip", default=True, help="no random horizontal flips")
    rotation: float = flag("--rotation", default=0.05, parse=non_negative_float,
                           help="max rotation, fraction of a turn either way")
    zoom: float = flag("--zoom", default=0.15, parse=non_negative_float,
                       help="max zoom in/out fraction (a random crop when zooming in)")
    brightness: float = flag("--brightness", default=0.15, parse=non_negative_float,
                             help="max brightness shift, fraction of the pixel range")
    contrast: float = flag("--contrast", default=0.2, parse=non_negative_float,
                           help="max contrast change c: a factor in [1 - c, 1 + c]")

    @property
    def enabled(self) -> bool:
        return self.flip or any(v > 0 for v in (self.rotation, self.zoom, self.brightness, self.contrast))


@dataclass(frozen=True)
class TrainConfig:
    data_dirs: list[str]  # one or more folders of class sub-folders; classes of the same name merge
    out: str = flag("--out", metavar="RUN_DIR", help="run directory to create")
    model: ModelConfig = field(default_factory=ModelConfig)
    val_split: float = flag("--val-split", default=0.2, parse=fraction, group=DATA,
                            help="stratified validation fraction")
    val_dir: str | None = flag("--val-dir", default=None, metavar="DIR", group=DATA,
                               help="use this folder for validation instead of a split")
    seed: int = flag("--seed", default=0, group=DATA, help="seed for the split, augmentation and weights")
    background_class: str | None = flag(
        "--background-class", default=None, metavar="NAME", group=DATA,
        help="the class folder of images of none of the classes (e.g. none): trained like any other, reported "
             "as \"unknown\" by run/classify and treated so by convert and evaluate")
    epochs: int = flag("--epochs", default=60, parse=positive_int, group=TRAINING, help="head epochs")
    fine_tune_epochs: int = flag("--fine-tune-epochs", default=4, parse=non_negative_int, group=TRAINING,
                                 help="epochs fine-tuning the top backbone layers, 0 = none")
    fine_tune_layers: int = flag("--fine-tune-layers", default=11, parse=non_negative_int, group=TRAINING,
                                 help="backbone layers to fine-tune, counted from the top and extended to a block "
                                      "boundary; 11 are MobileNetV2's last block and final conv")
    batch_size: int = flag("--batch-size", default=32, parse=positive_int, group=TRAINING, help="batch size")
    learning_rate: float = flag("--learning-rate", default=1e-3, parse=positive_float, group=TRAINING,
                                help="head learning rate")
    fine_tune_learning_rate: float = flag("--fine-tune-learning-rate", default=1e-4, parse=positive_float,
                                          group=TRAINING, help="fine-tuning learning rate")
    optimizer: str = flag("--optimizer", default="adam", choices=OPTIMIZERS, group=TRAINING,
                          help="adam, or sgd with momentum")
    momentum: float = flag("--momentum", default=0.9, parse=fraction, group=TRAINING, help="sgd momentum")
    patience: int = flag("--patience", default=10, parse=positive_int, group=TRAINING,
                         help="early stopping: epochs without a better validation loss")
    class_weights: bool = flag("--no-class-weights", default=True, group=TRAINING,
                               help="do not weight classes by inverse frequency")
    augment: Augmentation | None = field(default_factory=Augmentation)  # None: no augmentation
    augment_copies: int = flag("--augment-copies", default=3, parse=non_negative_int, group=AUGMENTATION,
                               help="augmented copies of each training image, computed once")
    strategy: str = flag("--strategy", default="default", choices=STRATEGIES,
                         group=TRAINING, help="tf.distribute strategy: default is one device; multiworker "
                                              "reads TF_CONFIG")
    force: bool = flag("--force", default=False, help="replace RUN_DIR if it exists")


@dataclass(frozen=True)
class EvaluateOptions:
    """What to evaluate on what: DATA_DIR, or a part of a run's split (exactly one of them)."""

    model: Path
    data_dir: Path | None = None
    split: str | None = flag("--split", default=None, choices=("val", "train", "test", "all"),
                             help="without DATA_DIR: this part of the run's split.json (test: a detector's run); "
                                  "with a detector and DATA_DIR: test = the part of it train holds out (its fixed "
                                  "split, else the seeded share), all = every photo, as without --split")
    run: Path | None = flag("--run", default=None, parse=Path, metavar="RUN_DIR",
                            help="run dir whose split --split uses (default: MODEL)")
    labels: Path | None = flag("--labels", default=None, parse=Path, metavar="FILE",
                               help="labels file for a bare .tflite or .keras model")
    top_k: int = flag("--top-k", default=5, parse=positive_int,
                      help="also report top-K accuracy (omitted when K >= the number of classes)")
    batch_size: int = flag("--batch-size", default=32, parse=positive_int, help="batch size")
    out: Path | None = flag("--out", default=None, parse=Path, metavar="DIR",
                            help="write metrics.json and confusion_matrix.png (a detector: precision_recall.png) here")
    force: bool = flag("--force", default=False, help="overwrite files in --out")
    unknown_dir: Path | None = flag(
        "--unknown-dir", default=None, parse=Path, metavar="DIR",
        help="images of none of the classes (any depth): report the false-accept rate, the AUROC of in-class vs "
             "unknown and in-class accuracy with rejection on and off")
    unknown: UnknownMode = flag(
        "--unknown", default="auto", parse=unknown_mode, metavar="auto|P",
        help="the threshold --unknown-dir evaluates: auto = the bundle's calibrated one; P in [0, 1] on its score "
             "(max softmax for other models)")
    accelerator: str = flag(
        "--accelerator", default="cpu", choices=("cpu", "imx500"),
        help="for a bundle: cpu, its .tflite through the device runtime; imx500, its Raspberry Pi AI Camera model "
             "as the sensor runs it (input p/128 - 1, uint8 output), simulated in the Sony venv `convert --imx500` "
             "made")

    def __post_init__(self) -> None:
        if self.data_dir is None and self.split is None:
            raise ValueError("data_dir or split (a detector takes both)")
