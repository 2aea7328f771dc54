"""Two-phase transfer learning into a RUN_DIR.

Phase 1 trains the softmax head on cached, pooled backbone features (clean
images plus `augment_copies` augmented copies of each training image).
Phase 2 fine-tunes the top block of the backbone (`fine_tune_layers`) at a
lower learning rate, on cached activations at that block's input. Everything
below the fine-tuned block is frozen in both phases, so computing it once per
image copy is exact, and it is what makes 224x224 training fit in minutes on
a CPU. Early stopping watches validation loss; the weights with the best
validation loss over both phases are the ones saved.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe import __version__
from edgepipe.core.errors import UserError
from edgepipe.core.progress import say
from edgepipe.core.files import atomic_directory, refuse_overwrite
from edgepipe.device.model.preprocess import InputSpec

from . import run_dir as rd
from .data import Split, augmenter, image_dataset, inputs_only, make_split
from .features import FeatureCache, write_cache
from .keras_io import keras
from .metrics import classification_report
from .options import TrainConfig
from .model import (FEATURES_LAYER, boundary_tensor, build_classifier, freeze_backbone, resolve_weights, sub_model,
                    top_block, unfreeze_top)
from .plots import save_confusion_matrix, save_training_curves


def make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()  # cluster from TF_CONFIG
    return tf.distribute.get_strategy()


def is_chief(strategy) -> bool:
    """Only the chief writes the run dir when several workers train together."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def make_optimizer(cfg: TrainConfig, learning_rate: float):
    optimizers = keras().optimizers
    if cfg.optimizer == "sgd":
        return optimizers.SGD(learning_rate=learning_rate, momentum=cfg.momentum)
    return optimizers.Adam(learning_rate=learning_rate)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """n / (classes * count): every class contributes equally to the loss, however many photos it has."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return {i: float(len(labels) / (num_classes * c)) if c else 0.0 for i, c in enumerate(counts)}


class BestWeights:
    """Keeps the full model's weights with the lowest validation loss seen in ANY phase.

    In memory, so Ctrl-C at any moment can still save the best model so far.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.best_loss = float("inf")
        self.weights: list | None = None
        self.where = ""

    def offer(self, val_loss: float, where: str) -> bool:
        if np.isfinite(val_loss) and val_loss < self.best_loss:
            self.best_loss, self.weights, self.where = float(val_loss), self.model.get_weights(), where
            return True
        return False

    def restore(self) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


def _epoch_callback(phase: str, epochs: int, best: BestWeights, history: list[dict]):
    class EpochLog(keras().callbacks.Callback):
        """One stderr line per epoch, a history row, and the best-weights bookkeeping."""

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"phase": phase, "epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
            history.append(row)
            improved = best.offer(row.get("val_loss", float("inf")), f"{phase} epoch {epoch + 1}")
            say(
                f"{phase} epoch {epoch + 1}/{epochs}: loss {row.get('loss', float('nan')):.4f} "
                f"acc {row.get('accuracy', float('nan')):.4f} val_loss {row.get('val_loss', float('nan')):.4f} "
                f"val_acc {row.get('val_accuracy', float('nan')):.4f} ({time.monotonic() - self.start:.1f}s)"
                + (" *" if improved else "")
            )

    return EpochLog()


def _fit(model, train: FeatureCache, val: FeatureCache, cfg: TrainConfig, phase: str, epochs: int,
         learning_rate: float, best: BestWeights, history: list[dict], class_weight) -> None:
    k = keras()
    model.compile(optimizer=make_optimizer(cfg, learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    stop = k.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=False)
    model.fit(train.dataset(cfg.batch_size, shuffle_seed=cfg.seed), validation_data=val.dataset(cfg.batch_size),
              epochs=epochs, verbose=0, class_weight=class_weight,
              callbacks=[_epoch_callback(phase, epochs, best, history), stop])


def _extract(split: Split, cfg: TrainConfig, spec: InputSpec, frozen_fn, cache_dir: Path, name: str
             ) -> tuple[FeatureCache, FeatureCache]:
    """Run the frozen part once over val, train, and the augmented copies of train."""
    import tensorflow as tf

    copies = cfg.augment_copies if cfg.augment is not None and cfg.augment.enabled else 0
    augment = augmenter(cfg.augment, spec, cfg.seed) if copies else None
    signature = [tf.TensorSpec((None, spec.height, spec.width, 3), tf.float32)]

    @tf.function(input_signature=signature)
    def clean(images):
        return frozen_fn(images, training=False)

    @tf.function(input_signature=signature)
    def augmented(images):
        return frozen_fn(augment(images), training=False)

    def batches(samples, fn, repeats=1):
        for _ in range(repeats):
            for images, labels in image_dataset(samples, spec, cfg.batch_size):
                yield fn(images).numpy(), labels.numpy()

    val = write_cache(cache_dir / f"{name}_val.npy", batches(split.val, clean), len(split.val),
                      "features of validation images")

    def train_batches():
        yield from batches(split.train, clean)
        if copies:
            yield from batches(split.train, augmented, copies)

    total = len(split.train) * (1 + copies)
    what = f"features of training images (+{copies} augmented copies each)" if copies else "features of training images"
    train = write_cache(cache_dir / f"{name}_train.npy", train_batches(), total, what)
    return train, val


HISTORY_COLUMNS = ["phase", "epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def write_history(history: list[dict], path: Path, columns: list[str] = HISTORY_COLUMNS) -> None:
    """history.csv: `columns` first, then any other key some row has."""
    columns = columns + sorted({k for row in history for k in row} - set(columns))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    path.write_text(buffer.getvalue())


def effective_config(cfg: TrainConfig, split: Split, spec: InputSpec, strategy) -> dict[str, Any]:
    import tensorflow as tf

    return {
        "edgepipe_version": __version__,
        "tensorflow_version": tf.__version__,
        "data_dir": str(split.train_root),
        "data_dirs": [str(d) for d in split.data_dirs],
        "images_per_folder": split.images_per_folder(),
        "val_dir": str(Path(cfg.val_dir).resolve()) if cfg.val_dir else None,
        "labels": split.labels,
        "num_train": len(split.train),
        "num_val": len(split.val),
        "num_skipped": len(split.skipped),
        **asdict(cfg.model),
        "input": spec.to_json(),
        **{k: v for k, v in asdict(cfg).items() if k not in ("model", "data_dirs", "out", "val_dir", "augment", "force")},
        "augment": asdict(cfg.augment) if cfg.augment is not None else None,
        "replicas": int(strategy.num_replicas_in_sync),
    }


@dataclass
class Network:
    """The classifier and where training cuts it: `boundary` is the input of the fine-tuned
    top block (`features` when nothing is fine-tuned), below which everything is frozen."""

    model: Any
    top: list
    features: Any
    boundary: Any


@dataclass
class Fitted:
    """What the two training phases leave: the best weights, the epoch log, the validation cache."""

    best: BestWeights
    history: list[dict]
    interrupted: bool
    boundary_val: FeatureCache


def build_network(cfg: TrainConfig, num_classes: int, strategy) -> Network:
    with strategy.scope():
        model = build_classifier(cfg.model, num_classes)
    fine_tune = cfg.fine_tune_epochs > 0 and cfg.fine_tune_layers > 0
    top = top_block(model, cfg.fine_tune_layers) if fine_tune else []
    features = model.get_layer(FEATURES_LAYER).output
    return Network(model, top, features, boundary_tensor(model, top) if top else features)


def fit_phases(cfg: TrainConfig, split: Split, spec: InputSpec, net: Network, strategy, cache_dir: Path) -> Fitted:
    """Cache the frozen part's outputs once, train the head on them, then fine-tune the top block.

    Ctrl-C keeps the best weights so far (when there are any) instead of losing the run.
    """
    best, history = BestWeights(net.model), []
    prefix = sub_model(net.model.input, net.boundary, "frozen_backbone")
    boundary_train, boundary_val = _extract(split, cfg, spec, prefix, cache_dir, "boundary")
    try:
        if net.top:
            pool = sub_model(net.boundary, net.features, "top_block_pooled")

            def pooled(batch: np.ndarray) -> np.ndarray:
                return pool(batch, training=False).numpy()

            pooled_train = boundary_train.map(pooled, cache_dir / "pooled_train.npy")
            pooled_val = boundary_val.map(pooled, cache_dir / "pooled_val.npy")
        else:
            pooled_train, pooled_val = boundary_train, boundary_val
        class_weight = (balanced_class_weights(pooled_train.labels, len(split.labels))
                        if cfg.class_weights else None)
        with strategy.scope():
            head = sub_model(net.features, net.model.output, "head")
            _fit(head, pooled_train, pooled_val, cfg, "head", cfg.epochs, cfg.learning_rate, best, history,
                 class_weight)
            best.restore()
            if net.top:
                _fine_tune(cfg, net, boundary_train, boundary_val, best, history, class_weight)
    except KeyboardInterrupt:
        if best.weights is None:
            raise
        say(f"interrupted: keeping the best model so far ({best.where}, val_loss {best.best_loss:.4f})")
        return Fitted(best, history, True, boundary_val)
    return Fitted(best, history, False, boundary_val)


def _fine_tune(cfg: TrainConfig, net: Network, train: FeatureCache, val: FeatureCache, best: BestWeights,
               history: list[dict], class_weight) -> None:
    random_init = cfg.model.weights == "none"
    unfrozen = unfreeze_top(net.model, net.top, train_batch_norm=random_init)
    say(f"fine-tuning the top {len(net.top)} backbone layers ({unfrozen} with weights; "
        + ("BatchNormalization trains: random initial weights)" if random_init
           else "BatchNormalization stays frozen)"))
    suffix = sub_model(net.boundary, net.model.output, "fine_tuned_top")
    _fit(suffix, train, val, cfg, "fine_tune", cfg.fine_tune_epochs, cfg.fine_tune_learning_rate, best, history,
         class_weight)


def save_results(root: Path, net: Network, fitted: Fitted, cfg: TrainConfig, split: Split) -> dict[str, Any]:
    """The best weights scored on the held-out images, saved with their metrics, history and plots."""
    fitted.best.restore()
    freeze_backbone(net.model)
    final = sub_model(net.boundary, net.model.output, "final")  # boundary is `features` when nothing is fine-tuned
    scores = final.predict(inputs_only(fitted.boundary_val.dataset(cfg.batch_size)), verbose=0)
    report = classification_report(fitted.boundary_val.labels, None, split.labels, scores=scores)
    net.model.save(root / rd.MODEL)
    (root / rd.METRICS).write_text(json.dumps(report, indent=2))
    write_history(fitted.history, root / rd.HISTORY)
    save_confusion_matrix(report, root / rd.CONFUSION_PNG)
    save_training_curves(fitted.history, root / rd.CURVES_PNG)
    return report


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train into cfg.out; returns a summary. Raises KeyboardInterrupt only if nothing was trained yet."""
    out = Path(cfg.out)
    refuse_overwrite(out, cfg.force)
    wall_start, cpu_start = time.monotonic(), time.process_time()
    split = make_split(cfg.data_dirs, cfg.val_split, cfg.seed, cfg.val_dir)
    if cfg.background_class is not None and cfg.background_class not in split.labels:
        raise UserError(f"--background-class {cfg.background_class!r} is not a class folder of the data "
                        f"({', '.join(split.labels)}); add DATA/{cfg.background_class}/ with images of none of the classes")
    model_cfg, weights_note = resolve_weights(cfg.model)
    cfg = replace(cfg, model=model_cfg)  # config.json records the weights file actually used
    say(weights_note)
    say(f"{len(split.labels)} classes, {len(split.train)} training and {len(split.val)} validation images"
        + (f", {len(split.skipped)} files skipped: unreadable or not images (see {rd.SKIPPED})" if split.skipped else ""))
    keras().utils.set_random_seed(cfg.seed)
    spec = InputSpec(height=cfg.model.input_size, width=cfg.model.input_size)
    strategy = make_strategy(cfg.strategy)
    net = build_network(cfg, len(split.labels), strategy)
    config = effective_config(cfg, split, spec, strategy)
    config["fine_tune_layers_effective"] = len(net.top)

    target = out if is_chief(strategy) else Path(tempfile.mkdtemp(prefix="edgepipe-worker-")) / "run"
    with atomic_directory(target, force=cfg.force) as tmp:
        rd.write_run_inputs(tmp, split.labels, config, split.to_json(), split.skipped)
        fitted = fit_phases(cfg, split, spec, net, strategy, tmp / ".cache")
        report = save_results(tmp, net, fitted, cfg, split)
        shutil.rmtree(tmp / ".cache", ignore_errors=True)
        config.update(interrupted=fitted.interrupted, best=fitted.best.where, best_val_loss=fitted.best.best_loss,
                      wall_seconds=round(time.monotonic() - wall_start, 1),
                      cpu_seconds=round(time.process_time() - cpu_start, 1))
        rd.write_json(tmp / rd.CONFIG, config)
    if target != out:
        shutil.rmtree(target.parent, ignore_errors=True)
    return {"run_dir": str(out.resolve()), "accuracy": report["accuracy"], "macro_f1": report["macro_f1"],
            "n_val": report["n"], "n_train": len(split.train), "skipped": len(split.skipped),
            "best": fitted.best.where, "interrupted": fitted.interrupted, "wall_seconds": config["wall_seconds"],
            "cpu_seconds": config["cpu_seconds"]}
