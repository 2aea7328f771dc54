"""From a folder of class sub-folders to a validated, stratified split of
readable images, and from a list of files to a streamed tf.data pipeline.

Every file is decoded once up front with the device's `load_image`, so a
corrupt photo is reported (skipped.txt) before training starts instead of
crashing an epoch half an hour in. The pipeline decodes, resizes and
normalises with the device's own functions (inside `tf.numpy_function`), so
the pixels the model trains on are the pixels it sees on the Pi.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import IMAGE_SUFFIXES, ImageReadError, InputSpec, load_image
from edgepipe.core.progress import track

from .options import Augmentation


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class ScannedFolder:
    """Readable images of one folder, plus the files that could not be decoded."""

    root: Path
    labels: list[str]
    samples: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.labels, 0)
        for s in self.samples:
            counts[self.labels[s.label]] += 1
        return counts


@dataclass
class Split:
    labels: list[str]
    train: list[Sample]
    val: list[Sample]
    train_root: Path  # the first data folder
    skipped: list[tuple[Path, str]]
    data_dirs: list[Path] = field(default_factory=list)  # every data folder, in the order given

    def to_json(self) -> dict:
        """split.json: paths relative to data_dir, the first folder (absolute for the other folders
        and for a --val-dir elsewhere)."""

        def entries(samples: list[Sample]) -> list[list]:
            return [[_relative(s.path, self.train_root), s.label] for s in samples]

        return {"data_dir": str(self.train_root), "data_dirs": [str(d) for d in self.data_dirs or [self.train_root]],
                "labels": self.labels, "train": entries(self.train), "val": entries(self.val)}

    def images_per_folder(self) -> dict[str, int]:
        """How many readable images each data folder gave (training and validation together)."""
        counts = {str(d): 0 for d in self.data_dirs}
        for sample in self.train + self.val:
            owner = next((d for d in self.data_dirs if sample.path.is_relative_to(d)), None)
            if owner is not None:
                counts[str(owner)] += 1
        return counts


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def image_files(root: str | Path) -> list[Path]:
    """Every image under `root`, at any depth (following symlinked folders), sorted; hidden ones skipped."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder of images")
    files = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        files += [Path(folder) / n for n in names if _is_image(Path(folder) / n)]
    if not files:
        raise UserError(f"{root} has no images (.jpg, .jpeg, .png, .bmp, .webp)")
    return sorted(files)


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of `root` in sorted order (hidden ones ignored): the class names."""
    if not root.exists():
        raise UserError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; pass a folder with one sub-folder of images per class")
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def probe(paths: list[Path], progress: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Decode every file once; return the readable ones and (path, reason) for the rest."""
    readable, skipped = [], []
    for path in track(paths, len(paths), "checking images") if progress else paths:
        try:
            load_image(path)
            readable.append(path)
        except ImageReadError as exc:
            skipped.append((path, str(exc)))
    return readable, skipped


def scan_folder(root: str | Path, labels: list[str] | None = None) -> ScannedFolder:
    """Find and probe DATA/<label>/*.{jpg,jpeg,png,bmp,webp} (any case).

    With `labels` (a validation folder), its class folders must be a subset of
    them and keep their indices; otherwise the sorted folder names are the labels.
    """
    root = Path(root).resolve()
    folders = class_folders(root)
    names = [f.name for f in folders]
    if labels is None:
        labels = names
        if not folders:
            raise UserError(f"data folder {root} has no class sub-folders; put each class's images in DATA/<label>/")
    else:
        unknown = sorted(set(names) - set(labels))
        if unknown:
            raise UserError(f"validation folder {root} has classes the training folder lacks: {', '.join(unknown)}")
    files: list[Path] = []
    owners: list[int] = []
    not_images: list[tuple[Path, str]] = []
    for folder in folders:
        if folder.name not in labels:
            continue
        entries = sorted(folder.iterdir())
        images = [p for p in entries if _is_image(p)]
        not_images += [(p, f"not an image file ({p.suffix or 'no extension'}; images are "
                           f"{', '.join(IMAGE_SUFFIXES)})") for p in entries
                       if p.is_file() and not p.name.startswith(".") and not _is_image(p)]
        files += images
        owners += [labels.index(folder.name)] * len(images)
    if not files:
        raise UserError(f"data folder {root} has no images (.jpg, .jpeg, .png, .bmp, .webp) in its class sub-folders")
    readable, skipped = probe(files)
    skipped = sorted(skipped + not_images)
    owner_of = dict(zip(files, owners))
    samples = [Sample(p, owner_of[p]) for p in readable]
    return ScannedFolder(root, list(labels), samples, skipped)


def scan_folders(roots: Sequence[str | Path]) -> ScannedFolder:
    """Several data folders as one: classes of the same name merge (e.g. the original photos and
    sorted field frames); the labels are the sorted union of every folder's class names."""
    scanned = [scan_folder(root) for root in roots]
    if len(scanned) == 1:
        return scanned[0]
    resolved = [s.root for s in scanned]
    if len(set(resolved)) != len(resolved):
        raise UserError("the same data folder is given twice; pass each folder once")
    labels = sorted({label for s in scanned for label in s.labels})
    samples = [Sample(x.path, labels.index(s.labels[x.label])) for s in scanned for x in s.samples]
    return ScannedFolder(scanned[0].root, labels, samples, [bad for s in scanned for bad in s.skipped])


def validate_classes(scanned: ScannedFolder) -> None:
    """Refuse data that cannot train a classifier, before any training starts."""
    counts = scanned.counts()
    if len(counts) < 2:
        raise UserError(
            f"data folder {scanned.root} has {len(counts)} class with images ({', '.join(counts) or 'none'}); "
            "a classifier needs at least 2 class sub-folders"
        )
    small = [f"{label} ({n})" for label, n in counts.items() if n < 2]
    if small:
        raise UserError(
            f"class folders with fewer than 2 readable images: {', '.join(small)}; add images or remove the folder"
        )


def stratified_split(samples: list[Sample], labels: list[str], val_fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Per class, a seeded shuffle then round(n * fraction) images to validation.

    Stratifying keeps every class in both parts in the folder's proportions;
    a class the fraction would leave without training or validation images
    is an error rather than a silently untested class.
    """
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for index, label in enumerate(labels):
        members = [s for s in samples if s.label == index]
        rng.shuffle(members)
        n_val = round(len(members) * val_fraction)
        if n_val == 0 or n_val == len(members):
            part = "validation" if n_val == 0 else "training"
            raise UserError(
                f"class {label!r} has {len(members)} images: --val-split {val_fraction} leaves its {part} part empty; "
                "add images, change --val-split or pass --val-dir"
            )
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train, key=lambda s: s.path), sorted(val, key=lambda s: s.path)


def make_split(data_dir: str | Path | Sequence[str | Path], val_fraction: float, seed: int,
               val_dir: str | Path | None = None) -> Split:
    """The training/validation split of one data folder, or of several merged (see scan_folders)."""
    roots = [data_dir] if isinstance(data_dir, (str, Path)) else list(data_dir)
    train_folder = scan_folders(roots)
    validate_classes(train_folder)
    data_dirs = [Path(r).resolve() for r in roots]
    if val_dir is None:
        train, val = stratified_split(train_folder.samples, train_folder.labels, val_fraction, seed)
        return Split(train_folder.labels, train, val, train_folder.root, train_folder.skipped, data_dirs)
    val_folder = scan_folder(val_dir, labels=train_folder.labels)
    empty = [label for label, n in val_folder.counts().items() if n == 0]
    if empty:
        raise UserError(f"validation folder {val_folder.root} has no readable images of: {', '.join(empty)}")
    return Split(train_folder.labels, train_folder.samples, val_folder.samples, train_folder.root,
                 train_folder.skipped + val_folder.skipped, data_dirs)


# --- tf.data -----------------------------------------------------------------


def load_for_model(path: bytes | str, spec: InputSpec):
    """What the device does to a file, as float32 HxWx3 (the body of the tf.numpy_function)."""
    from edgepipe.device.model.preprocess import to_model_float

    if isinstance(path, bytes):
        path = path.decode("utf-8")
    return to_model_float(load_image(path), spec)


def image_dataset(samples: list[Sample], spec: InputSpec, batch_size: int):
    """Batches of (normalised image, label) decoded from disk as they are consumed, in order."""
    import tensorflow as tf

    paths = tf.constant([str(s.path) for s in samples], dtype=tf.string)
    labels = tf.constant([s.label for s in samples], dtype=tf.int32)

    def load(path, label):
        image = tf.numpy_function(lambda p: load_for_model(p, spec), [path], tf.float32, stateful=False)
        image.set_shape((spec.height, spec.width, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _drop_label(image, label):
    return image


def inputs_only(dataset):
    """The same batches without labels, for `model.predict`."""
    return dataset.map(_drop_label)


def augmenter(aug: Augmentation, spec: InputSpec, seed: int):
    """A function batch -> augmented batch, for normalised images.

    Brightness and contrast are done with tf.image and clipped to the
    normalised pixel range, because Keras' RandomContrast clips to [0, 255].
    """
    import tensorflow as tf

    from .keras_io import keras

    layers = keras().layers
    geometric = []
    if aug.flip:
        geometric.append(layers.RandomFlip("horizontal", seed=seed))
    if aug.rotation > 0:
        geometric.append(layers.RandomRotation(aug.rotation, fill_mode="reflect", seed=seed + 1))
    if aug.zoom > 0:
        geometric.append(layers.RandomZoom((-aug.zoom, aug.zoom), fill_mode="reflect", seed=seed + 2))
    low, high = (0.0 - spec.mean) / spec.std, (255.0 - spec.mean) / spec.std
    generator = tf.random.Generator.from_seed(seed + 3)

    def apply(images):
        for layer in geometric:
            images = layer(images, training=True)
        n = tf.shape(images)[0]
        if aug.brightness > 0:
            shift = generator.uniform((n, 1, 1, 1), -aug.brightness, aug.brightness) * (high - low)
            images = images + shift
        if aug.contrast > 0:
            factor = generator.uniform((n, 1, 1, 1), 1 - aug.contrast, 1 + aug.contrast)
            mean = tf.reduce_mean(images, axis=(1, 2), keepdims=True)
            images = (images - mean) * factor + mean
        return tf.clip_by_value(images, low, high)

    return apply
