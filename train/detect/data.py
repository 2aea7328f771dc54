"""From data folders in any common box format to one validated, split
detection data set (`load_detection_data`).

As for classification: several folders merge by class name, every image is
decoded once up front (a corrupt photo is reported, not met mid-training),
and the split is the data set's own when it has one, else a seeded split by
image. Every box is checked against the decoded image before training starts,
so bad data stops with one line naming the file and line.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgepipe.core.errors import UserError
from edgepipe.core.progress import track
from edgepipe.device.model.preprocess import ImageReadError, load_image

from .boxes import BoxedImage, DetectionData, boxed_image
from .annotation_files import listing
from .folders import Annotated, FolderData, read_folder, unknown_label

__all__ = ["BoxedImage", "DetectionData", "DetectionPhotos", "load_detection_data", "load_detection_photos"]

FEW_BOXES = 10  # a class with fewer training boxes than this gets a note: it will be detected poorly


def _decoded_size(path: Path) -> tuple[int, int] | str:
    """(width, height) of the image as the device decodes it, or why it cannot be read."""
    try:
        height, width = load_image(path).shape[:2]
    except ImageReadError as exc:
        return str(exc)
    return width, height


def _checked(folder: FolderData, class_index: dict[str, int], sizes: dict[Path, tuple[int, int] | str]
             ) -> tuple[list[tuple[BoxedImage, str | None]], list[str]]:
    """The folder's readable images as BoxedImages (with their fixed part), and the unreadable ones."""
    images, unreadable = [], []
    for item in folder.images:
        size = sizes[item.path]
        if isinstance(size, str):
            unreadable.append(item.path.name)
            continue
        declared = item.record.size
        if declared is not None and declared != size:
            why = ("its EXIF orientation turns it, the labelling tool did not: save the photo upright and label it "
                   "again" if declared == size[::-1] else "the boxes were drawn on another version of the photo")
            raise UserError(f"{item.record.source}: says {item.path.name} is {declared[0]}x{declared[1]} but the "
                            f"image is {size[0]}x{size[1]}; {why}")
        images.append((boxed_image(item.path, size[0], size[1], item.record, class_index), item.part))
    return images, unreadable


def _stratified_by_image(images: list[BoxedImage], test_fraction: float, seed: int,
                         box_counts: Counter) -> tuple[list[BoxedImage], list[BoxedImage]]:
    """A seeded split by image that keeps every class in both parts where it can: images are grouped
    by their rarest class (images without boxes form a group too), and each group is split on its own."""
    groups: dict[int, list[BoxedImage]] = defaultdict(list)
    for image in images:
        rarest = min((int(c) for c in set(image.classes.tolist())), key=lambda c: (box_counts[c], c), default=-1)
        groups[rarest].append(image)
    keys = sorted(groups)
    shares = [len(groups[k]) * test_fraction for k in keys]
    n_test = [int(share) for share in shares]
    # Largest remainders first, so the parts add up to round(images x fraction) however small the groups.
    by_remainder = sorted(range(len(keys)), key=lambda i: (-(shares[i] - n_test[i]), i))
    for i in by_remainder[:round(len(images) * test_fraction) - sum(n_test)]:
        n_test[i] += 1
    rng = random.Random(seed)
    train, test = [], []
    for key, n in zip(keys, n_test):
        members = sorted(groups[key], key=lambda i: str(i.path))
        rng.shuffle(members)
        test += members[:n]
        train += members[n:]
    return train, test


def _class_notes(classes: tuple[str, ...], train: list[BoxedImage], test: list[BoxedImage]) -> list[str]:
    """Stop when a class has nothing to learn from; note what will be weak or untested."""
    in_train = Counter(int(c) for image in train for c in image.classes)
    in_test = Counter(int(c) for image in test for c in image.classes)
    untrained = [classes[c] for c in range(len(classes)) if not in_train[c]]
    if untrained:
        raise UserError(f"class {untrained[0]!r} has no boxes in the training part; add images of it "
                        "(or move some from the test part)")
    notes = []
    few = [f"{classes[c]} ({in_train[c]})" for c in range(len(classes)) if in_train[c] < FEW_BOXES]
    if few:
        notes.append(f"classes with fewer than {FEW_BOXES} training boxes will be found poorly: {', '.join(few)}")
    untested = [classes[c] for c in range(len(classes)) if not in_test[c]]
    if untested:
        notes.append(f"classes with no boxes in the test part (their AP cannot be measured): {', '.join(untested)}")
    return notes


def _folders(dirs: Sequence[Path]) -> list[FolderData]:
    roots = [Path(d).resolve() for d in dirs]
    if not roots:
        raise UserError("no data folder given")
    if len(set(roots)) != len(roots):
        raise UserError("the same data folder is given twice; pass each folder once")
    folders = [read_folder(root) for root in roots]
    owners: dict[Path, Path] = {}
    for folder in folders:
        for item in folder.images:
            if owners.setdefault(item.path, folder.root) != folder.root:
                raise UserError(f"{item.path} is in both {owners[item.path]} and {folder.root}; "
                                "do not pass a folder and a folder inside it")
        bad = unknown_label([b for item in folder.images for b in item.record.boxes], folder.declared)
        if bad is not None:
            raise UserError(f"{bad.where}: class {bad.label!r} is not in the data set's class list "
                            f"({listing(list(folder.declared))}); fix the label or add the class")
    return folders


@dataclass
class _Read:
    """Every readable annotated image of the folders, merged, before any split."""

    classes: tuple[str, ...]
    fixed: dict[str, list[BoxedImage]]  # "train" / "test": the parts a data set's own split gives
    loose: list[BoxedImage]  # images no fixed split places
    notes: list[str]


def _read(dirs: Sequence[Path]) -> _Read:
    folders = _folders(dirs)
    notes = [f"{f.root}: {f.format}, {len(f.images)} annotated images" for f in folders]
    notes += [note for f in folders for note in f.notes]
    names = sorted({b.label for f in folders for item in f.images for b in item.record.boxes})
    if not names:
        raise UserError(f"no boxes in {', '.join(str(f.root) for f in folders)}; label some objects first")
    by_case: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_case[name.strip().lower()].append(name)
    notes += [f"classes {' and '.join(repr(n) for n in same)} differ only in case or spaces: separate classes; "
              "rename the boxes if they are one" for same in by_case.values() if len(same) > 1]
    unused = sorted({n for f in folders for n in f.declared} - set(names))
    if unused:
        notes.append(f"classes listed but with no boxes are left out: {listing(unused)}")
    class_index = {name: i for i, name in enumerate(names)}
    everything: list[Annotated] = [item for f in folders for item in f.images]
    sizes = {item.path: _decoded_size(item.path) for item in track(everything, len(everything), "checking images")}
    fixed: dict[str, list[BoxedImage]] = {"train": [], "test": []}
    loose: list[BoxedImage] = []
    for folder in folders:
        images, unreadable = _checked(folder, class_index, sizes)
        if unreadable:
            notes.append(f"{folder.root}: {len(unreadable)} images cannot be read and are left out: {listing(unreadable)}")
        for image, part in images:
            (fixed[part] if part else loose).append(image)
    return _Read(tuple(names), fixed, loose, notes)


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise UserError(f"test fraction {test_fraction} must be between 0 and 1")


def _split(read: _Read, test_fraction: float, seed: int) -> tuple[list[BoxedImage], list[BoxedImage]]:
    """(train, test): the fixed parts, plus a seeded, stratified split of the images they do not place."""
    box_counts = Counter(int(c) for image in read.loose for c in image.classes)
    train, test = _stratified_by_image(read.loose, test_fraction, seed, box_counts)
    return read.fixed["train"] + train, read.fixed["test"] + test


def _sorted(images: list[BoxedImage]) -> tuple[BoxedImage, ...]:
    return tuple(sorted(images, key=lambda i: str(i.path)))


def load_detection_data(dirs: Sequence[Path], *, test_fraction: float = 0.2, seed: int = 0) -> DetectionData:
    """Read, check and split detection data from one or more folders (classes merge by name).

    `test_fraction` and `seed` split images a folder does not assign to a part
    itself (train_labels.csv / test_labels.csv, a data.yaml's train and val,
    train/ and test/ sub-folders keep their own split).
    """
    _check_fraction(test_fraction)
    read = _read(dirs)
    train, test = _split(read, test_fraction, seed)
    if not train or not test:
        raise UserError(f"{len(train) + len(test)} readable annotated images cannot be split into training and "
                        "test parts; add images")
    notes = list(read.notes)
    empty = [image.path.name for image in train + test if not len(image.boxes)]
    if empty:
        notes.append(f"{len(empty)} images have no boxes (kept: they teach what is not an object): {listing(empty)}")
    notes += _class_notes(read.classes, train, test)
    return DetectionData(read.classes, _sorted(train), _sorted(test), tuple(notes))


@dataclass(frozen=True)
class DetectionPhotos:
    """Photos with boxes to measure a detector on, and which photos of the data they are."""

    classes: tuple[str, ...]
    images: tuple[BoxedImage, ...]
    which: str  # said to the user: "the test part of the data set's fixed split", ...
    notes: tuple[str, ...]


def load_detection_photos(dirs: Sequence[Path], part: str, *, test_fraction: float = 0.2,
                          seed: int = 0) -> DetectionPhotos:
    """Every annotated photo of the folders (`part` "all"), or the test part `train --task detect`
    holds out of them ("test"): the data set's fixed split when it has one, else the seeded share
    `test_fraction` and `seed` give, as load_detection_data makes it."""
    _check_fraction(test_fraction)
    read = _read(dirs)
    if part == "all":
        return DetectionPhotos(read.classes, _sorted(read.fixed["train"] + read.fixed["test"] + read.loose),
                               "every annotated photo", tuple(read.notes))
    if part != "test":
        raise ValueError(f"part {part!r}")
    _, test = _split(read, test_fraction, seed)
    if not test:
        raise UserError(f"no test photos in {', '.join(str(d) for d in dirs)}; evaluate every photo (--split all)")
    seeded = f"a seeded {test_fraction:.0%} (seed {seed})"
    which = ("the test part of the data set's fixed split" if not read.loose else
             f"the test part: the fixed split's, and {seeded} of the photos it does not place" if read.fixed["test"]
             else f"the test part train holds out: {seeded}")
    return DetectionPhotos(read.classes, _sorted(test), which, tuple(read.notes))
