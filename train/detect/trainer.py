"""`edgepipe train --task detect`: an SSDLite detector from photos with boxes, into a RUN_DIR.

As for classification, the expensive, frozen part of the backbone runs once
per image copy: every training photo (clean, plus `augment_copies` box-aware
augmented variants, see augment.py) and every validation photo goes through
MobileNetV2 up to block 12, and the activations are cached on disk with
each copy's anchor targets. Phase 1 trains the SSDLite layers on the cache with
the top of the backbone (blocks 13-16) frozen; phase 2 fine-tunes that top
at a lower learning rate, BatchNormalization still in inference mode (the
shipped weights have it folded). Every epoch the model is scored by COCO
mAP@0.5 on the validation photos; the best weights over both phases are kept
and each phase stops early after `patience` epochs without a better one.

The validation photos are a seeded share of the training part (`val_fraction`);
the data set's test part is never seen by training and is what convert and
evaluate report.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from edgepipe import __version__
from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_directory, refuse_overwrite
from edgepipe.core.progress import Progress, say
from edgepipe.device.model.preprocess import ImageReadError, InputSpec, load_image

from .. import run_dir as rd
from ..features import FeatureCache, write_cache
from ..keras_io import keras
from ..model import resolve_weights, sub_model, unfreeze_top
from ..plots import save_training_curves
from ..trainer import write_history
from .anchors import assign, make_anchors
from .augment import BoxAugmentation, Sample, augmented_sample, clean_sample
from .decode import PostprocessConfig, detections, to_pixels
from .boxes import BoxedImage, DetectionData
from .data import load_detection_data
from .metrics import evaluate_detections
from .losses import LossConfig, detection_loss
from .model import BOUNDARY_LAYER, SCORES_OUTPUT, DetectorConfig, build_detector, head_layer_names

TASK = "detect"
HISTORY_COLUMNS = ["phase", "epoch", "loss", "class_loss", "box_loss", "val_map50", "val_map50_95", "seconds"]


@dataclass(frozen=True)
class DetectTrainConfig:
    data_dirs: list[str]
    out: str
    model: DetectorConfig = field(default_factory=DetectorConfig)
    test_fraction: float = 0.2  # used when the data set has no fixed split
    val_fraction: float = 0.15  # of the training part, for early stopping and convert's choice
    seed: int = 0
    epochs: int = 12
    fine_tune_epochs: int = 4
    batch_size: int = 16
    learning_rate: float = 2e-3
    fine_tune_learning_rate: float = 1e-4
    patience: int = 4
    augment: BoxAugmentation | None = field(default_factory=BoxAugmentation)
    augment_copies: int = 4
    loss: LossConfig = field(default_factory=LossConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    force: bool = False


@dataclass(frozen=True)
class DetectionSplit:
    classes: tuple[str, ...]
    train: tuple[BoxedImage, ...]
    val: tuple[BoxedImage, ...]
    test: tuple[BoxedImage, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        def entries(images: Sequence[BoxedImage]) -> list[dict[str, Any]]:
            return [{"path": str(Path(i.path).resolve()), "width": i.width, "height": i.height,
                     "boxes": np.asarray(i.boxes).round(2).tolist(), "classes": np.asarray(i.classes).tolist()}
                    for i in images]

        return {"task": TASK, "classes": list(self.classes), "train": entries(self.train),
                "val": entries(self.val), "test": entries(self.test)}


def boxed_images(split: dict[str, Any], part: str) -> list[BoxedImage]:
    """A part ("train", "val", "test") of a detection split.json, as BoxedImages."""
    return [BoxedImage(Path(e["path"]), int(e["width"]), int(e["height"]),
                       np.asarray(e["boxes"], np.float32).reshape(-1, 4), np.asarray(e["classes"], np.int32))
            for e in split.get(part, [])]


def make_detection_split(data: DetectionData, val_fraction: float, seed: int) -> DetectionSplit:
    """The validation photos: a seeded share of the training part, at least one."""
    train = list(data.train)
    if len(train) < 4:
        raise UserError(f"only {len(train)} training photos with boxes; a detector needs dozens (add photos)")
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = min(len(train) - 2, max(1, round(len(train) * val_fraction)))
    val = tuple(train[i] for i in sorted(order[:n_val]))
    rest = tuple(train[i] for i in sorted(order[n_val:]))
    return DetectionSplit(data.classes, rest, val, data.test, data.notes)


def _samples(images: Sequence[BoxedImage], spec: InputSpec, aug: BoxAugmentation | None, copies: int,
             seed: int) -> Iterator[Sample]:
    """Clean samples of every image, then `copies` rounds of augmented ones."""
    rng = np.random.default_rng(seed)
    for round_ in range(1 + copies):
        for image in images:
            try:
                bgr = load_image(image.path)
            except ImageReadError as exc:
                raise UserError(f"{exc}; remove it from the data or fix it") from None
            if round_ == 0:
                yield clean_sample(bgr, image.boxes, image.classes, spec)
            else:
                yield augmented_sample(bgr, image.boxes, image.classes, spec, aug, rng)


@dataclass
class BoundaryCache:
    """Backbone activations at the frozen boundary, with each row's anchor targets."""

    features: FeatureCache
    targets: np.ndarray  # [rows, anchors, 5]

    def batches(self, batch_size: int, rng: np.random.Generator | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order = rng.permutation(len(self.targets)) if rng is not None else np.arange(len(self.targets))
        for start in range(0, len(order), batch_size):
            index = np.sort(order[start: start + batch_size])
            yield np.asarray(self.features.features[index], np.float32), self.targets[index]


def extract(images: Sequence[BoxedImage], spec: InputSpec, frozen, anchors: np.ndarray, path: Path, what: str,
            aug: BoxAugmentation | None = None, copies: int = 0, seed: int = 0, batch_size: int = 16) -> BoundaryCache:
    """Run the frozen backbone once over every (augmented) copy of `images` into a cache."""
    import tensorflow as tf

    total = len(images) * (1 + copies)
    targets = np.zeros((total, len(anchors), 5), np.float32)
    run = tf.function(lambda x: frozen(x, training=False))

    def rows() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        done = 0
        batch: list[Sample] = []
        for sample in _samples(images, spec, aug, copies, seed):
            batch.append(sample)
            if len(batch) == batch_size or done + len(batch) == total:
                pixels = np.stack([s.pixels for s in batch]).astype(np.float32)
                features = run(tf.constant((pixels - spec.mean) / spec.std)).numpy()
                for k, s in enumerate(batch):
                    targets[done + k] = assign(s.boxes, s.classes, anchors)
                yield features, np.arange(done, done + len(batch), dtype=np.int32)
                done += len(batch)
                batch = []

    return BoundaryCache(write_cache(path, rows(), total, what), targets)


class Trainer:
    """The detector cut at the boundary: training steps on cached activations, validation mAP, best weights."""

    def __init__(self, cfg: DetectTrainConfig, model, val_images: Sequence[BoxedImage], val: BoundaryCache,
                 classes: Sequence[str], anchors: np.ndarray) -> None:
        self.cfg, self.model, self.val_images, self.val, self.classes, self.anchors = cfg, model, val_images, val, classes, anchors
        boundary = model.get_layer(BOUNDARY_LAYER).output
        logits = model.get_layer(f"{SCORES_OUTPUT}_logits").output
        self.suffix = sub_model(boundary, [model.outputs[0], logits], "detector_above_boundary")
        self.scored = sub_model(boundary, model.outputs, "detector_scores_above_boundary")
        self.best_map, self.best_weights, self.best_where = -1.0, None, ""
        self.history: list[dict[str, Any]] = []

    def validation_map(self) -> tuple[float, float]:
        found = []
        for features, _ in self.val.batches(self.cfg.batch_size):
            boxes, scores = (t.numpy() for t in self.scored(features, training=False))
            for b, s in zip(boxes, scores):
                found.append(detections(b, s, self.anchors, self.cfg.postprocess))
        predictions = [to_pixels(f, image.width, image.height) for f, image in zip(found, self.val_images)]
        metrics = evaluate_detections(self.val_images, predictions, self.classes)
        return metrics.map50, metrics.map50_95

    def fit(self, phase: str, train: BoundaryCache, epochs: int, learning_rate: float) -> None:
        import tensorflow as tf

        k = keras()
        variables = self.suffix.trainable_variables
        steps = epochs * -(-len(train.targets) // self.cfg.batch_size)
        schedule = k.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
        optimizer = k.optimizers.Adam(schedule)
        loss_cfg = self.cfg.loss

        @tf.function(reduce_retracing=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                box_pred, logits = self.suffix(x, training=False)  # BN in inference mode (folded weights)
                total, class_loss, box_loss = detection_loss(y, box_pred, logits, loss_cfg)
            optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
            return total, class_loss, box_loss

        rng = np.random.default_rng(self.cfg.seed + len(self.history))
        stale = 0
        for epoch in range(epochs):
            started = time.monotonic()
            sums = np.zeros(3)
            with Progress(len(train.targets), f"{phase} epoch {epoch + 1}/{epochs}") as bar:
                for x, y in train.batches(self.cfg.batch_size, rng):
                    sums += [float(v) * len(x) for v in step(tf.constant(x), tf.constant(y))]
                    bar.update(len(x))
                    bar.note(f"loss {sums[0] / bar.done:.3f}")
            map50, map50_95 = self.validation_map()
            loss, class_loss, box_loss = sums / len(train.targets)
            row = {"phase": phase, "epoch": epoch + 1, "loss": loss, "class_loss": class_loss, "box_loss": box_loss,
                   "val_map50": map50, "val_map50_95": map50_95, "seconds": round(time.monotonic() - started, 1)}
            self.history.append(row)
            improved = map50 > self.best_map
            if improved:
                self.best_map, self.best_weights, self.best_where = map50, self.model.get_weights(), f"{phase} epoch {epoch + 1}"
                stale = 0
            else:
                stale += 1
            say(f"{phase} epoch {epoch + 1}/{epochs}: loss {loss:.4f} (class {class_loss:.4f}, box {box_loss:.4f}) "
                f"val mAP@0.5 {map50:.4f} mAP@[.5:.95] {map50_95:.4f} ({row['seconds']:.1f}s)" + (" *" if improved else ""))
            if stale >= self.cfg.patience:
                say(f"{phase}: no better validation mAP@0.5 for {stale} epochs; stopping")
                break

    def restore_best(self) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def top_layers(model) -> list:
    """The backbone layers above the boundary (blocks 13-16 and the last 1x1 conv), fine-tuned in phase 2."""
    heads = set(head_layer_names(model))
    names = [layer.name for layer in model.layers]
    start = names.index(BOUNDARY_LAYER) + 1
    return [layer for layer in model.layers[start:] if layer.name not in heads]


def effective_config(cfg: DetectTrainConfig, split: DetectionSplit, spec: InputSpec, data_dirs: list[str]) -> dict[str, Any]:
    import tensorflow as tf

    return {
        "task": TASK,
        "edgepipe_version": __version__,
        "tensorflow_version": tf.__version__,
        "data_dirs": data_dirs,
        "labels": list(split.classes),
        "num_train": len(split.train),
        "num_val": len(split.val),
        "num_test": len(split.test),
        "architecture": "ssdlite_mobilenet_v2",
        "input_size": cfg.model.input_size,
        "alpha": cfg.model.alpha,
        "weights": cfg.model.weights,  # a path: bundles carry only its name (convert/provenance.py)
        "input": spec.to_json(),
        "anchors": int(len(make_anchors(cfg.model.input_size))),
        **{k: v for k, v in asdict(cfg).items() if k not in ("model", "data_dirs", "out", "force")},
    }


def train_detector(cfg: DetectTrainConfig) -> dict[str, Any]:
    """Train into cfg.out; returns a summary."""
    out = Path(cfg.out)
    refuse_overwrite(out, cfg.force)
    wall_start, cpu_start = time.monotonic(), time.process_time()
    data = load_detection_data([Path(d) for d in cfg.data_dirs], test_fraction=cfg.test_fraction, seed=cfg.seed)
    split = make_detection_split(data, cfg.val_fraction, cfg.seed)
    for note in split.notes:
        say(note)
    backbone_cfg, weights_note = resolve_weights(cfg.model.backbone())
    cfg = replace(cfg, model=cfg.model.with_backbone(backbone_cfg))
    say(weights_note)
    say(f"{len(split.classes)} class{'es' if len(split.classes) != 1 else ''}, {len(split.train)} training, "
        f"{len(split.val)} validation and {len(split.test)} test photos")
    keras().utils.set_random_seed(cfg.seed)
    spec = InputSpec(height=cfg.model.input_size, width=cfg.model.input_size)
    anchors = make_anchors(cfg.model.input_size)
    model = build_detector(cfg.model, len(split.classes))
    config = effective_config(cfg, split, spec, [str(Path(d).resolve()) for d in cfg.data_dirs])
    with atomic_directory(out, force=cfg.force) as tmp:
        rd.write_run_inputs(tmp, list(split.classes), config, split.to_json())
        cache = tmp / ".cache"
        frozen = sub_model(model.input, model.get_layer(BOUNDARY_LAYER).output, "frozen_backbone")
        copies = cfg.augment_copies if cfg.augment is not None else 0
        val = extract(split.val, spec, frozen, anchors, cache / "val.npy", "backbone features of validation photos")
        train = extract(split.train, spec, frozen, anchors, cache / "train.npy",
                        f"backbone features of training photos (+{copies} augmented copies each)",
                        cfg.augment, copies, cfg.seed, cfg.batch_size)
        trainer = Trainer(cfg, model, split.val, val, split.classes, anchors)
        interrupted = False
        try:
            trainer.fit("head", train, cfg.epochs, cfg.learning_rate)
            if cfg.fine_tune_epochs:
                trainer.restore_best()
                unfrozen = unfreeze_top(model, top_layers(model))
                say(f"fine-tuning the backbone above {BOUNDARY_LAYER} ({unfrozen} layers with weights; "
                    "BatchNormalization stays frozen)")
                trainer.fit("fine_tune", train, cfg.fine_tune_epochs, cfg.fine_tune_learning_rate)
        except KeyboardInterrupt:
            if trainer.best_weights is None:
                raise
            interrupted = True
            say(f"interrupted: keeping the best model so far ({trainer.best_where})")
        trainer.restore_best()
        for layer in model.layers:
            layer.trainable = False
        model.save(tmp / rd.MODEL)
        metrics = {"task": TASK, "split": "validation (a seeded share of the training part)", "n": len(split.val),
                   "map50": trainer.best_map, "best": trainer.best_where}
        rd.write_json(tmp / rd.METRICS, metrics)
        write_history(trainer.history, tmp / rd.HISTORY, HISTORY_COLUMNS)
        save_training_curves(trainer.history, tmp / rd.CURVES_PNG, metrics=("loss", "map50"))
        shutil.rmtree(cache, ignore_errors=True)
        config.update(interrupted=interrupted, best=trainer.best_where, best_val_map50=trainer.best_map,
                      wall_seconds=round(time.monotonic() - wall_start, 1),
                      cpu_seconds=round(time.process_time() - cpu_start, 1))
        rd.write_json(tmp / rd.CONFIG, config)
    return {"run_dir": str(out.resolve()), "task": TASK, "val_map50": trainer.best_map, "n_val": len(split.val),
            "n_train": len(split.train), "n_test": len(split.test), "best": trainer.best_where,
            "interrupted": interrupted, "wall_seconds": config["wall_seconds"], "cpu_seconds": config["cpu_seconds"]}
