"""Backbone activations computed once and streamed back from disk.

With the backbone frozen below the fine-tuned block, every epoch would
recompute the same (or, with augmentation, similar) activations: on a 2-core
CPU that is ~30 images/s at 224x224, minutes per epoch. So each image (and a
few augmented copies of each training image) goes through the frozen part
once; the activations go to a .npy memory map in a scratch folder and epochs
read batches from it, which keeps memory flat however big the data set is.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from edgepipe.core.progress import Progress


@dataclass
class FeatureCache:
    features: np.ndarray  # a read-only memmap, N x feature shape
    labels: np.ndarray  # int32, N

    def __len__(self) -> int:
        return len(self.labels)

    def dataset(self, batch_size: int, shuffle_seed: int | None = None):
        """Batches of (features, label); reshuffled every epoch when a seed is given."""
        import tensorflow as tf

        features, labels = self.features, self.labels
        ds = tf.data.Dataset.range(len(labels))
        if shuffle_seed is not None:
            ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)

        def fetch(index: np.ndarray):
            index = np.sort(index)  # sequential reads from the memmap
            return np.asarray(features[index], dtype=np.float32), labels[index]

        def load(index):
            x, y = tf.numpy_function(fetch, [index], (tf.float32, tf.int32), stateful=False)
            x.set_shape((None, *features.shape[1:]))
            y.set_shape((None,))
            return x, y

        ds = ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.prefetch(tf.data.AUTOTUNE)

    def map(self, fn: Callable[[np.ndarray], np.ndarray], path: Path, batch_size: int = 256) -> "FeatureCache":
        """Apply a frozen function (e.g. the pooling of a top block) to every row, into a new cache."""
        batches = (self.features[i : i + batch_size] for i in range(0, len(self), batch_size))
        return write_cache(path, ((fn(b), self.labels[i * batch_size:(i + 1) * batch_size])
                                  for i, b in enumerate(batches)), len(self))


def write_cache(path: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]], total: int,
                what: str = "") -> FeatureCache:
    """Write (features, labels) batches into a .npy memmap of `total` rows; shows progress when `what` names them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = None
    labels = np.zeros(total, dtype=np.int32)
    done = 0
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Progress(total, what)) if what else None
        for features, batch_labels in batches:
            features = np.asarray(features, dtype=np.float32)
            if out is None:
                out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(total, *features.shape[1:]))
            out[done : done + len(features)] = features
            labels[done : done + len(features)] = batch_labels
            done += len(features)
            if progress:
                progress.update(len(features))
    if out is None or done != total:
        raise AssertionError(f"feature cache {path}: wrote {done} rows, expected {total}")
    out.flush()
    del out
    return FeatureCache(np.load(path, mmap_mode="r"), labels)
