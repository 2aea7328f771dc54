"""`edgepipe convert`: a training run to a verified bundle.

Order of work: check every input first (so a bad run fails in a second, not
after minutes of QAT), build PTQ and QAT candidates, measure each through the
device runtime, pick the one to ship, compile it for the Edge TPU where a
compiler is reachable, and write the bundle in one atomic rename. An int8
model that loses more than --max-drop points is written to BUNDLE.rejected/
for inspection instead, and convert exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe import __version__
from edgepipe.device.model.bundle import CPU_MODEL, EDGETPU_MODEL, LABELS, MANIFEST, build_manifest, sha256_file
from edgepipe.device.model.feature_score import FEATURES_FILE, FeatureScore
from edgepipe.device.model.unknown import UnknownRule
from edgepipe.core.tfenv import native_stderr_silenced
from edgepipe.core.errors import UserError
from edgepipe.core.progress import say
from edgepipe.core.files import atomic_directory, refuse_overwrite
from edgepipe.device.model.golden import DEFAULT_MIN_AGREEMENT
from edgepipe.device.model.labels import format_labels
from edgepipe.device.model.preprocess import InputSpec
from edgepipe.device.model.backends import EdgeTpuUnavailable, find_backend
from edgepipe.train.data import image_files
from edgepipe.train.run_dir import TrainedRun, load_run

from . import edgetpu_compiler as etc
from edgepipe.device.inspect.edgetpu_rules import detection_tail, predict_ops, summarize
from .imx500 import imx500_for_bundle
from .golden import select_golden, write_golden
from .metadata import METADATA_NAME, copy_metadata, edgepipe_metadata, with_metadata
from edgepipe.device.model.modelinfo import read_model_info
from .options import ConvertOptions
from .provenance import public_training_config
from .quantize import (export_tflite, load_pixels, nested_models, quantization_aware_model, representative_pixels,
                       with_features_output)
from .calibrate import FeatureSets, calibrate_bundle
from .model_card import MODEL_CARD, model_card
from .verify import (Evaluation, HeldOut, closeness_to_float, drift_markdown, drift_report, evaluate_keras, evaluate_on_device,
                     load_held_out)

SPLIT_NAME = "held-out validation of RUN_DIR"
DRIFT_JSON = "drift.json"
DRIFT_MD = "drift.md"


@dataclass
class ConvertResult:
    summary: dict[str, Any]
    failure: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure is not None


@dataclass
class Candidate:
    """One int8 (or float export) model with its files in a scratch bundle dir."""

    name: str
    root: Path
    evaluation: Evaluation | None = None

    @property
    def model(self) -> Path:
        return self.root / CPU_MODEL

    @property
    def accuracy(self) -> float:
        return self.evaluation.accuracy if self.evaluation else float("nan")


def _check_classifier(model: Any, run: TrainedRun) -> str:
    """Fail early on a model that is not a 1-input softmax classifier over the run's labels."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{run.model_path} is not an image classifier: it has {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    spec = run.input_spec
    if len(in_shape) != 4 or in_shape[1:] != (spec.height, spec.width, 3):
        raise UserError(f"{run.model_path} takes input {in_shape}, but the run's config says {spec.height}x{spec.width}x3 images")
    if len(out_shape) != 2 or out_shape[1] != len(run.labels):
        raise UserError(
            f"{run.model_path} is not a classifier over the run's {len(run.labels)} labels: its output has shape {out_shape}"
        )
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    return "softmax" if activation == "softmax" or model.layers[-1].__class__.__name__ == "Softmax" else "none"


def _tensor_io(model_path: Path, num_classes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The input and the class-score output (the converter may list the features output first)."""
    info = read_model_info(model_path)
    inp = info.tensors[info.inputs[0]]
    outputs = [info.tensors[i] for i in info.outputs]
    out = next((t for t in outputs if t.shape[-1] == num_classes), outputs[0])
    features = [t for t in outputs if t is not out]
    return (
        {"dtype": inp.dtype, "scale": inp.scale or 0.0, "zero_point": inp.zero_point or 0},
        {"dtype": out.dtype, "scale": out.scale or 0.0, "zero_point": out.zero_point or 0, "num_classes": out.shape[-1],
         **({"features_dim": int(features[0].shape[-1])} if features else {})},
    )


def _write_candidate(root: Path, name: str, data: bytes, run: TrainedRun, activation: str) -> Candidate:
    """A minimal bundle around one model, so it is measured exactly as it will ship."""
    root.mkdir(parents=True)
    (root / CPU_MODEL).write_bytes(with_metadata(data, {METADATA_NAME: edgepipe_metadata(run.labels, run.input_spec.to_json(), name)}))
    (root / LABELS).write_text(format_labels(run.labels), encoding="utf-8")
    tensor_in, output = _tensor_io(root / CPU_MODEL, len(run.labels))
    spec = run.input_spec.with_tensor(tensor_in["dtype"], tensor_in["scale"], tensor_in["zero_point"])
    manifest = build_manifest(root, labels=run.labels, input_spec=spec, output={**output, "activation": activation}, models={"cpu": CPU_MODEL})
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return Candidate(name, root)


TIE_RULE = ("the more accurate int8 model on the held-out split; on a tie, the one closer to the float model "
            "(lower mean KL divergence, then lower mean absolute score difference); PTQ if still equal")


def _choose(method: str, candidates: dict[str, Candidate], closeness: dict[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    """The model to ship and the numbers that decided it (recorded in bundle.json)."""
    int8 = [c for c in candidates.values() if c.name in ("ptq", "qat")]
    numbers = {c.name: {"accuracy": c.accuracy, **closeness[c.name]} for c in int8}
    if method != "auto":
        return method, {"rule": f"--method {method}", "decided_by": "forced", "candidates": numbers}

    def rank(c: Candidate) -> tuple:
        return (-c.accuracy, closeness[c.name]["mean_kl"], closeness[c.name]["mean_abs_diff"], c.name != "ptq")

    ranked = sorted(int8, key=rank)
    if len(ranked) == 1:
        decided_by = "only candidate"
    elif ranked[0].accuracy != ranked[1].accuracy:
        decided_by = "accuracy"
    elif rank(ranked[0])[1:3] != rank(ranked[1])[1:3]:
        decided_by = "closeness to float"
    else:
        decided_by = "tie: PTQ"
    return ranked[0].name, {"rule": TIE_RULE, "decided_by": decided_by, "candidates": numbers}


def compile_for_edgetpu(o: ConvertOptions, source: Path, scratch: Path, warnings: list[str]) -> tuple[etc.CompileResult | None, dict[str, Any]]:
    """The Edge TPU compile of `source` where a compiler is reachable, and bundle.json's compiler block."""
    try:
        result = etc.compile_model(source, scratch, o.compile)
    except etc.CompilerUnavailable as exc:
        note = f"no Edge TPU compiler: {exc}"
        say(f"warning: {note}; continuing with the CPU bundle and the offline prediction")
        warnings.append(note)
        return None, {"available": False, "reason": str(exc)}
    compiled = copy_metadata(source.read_bytes(), result.model_path.read_bytes())
    result.model_path.write_bytes(compiled)
    unexpected = (result.cpu or 0) - len(detection_tail(read_model_info(source)))
    if unexpected > 0:
        warnings.append(f"the Edge TPU compiler left {unexpected} of {result.total} ops on the CPU "
                        "(besides a detector's postprocess tail; see edgetpu.compiler.ops)")
    ops = etc.per_op_from_log(predict_ops(read_model_info(source)), result.table)
    return result, {"available": True, **result.to_json(), "ops": [op.to_json() for op in ops]}


def _accuracy_block(float_eval: Evaluation, candidates: dict[str, Candidate], chosen: str, n: int, agreement: float) -> dict[str, Any]:
    block: dict[str, Any] = {
        "float": float_eval.accuracy,
        "int8": candidates[chosen].accuracy,
        "edgetpu": None,
        "qat": candidates["qat"].accuracy if "qat" in candidates else None,
        "ptq": candidates["ptq"].accuracy,
        "split": SPLIT_NAME,
        "n": n,
        "top1_agreement": agreement,
    }
    for extra in ("float32_tflite", "float16_tflite"):
        if extra in candidates:
            block[extra] = candidates[extra].accuracy
    return block


def _build_candidates(o: ConvertOptions, run: TrainedRun, model: Any, activation: str, scratch: Path,
                      rep: np.ndarray, warnings: list[str]) -> dict[str, Candidate]:
    spec = run.input_spec
    train_files = run.split_files("train")
    candidates = {}
    two_outputs = with_features_output(model)  # class scores + pooled features, for the "unknown" score
    candidates["ptq"] = _write_candidate(scratch / "ptq", "ptq", export_tflite(two_outputs, spec, rep, o.io, name="PTQ"),
                                         run, activation)
    nested = nested_models(model)
    if o.method == "auto" and nested:
        warnings.append(f"QAT skipped: the model nests {', '.join(nested)} (tfmot needs a flat model); shipped PTQ")
    elif o.method in ("auto", "qat"):
        started = time.perf_counter()
        say(f"QAT: calibrating and fine-tuning for {o.qat_epochs} epoch(s) at lr {o.qat_lr:g}")
        pixels, labels, _ = load_pixels(train_files, spec, progress="QAT: loading training images")
        qat = quantization_aware_model(
            model, rep, pixels, labels, spec, epochs=o.qat_epochs, learning_rate=o.qat_lr, batch_size=o.batch_size,
            seed=int(run.config.get("seed", 0) or 0), progress=say,
        )  # fmt: skip
        candidates["qat"] = _write_candidate(scratch / "qat", "qat",
                                             export_tflite(with_features_output(qat), spec, rep, o.io, name="QAT"), run,
                                             activation)
        say(f"QAT: done in {time.perf_counter() - started:.0f} s")
    for flag, name, kwargs in ((o.float32, "float32_tflite", {}), (o.float16, "float16_tflite", {"float16": True})):
        if flag:
            candidates[name] = _write_candidate(scratch / name, name, export_tflite(two_outputs, spec, None, **kwargs), run,
                                                activation)
    return candidates


def _golden_block(root: Path, chosen: Candidate, held_out: HeldOut, count: int, seed: int,
                  unknown: UnknownRule, imx500_scores: np.ndarray | None) -> dict[str, Any]:
    """The golden set: `count` held-out images with the shipped model's device-runtime scores (and its
    feature-space unknown score, which checks the features output; and the simulated IMX500's scores,
    which `verify --accelerator imx500` expects of the sensor)."""
    backend = find_backend()
    indices = select_golden(held_out.labels, count, seed)
    evaluation = chosen.evaluation
    unknown_values = unknown.values(evaluation.scores, evaluation.features) if unknown.features is not None else None
    block = write_golden(root, held_out.files, held_out.labels, evaluation.scores, indices,
                         {"model": CPU_MODEL, "backend": backend.name, "backend_version": backend.version},
                         unknown_values)
    if imx500_scores is not None:
        for entry, i in zip(block["images"], indices):
            entry["expected_imx500"] = [float(v) for v in imx500_scores[i]]
        block["min_agreement"]["imx500"] = DEFAULT_MIN_AGREEMENT["imx500"]
    return block


def _feature_sets(chosen: Candidate, run: TrainedRun) -> FeatureSets | None:
    """The pooled features of the training split and of the held-out images, as the shipped int8
    model computes them on the device (what the feature-space "unknown" score is fitted on)."""
    if chosen.evaluation.features is None:
        return None
    from edgepipe.train.device_eval import run_files

    train = run.split_files("train")
    with native_stderr_silenced():
        outputs = run_files(chosen.root, [p for p, _ in train], progress="unknown: features of the training images")
    unreadable = set(outputs.unreadable)
    labels = np.array([label for path, label in train if Path(path) not in unreadable], dtype=np.int64)
    return FeatureSets(outputs.features, labels, chosen.evaluation.features)


def _finish_bundle(
    root: Path, chosen: Candidate, candidates: dict[str, Candidate], run: TrainedRun,
    manifest_extra: dict[str, Any], accuracy: dict[str, Any], drift: dict[str, Any], compiled: etc.CompileResult | None,
    feature_score: FeatureScore | None,
) -> dict[str, Any]:  # fmt: skip
    """Fill `root` (a temp dir) with the bundle files and its manifest (the golden set is already in it)."""
    base = json.loads((chosen.root / MANIFEST).read_text(encoding="utf-8"))
    shutil.copy(chosen.model, root / CPU_MODEL)
    shutil.copy(chosen.root / LABELS, root / LABELS)
    models = {"cpu": CPU_MODEL}
    if compiled is not None:
        shutil.copy(compiled.model_path, root / EDGETPU_MODEL)
        models["edgetpu"] = EDGETPU_MODEL
    extra_models = {}
    for name in ("float32_tflite", "float16_tflite"):
        if name in candidates:
            file_name = f"model_{name.removesuffix('_tflite')}.tflite"
            shutil.copy(candidates[name].model, root / file_name)
            extra_models[name.removesuffix("_tflite")] = file_name
    (root / DRIFT_JSON).write_text(json.dumps(drift, indent=2), encoding="utf-8")
    (root / DRIFT_MD).write_text(drift_markdown(drift, accuracy, run.labels), encoding="utf-8")
    (root / MODEL_CARD).write_text(model_card(run, accuracy, drift, manifest_extra), encoding="utf-8")
    if feature_score is not None:
        (root / FEATURES_FILE).write_bytes(feature_score.to_bytes())
    manifest = build_manifest(
        root,
        labels=run.labels,
        input_spec=InputSpec.from_json(base["input"]),
        output=base["output"],
        models=models,
        accuracy=accuracy,
        training=public_training_config(run.config),
        extra={**manifest_extra, "extra_models": extra_models},
    )
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def _measure_edgetpu(root: Path, manifest: dict[str, Any], held_out: HeldOut, labels: list[str], warnings: list[str]) -> None:
    """Edge TPU accuracy when an Edge TPU is attached to this machine (rare on a workstation)."""
    try:
        manifest["accuracy"]["edgetpu"] = evaluate_on_device("edgetpu", root, held_out, labels, accelerator="edgetpu").accuracy
    except EdgeTpuUnavailable as exc:
        warnings.append(f"Edge TPU accuracy not measured: {exc}")
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")


@dataclass
class Inputs:
    """What a conversion starts from: the run, its Keras model, the held-out images to measure on."""

    run: TrainedRun
    model: Any
    activation: str
    held_out: HeldOut
    unknown_files: list[Path]


@dataclass
class Measured:
    """Every candidate measured through the device runtime, and the one that ships."""

    float_eval: Evaluation
    candidates: dict[str, Candidate]
    chosen: Candidate
    choice: dict[str, Any]
    drift: dict[str, Any]
    accuracy: dict[str, Any]


def load_inputs(o: ConvertOptions, warnings: list[str]) -> Inputs:
    run = load_run(o.run_dir)
    val_files = run.split_files("val")
    if not val_files:
        raise UserError(f"{run.root}/split.json has no held-out (val) images to verify the conversion on")
    say(f"loading {run.model_path}")
    model = run.load_model()
    activation = _check_classifier(model, run)
    held_out = load_held_out(val_files, run.input_spec)
    if not held_out.files:
        raise UserError(f"none of the {len(val_files)} held-out images of {run.root} is readable; is the data_dir still there?")
    unknown_files = image_files(o.unknown_dir) if o.unknown_dir else []
    background = run.config.get("background_class")
    if background is not None and background not in run.labels:
        raise UserError(f"{run.root}/config.json names background class {background!r}, which is not one of its labels")
    if held_out.skipped:
        warnings.append(f"{len(held_out.skipped)} unreadable held-out images skipped")
    return Inputs(run, model, activation, held_out, unknown_files)


def measure_and_choose(o: ConvertOptions, inputs: Inputs, candidates: dict[str, Candidate],
                       warnings: list[str]) -> Measured:
    """Float and every int8 candidate on the held-out images through the device runtime; the better
    int8 ships (a tie goes to the one closer to float)."""
    run, held_out = inputs.run, inputs.held_out
    say(f"verifying on {len(held_out.files)} held-out images through the device runtime")
    float_eval = evaluate_keras(inputs.model, held_out, run.input_spec, run.labels)
    for candidate in candidates.values():
        candidate.evaluation = evaluate_on_device(candidate.name, candidate.root, held_out, run.labels)
    closeness = {name: closeness_to_float(float_eval, c.evaluation) for name, c in candidates.items()
                 if name in ("ptq", "qat")}
    chosen_name, choice = _choose(o.method, candidates, closeness)
    chosen = candidates[chosen_name]
    if choice["decided_by"] == "closeness to float":
        say(f"PTQ and QAT tie at {chosen.accuracy:.2%}: shipping {chosen.name}, closer to float "
            f"(mean KL {closeness['ptq']['mean_kl']:.5f} PTQ vs {closeness['qat']['mean_kl']:.5f} QAT)")
    for name in ("ptq", "qat"):
        other = candidates.get(name)
        if other and other is not chosen and other.accuracy > chosen.accuracy:
            warnings.append(f"--method {chosen.name} ships {chosen.accuracy:.2%} although {name} measured {other.accuracy:.2%}")
    drift = drift_report(float_eval, Evaluation("int8", chosen.evaluation.scores, chosen.evaluation.report), held_out, run.labels,
                         Path(run.split["data_dir"]) if run.split else None)  # fmt: skip
    drift["closeness_to_float"] = closeness
    accuracy = _accuracy_block(float_eval, candidates, chosen.name, len(held_out.files), drift["top1_agreement"])
    return Measured(float_eval, candidates, chosen, choice, drift, accuracy)


def manifest_fields(o: ConvertOptions, run: TrainedRun, measured: Measured, edgetpu: dict[str, Any],
                    unknown: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """bundle.json's fields beyond files, labels and I/O: how the model was made and measured."""
    candidates, chosen = measured.candidates, measured.chosen
    return {
        "edgetpu": edgetpu,
        "quantization": {
            "method": chosen.name,
            "requested": o.method,
            "io": o.io,
            "representative_images": min(o.representative, len(run.split_files("train"))),
            "qat_epochs": o.qat_epochs if "qat" in candidates else None,
            "qat_learning_rate": o.qat_lr if "qat" in candidates else None,
            "dense_per_channel": False,
            "choice": measured.choice,
        },
        "source": {"run_dir": run.root.resolve().name, "model_sha256": sha256_file(run.model_path)},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "created_by": f"edgepipe {__version__} convert",
        "drift_report": DRIFT_MD,
        "unknown": unknown,
        "model_card": MODEL_CARD,
        "warnings": warnings,
    }


def run_convert(o: ConvertOptions) -> ConvertResult:
    started = time.perf_counter()
    refuse_overwrite(o.out, o.force)
    warnings: list[str] = []
    inputs = load_inputs(o, warnings)
    run, held_out = inputs.run, inputs.held_out
    o.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{o.out.name}.convert-", dir=o.out.parent) as tmp:
        scratch = Path(tmp)
        train_files = run.split_files("train")
        rep = representative_pixels(train_files, run.input_spec, o.representative)
        say(f"representative set: {len(rep)} of {len(train_files)} training images")
        candidates = _build_candidates(o, run, inputs.model, inputs.activation, scratch, rep, warnings)
        measured = measure_and_choose(o, inputs, candidates, warnings)
        imx500 = imx500_for_bundle(inputs.model, rep, held_out, measured.float_eval.accuracy, scratch,
                                   o.imx500_python) if o.imx500 else None
        if imx500 is not None:
            measured.accuracy["imx500"] = imx500.accuracy
            if (measured.float_eval.accuracy - imx500.accuracy) * 100 > o.max_drop:
                warnings.append(f"the IMX500 model's simulated-sensor accuracy {imx500.accuracy:.2%} is more than "
                                f"--max-drop {o.max_drop:g} points below float {measured.float_eval.accuracy:.2%}")
        chosen = measured.chosen
        features = _feature_sets(chosen, run)
        say(f"calibrating \"unknown\" to accept {o.unknown_accept:.0%} of held-out in-class images")
        calibration = calibrate_bundle(chosen.evaluation.scores, held_out.labels, run, chosen.root, o.unknown_accept,
                                       o.unknown_score, inputs.unknown_files, features)
        unknown = calibration.block
        for note in calibration.warnings:
            say(f"warning: {note}")
        warnings.extend(calibration.warnings)
        say(f"unknown: {calibration.rule(run.labels).describe(run.labels)}; chosen by {unknown['selection']['criterion']}: "
            + ", ".join(f"{k} {v}" for k, v in unknown["selection"]["auroc"].items()))
        prediction = summarize(predict_ops(read_model_info(chosen.model)))
        compiled, compiler = compile_for_edgetpu(o, chosen.model, scratch, warnings) if o.edgetpu else (None, None)
        edgetpu = {"compiled": compiled is not None, "prediction": prediction, "compiler": compiler}
        manifest_extra = manifest_fields(o, run, measured, edgetpu, unknown, warnings)
        if imx500 is not None:
            manifest_extra["imx500"] = imx500.block
        drop = measured.drift["drop_points"]
        rejected = drop > o.max_drop
        target = o.out.with_name(o.out.name + ".rejected") if rejected else o.out
        with atomic_directory(target, force=o.force or rejected) as root:
            if o.golden:
                manifest_extra["golden"] = _golden_block(root, chosen, held_out, o.golden,
                                                         int(run.config.get("seed", 0) or 0), calibration.rule(run.labels),
                                                         imx500.conversion.scores if imx500 else None)
                if o.golden < 2 * len(run.labels):
                    warnings.append(f"--golden {o.golden} gives some of the {len(run.labels)} classes fewer than 2 golden images")
            if imx500 is not None:
                imx500.copy_into(root)
            manifest = _finish_bundle(root, chosen, candidates, run, manifest_extra, measured.accuracy, measured.drift,
                                      compiled, calibration.feature_score)
            if compiled is not None:
                _measure_edgetpu(root, manifest, held_out, run.labels, warnings)
    summary = {
        "status": "rejected" if rejected else "ok",
        "bundle": str(target),
        "method": chosen.name,
        "requested_method": o.method,
        "accuracy": measured.accuracy,
        "drop_points": drop,
        "max_drop": o.max_drop,
        "sizes": {p.name: p.stat().st_size for p in sorted(target.glob("*.tflite"))},
        "edgetpu": edgetpu,
        "imx500": imx500.block if imx500 is not None else None,
        "golden_images": len(manifest_extra.get("golden", {}).get("images", [])),
        "unknown": unknown,
        "warnings": warnings,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if rejected:
        return ConvertResult(
            summary,
            failure=(
                f"edgepipe convert: error: int8 accuracy {chosen.accuracy:.2%} is {drop:.2f} points below float "
                f"{measured.float_eval.accuracy:.2%}, more than --max-drop {o.max_drop:g}; no bundle written to {o.out}; "
                f"outputs kept for inspection in {target} (see {target / DRIFT_MD})"
            ),
        )
    return ConvertResult(summary)
