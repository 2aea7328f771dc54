"""`edgepipe evaluate`: one report for a Keras run and for a TFLite model or
bundle, so float, int8 and Edge TPU numbers can be compared line by line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text, refuse_overwrite
from edgepipe.device.model.labels import read_labels
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.device.model.unknown import UnknownRule, resolve

from . import run_dir as rd
from .data import Sample, ScannedFolder, image_files, probe, scan_folder
from .metrics import classification_report, unknown_report
from .options import EvaluateOptions
from .plots import save_confusion_matrix


@dataclass
class Evaluation:
    """The report (metrics.json's content) and what it was computed with."""

    result: dict[str, Any]
    report: dict[str, Any]
    engine: str
    skipped: list[Path]


@dataclass
class Scored:
    scores: np.ndarray
    y_true: np.ndarray
    labels: list[str]
    skipped: list[Path]
    engine: str
    # the same model on other images (readable ones only): their scores, and features when it gives them
    score_files: Callable[[list[Path]], tuple[np.ndarray, np.ndarray | None]]
    calibrated: UnknownRule | None = None  # the bundle's "unknown" rule (a run's: its background class only)
    features: np.ndarray | None = None  # the pooled features output of a bundle made by convert


def is_keras_model(path: Path) -> bool:
    return rd.is_run_dir(path) or path.suffix == ".keras"


def is_device_model(path: Path) -> bool:
    from edgepipe.device.model.bundle import is_bundle

    return path.suffix == ".tflite" or is_bundle(path)


def require_labels(path: Path, labels: Path | None) -> None:
    """A bare .tflite is evaluated with the labels file the user names (its class names meet the data's)."""
    if path.suffix == ".tflite" and not labels:
        raise UserError(f"{path} has no labels; pass --labels FILE")


def model_task(path: Path) -> str:
    """"detect" or "classify": what the bundle, run dir or .tflite at `path` says it is, without
    TensorFlow (for the command line's checks); "classify" when it cannot tell (evaluate says why)."""
    from edgepipe.device.model.bundle import is_bundle, load_bundle
    from edgepipe.device.model.detect_postprocess import graph_facts
    from edgepipe.device.model.tasks import DEFAULT_TASK

    if is_bundle(path):
        return load_bundle(path, verify=False).task
    run = path.parent if path.name == rd.MODEL else path
    if rd.is_run_dir(run) and (run / rd.CONFIG).is_file():
        return rd.load_run(run).config.get("task", DEFAULT_TASK)
    if path.suffix == ".tflite" and path.is_file():
        try:
            return "detect" if graph_facts(path.read_bytes(), str(path)).op_outputs is not None else DEFAULT_TASK
        except (OSError, UserError):
            return DEFAULT_TASK
    return DEFAULT_TASK


def _class_folder_samples(folder: Path, labels: list[str]) -> ScannedFolder:
    """DATA_DIR's class folders; photos with boxes (a detector's data) said as such."""
    from .detect.folders import read_folder

    try:
        return scan_folder(folder, labels=labels)
    except UserError as exc:
        try:
            found = read_folder(folder)
        except UserError:
            raise exc from None
        raise UserError(f"{folder} holds photos with boxes ({found.format}), for a detector; this model is a "
                        "classifier: evaluate it on a folder with one sub-folder of photos per class") from None


def _samples_for(args: EvaluateOptions, labels: list[str]) -> tuple[list[Sample], list[Path]]:
    """Readable (path, label index in `labels`) pairs from DATA_DIR or the run's split, plus unreadable files."""
    if args.split:
        run = rd.load_run(args.run or args.model)
        unknown = sorted(set(run.labels) - set(labels))
        if unknown:
            raise UserError(f"the model has no labels for the run's classes {', '.join(unknown)}")
        pairs = run.split_files(args.split)
        readable, skipped = probe([p for p, _ in pairs], progress=False)
        index = {p: labels.index(run.labels[i]) for p, i in pairs}
        return [Sample(p, index[p]) for p in readable], [p for p, _ in skipped]
    scanned = _class_folder_samples(args.data_dir, labels)
    return scanned.samples, [p for p, _ in scanned.skipped]


def _score_keras(args: EvaluateOptions, path: Path) -> Scored:
    from .data import image_dataset, inputs_only
    from .keras_io import load_keras_model

    in_run_dir = rd.is_run_dir(path) or (path.name == rd.MODEL and (path.parent / rd.CONFIG).is_file())
    calibrated = None
    if in_run_dir:
        run = rd.load_run(path)
        labels = read_labels(args.labels) if args.labels else run.labels
        model, spec = run.load_model(), run.input_spec
        background = run.config.get("background_class")
        if background in labels:  # a run has no threshold yet, but its background class is unknown
            calibrated = UnknownRule(threshold=0.0, background=labels.index(background))
    else:
        if not args.labels:
            raise UserError(f"{path} is not inside a run dir; pass --labels FILE")
        labels = read_labels(args.labels)
        model = load_keras_model(path)
        _, height, width, _ = model.input_shape
        spec = InputSpec(height=int(height), width=int(width))
    if model.output_shape[-1] != len(labels):
        raise UserError(f"the model outputs {model.output_shape[-1]} scores but there are {len(labels)} labels")
    samples, skipped = _samples_for(args, labels)
    if not samples:
        raise UserError("no readable images to evaluate")

    def predict(paths: list[Path]) -> tuple[np.ndarray, None]:
        readable, _ = probe(paths, progress=False)
        batches = image_dataset([Sample(p, 0) for p in readable], spec, args.batch_size)
        return model.predict(inputs_only(batches), verbose=0), None

    scores = model.predict(inputs_only(image_dataset(samples, spec, args.batch_size)), verbose=0)
    return Scored(scores, np.array([s.label for s in samples]), labels, skipped, "keras", predict, calibrated)


def _score_device(args: EvaluateOptions, path: Path) -> Scored:
    from edgepipe.device.model.classifier import open_classifier

    from .device_eval import run_files

    require_labels(path, args.labels)
    classifier = open_classifier(path, labels=args.labels)
    samples, skipped = _samples_for(args, classifier.labels)
    if not samples:
        raise UserError("no readable images to evaluate")
    outputs = run_files(classifier, [s.path for s in samples], progress="classifying")
    if outputs.unreadable:  # changed on disk since it was probed
        raise UserError(f"{outputs.unreadable[0]} became unreadable during evaluation")
    engine = f"tflite:{classifier.backend}:{classifier.accelerator}"
    calibrated = classifier.bundle.unknown if classifier.bundle else None

    def score_files(paths: list[Path]) -> tuple[np.ndarray, np.ndarray | None]:
        other = run_files(classifier, paths, progress="classifying --unknown-dir")
        return other.scores, other.features

    return Scored(outputs.scores, np.array([s.label for s in samples]), classifier.labels, skipped, engine,
                  score_files, calibrated, outputs.features)


SensorSimulator = Callable[[Path, np.ndarray], np.ndarray]
"""(the bundle's quantized IMX500 model, uint8 images at its input size) -> scores as the sensor gives them."""


def _score_imx500(args: EvaluateOptions, path: Path, simulate: SensorSimulator) -> Scored:
    """A bundle's IMX500 model as the sensor runs it, simulated in Sony's venv (edgepipe.convert.imx500)."""
    from edgepipe.device.model.bundle import is_bundle, load_bundle
    from edgepipe.device.model.imx500_contract import imx500_block
    from edgepipe.device.model.preprocess import load_image, resize_to_input

    if not is_bundle(path):
        raise UserError(f"--accelerator imx500 evaluates a bundle made by `edgepipe convert --imx500`; {path} is not one")
    bundle = load_bundle(path, verify=True)
    block = imx500_block(bundle.manifest, str(path))
    if block is None:
        raise UserError(f"bundle {path} has no IMX500 model; make one with `edgepipe convert RUN --out {path} --imx500`")
    samples, skipped = _samples_for(args, bundle.labels)
    if not samples:
        raise UserError("no readable images to evaluate")

    def predict(paths: list[Path]) -> tuple[np.ndarray, None]:  # the sensor outputs no features
        readable, _ = probe(paths, progress=False)
        pixels = np.stack([resize_to_input(load_image(p), bundle.input_spec) for p in readable])
        return simulate(bundle.root / block.quantized_model, pixels), None

    rule = bundle.unknown if bundle.unknown is None or bundle.unknown.features is None else None
    return Scored(predict([s.path for s in samples])[0], np.array([s.label for s in samples]), bundle.labels,
                  skipped, "imx500:simulated-sensor", predict, rule)


def _unknown_metrics(options: EvaluateOptions, scored: Scored, unknown_files: list[Path]) -> dict[str, Any]:
    """--unknown-dir: how well the model says "unknown" (the background class's images count as unknown)."""
    rule = resolve(options.unknown, scored.calibrated)
    if rule is None:
        raise UserError("no \"unknown\" threshold to evaluate: evaluate a bundle made by `edgepipe convert`, "
                        "or pass --unknown P")
    unknown_scores, unknown_features = scored.score_files(unknown_files)
    scores, y_true, features = scored.scores, scored.y_true, scored.features
    if rule.background is not None:
        is_background = y_true == rule.background
        unknown_scores = np.concatenate([unknown_scores, scores[is_background]])
        if features is not None and unknown_features is not None:
            unknown_features = np.concatenate([unknown_features, features[is_background]])
            features = features[~is_background]
        scores, y_true = scores[~is_background], y_true[~is_background]
    return unknown_report(rule, scores, y_true, unknown_scores, features, unknown_features)


def evaluate(options: EvaluateOptions, simulate_imx500: SensorSimulator | None = None) -> Evaluation:
    """Score the model on the images, report, and write --out's files when asked.

    `simulate_imx500` runs a bundle's IMX500 model as the sensor would (edgepipe.cli hands in
    convert's, which train may not import)."""
    path = options.model
    if not path.exists():
        raise UserError(f"model {path} does not exist")
    unknown_files = image_files(options.unknown_dir) if options.unknown_dir else []
    out = options.out
    if out is not None:
        for name in (rd.METRICS, rd.CONFUSION_PNG):
            refuse_overwrite(out / name, options.force)
    if options.accelerator == "imx500":
        if simulate_imx500 is None:
            raise UserError("--accelerator imx500 needs the IMX500 simulation (edgepipe's convert stage)")
        scored = _score_imx500(options, path, simulate_imx500)
    elif is_keras_model(path):
        scored = _score_keras(options, path)
    elif is_device_model(path):
        scored = _score_device(options, path)
    else:
        raise UserError(f"{path} is not a run dir, .keras model, bundle dir or .tflite file")
    report = classification_report(scored.y_true, None, scored.labels, scores=scored.scores,
                                   top_k=(1, options.top_k))
    result = {**report, "model": str(path.resolve()), "engine": scored.engine,
              "skipped": [str(p) for p in scored.skipped]}
    if unknown_files:
        result["unknown"] = _unknown_metrics(options, scored, unknown_files)
    if out is not None:
        atomic_write_text(out / rd.METRICS, json.dumps(result, indent=2))
        save_confusion_matrix(report, out / rd.CONFUSION_PNG)
    return Evaluation(result, report, scored.engine, scored.skipped)
