"""`edgepipe evaluate` on a detector: COCO mAP, per-class AP and precision/recall on photos with boxes.

A bundle or .tflite runs through the device runtime (its preprocessing, its
TFLite_Detection_PostProcess op, its output reading), a run dir through
TensorFlow with the op's algorithm in numpy: the code convert measures its
candidates with (measure.py). The photos are a data folder in any format train
reads (every photo, or the test part train holds out of it: the data set's
fixed split, else the seeded share the model was trained with), or a part of
a run's split.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text, refuse_overwrite
from edgepipe.core.progress import say
from edgepipe.device.model.detect_postprocess import DEFAULT_SCORE_THRESHOLD
from edgepipe.device.model.preprocess import InputSpec

from .. import run_dir as rd
from ..options import EvaluateOptions
from .boxes import BoxedImage
from .data import DetectionPhotos, load_detection_photos
from .folders import NoAnnotations
from .measure import Detection, Photos, detection_metrics, detections_in, keras_detections, load_photos
from .metrics import DetectionMetrics, save_detection_curves

PR_CURVES_PNG = "precision_recall.png"
DATA_PARTS = ("test", "all")  # what --split takes beside DATA_DIR for a detector
RUN_PARTS = ("train", "val", "test")  # a detection run's split.json


@dataclass
class DetectEvaluation:
    """The report (metrics.json's content), the metrics behind it and what they were computed with."""

    result: dict[str, Any]
    metrics: DetectionMetrics
    engine: str
    which: str  # which photos, in words
    skipped: list[Path]


@dataclass
class _Model:
    labels: list[str]
    spec: InputSpec
    engine: str
    score_threshold: float  # what the device shows: precision and recall count detections scoring this or more
    training: dict[str, Any]  # the training config it records (the split's seed and test fraction), or {}
    found: Callable[[Photos], list[list[Detection]]]


def _open(path: Path, options: EvaluateOptions) -> _Model:
    if rd.is_run_dir(path) or path.name == rd.MODEL:
        return _open_run(path, options)
    from edgepipe.device.model.classifier import open_classifier

    from ..evaluate import require_labels

    require_labels(path, options.labels)

    detector = open_classifier(path, labels=options.labels)
    if not detector.is_detector:
        raise UserError(f"{path} is not a detector")
    training = detector.bundle.manifest.get("training", {}) if detector.bundle else {}
    return _Model(detector.labels, detector.input_spec, f"tflite:{detector.backend}:{detector.accelerator}",
                  detector.detect_options.score_threshold, training if isinstance(training, dict) else {},
                  lambda photos: [detections_in(detector, p) for p in photos.pixels])


def _open_run(path: Path, options: EvaluateOptions) -> _Model:
    from .anchors import make_anchors
    from .decode import PostprocessConfig

    run = rd.load_run(path)
    labels = run.labels
    if options.labels:
        from edgepipe.device.model.labels import read_labels

        labels = read_labels(options.labels)
    if len(labels) != len(run.labels):
        raise UserError(f"{options.labels} names {len(labels)} classes but {run.root} detects {len(run.labels)}")
    model, spec = run.load_model(), run.input_spec
    anchors, cfg = make_anchors(spec.height), PostprocessConfig(**run.config.get("postprocess", {}))
    return _Model(labels, spec, "keras", DEFAULT_SCORE_THRESHOLD, run.config,
                  lambda photos: keras_detections(model, photos, spec, anchors, cfg, options.batch_size))


def _data_photos(options: EvaluateOptions, model: _Model) -> DetectionPhotos:
    from ..data import class_folders
    from .trainer import DetectTrainConfig

    folder = Path(options.data_dir)
    part = options.split or "all"
    if part not in DATA_PARTS:
        raise UserError(f"--split {part} names a part of a run's split; with DATA_DIR a detector takes "
                        f"--split {' or '.join(DATA_PARTS)}")
    fraction = model.training.get("test_fraction", DetectTrainConfig.test_fraction)  # train's defaults for a bare .tflite
    seed = model.training.get("seed", DetectTrainConfig.seed)
    try:
        return load_detection_photos([folder], part, test_fraction=float(fraction), seed=int(seed))
    except NoAnnotations:
        classes = [c.name for c in class_folders(folder)]
        if not classes:
            raise
        raise UserError(f"{folder} has no boxes, only sub-folders ({', '.join(classes[:4])}"
                        f"{' ...' if len(classes) > 4 else ''}): a classifier's photos; this model is a detector: "
                        "evaluate it on photos with boxes (Pascal VOC, TF CSV, YOLO or COCO)") from None


def _run_photos(options: EvaluateOptions) -> DetectionPhotos:
    from .trainer import TASK, boxed_images

    part = options.split
    if options.run is None and not (rd.is_run_dir(options.model) or options.model.name == rd.MODEL):
        raise UserError(f"--split {part} without DATA_DIR takes the photos from a run's split.json: pass --run RUN "
                        f"(the run {options.model} was converted from), or DATA_DIR")
    run = rd.load_run(options.run or options.model)
    if run.config.get("task") != TASK or run.split is None:
        raise UserError(f"{run.root} is not a detector's run dir; pass the run `edgepipe train --task detect` wrote "
                        "(--run RUN)")
    if part not in RUN_PARTS:
        raise UserError(f"--split {part} needs DATA_DIR; a run's split has the parts {', '.join(RUN_PARTS)}")
    images = boxed_images(run.split, part)
    if not images:
        raise UserError(f"{run.root}'s split has no {part} photos")
    return DetectionPhotos(tuple(run.split.get("classes", run.labels)), tuple(images),
                           f"the {part} part of {run.root}'s split", ())


def _relabelled(photos: DetectionPhotos, labels: Sequence[str], model: Path) -> list[BoxedImage]:
    """The photos' boxes with class indices into the model's labels (matched by name)."""
    missing = [name for name in photos.classes if name not in labels]
    if missing:
        raise UserError(f"the photos have boxes of {', '.join(repr(m) for m in missing)}, which {model} does not "
                        f"detect (its labels: {', '.join(labels[:10])}{' ...' if len(labels) > 10 else ''})")
    index = np.array([list(labels).index(name) for name in photos.classes], np.int32)
    return [replace(image, classes=index[image.classes]) for image in photos.images]


def evaluate_detector(options: EvaluateOptions) -> DetectEvaluation:
    """Measure the detector at options.model on the photos options names; write --out's files when asked."""
    path = options.model
    if options.unknown_dir is not None:
        raise UserError("--unknown-dir measures a classifier's \"unknown\"; a detector reports only what it finds")
    if options.accelerator != "cpu":
        raise UserError(f"--accelerator {options.accelerator} evaluates classifiers; a detector is evaluated on the cpu")
    if options.out is not None:
        for name in (rd.METRICS, PR_CURVES_PNG):
            refuse_overwrite(options.out / name, options.force)
    model = _open(path, options)
    chosen = _data_photos(options, model) if options.data_dir is not None else _run_photos(options)
    for note in chosen.notes:
        say(note)
    images = _relabelled(chosen, model.labels, path)
    photos: Photos = load_photos(images, model.spec, "photos")
    kept = {id(image) for image in photos.images}
    skipped = [image.path for image in images if id(image) not in kept]
    metrics = detection_metrics(photos.images, model.found(photos), model.labels, model.spec, model.score_threshold)
    result = {"task": "detect", **metrics.to_json(), "photos": chosen.which, "model": str(path.resolve()),
              "engine": model.engine, "skipped": [str(p) for p in skipped]}
    if options.out is not None:
        atomic_write_text(options.out / rd.METRICS, json.dumps(result, indent=2))
        save_detection_curves(metrics, options.out / PR_CURVES_PNG)
    return DetectEvaluation(result, metrics, model.engine, chosen.which, skipped)
