"""`edgepipe convert` for a detection run: int8 candidates, measured by mAP, one shipped.

The same order of work as the classifier's converter (converter.py), with the
detector's seams: candidates are exported with the postprocess op
(detect_export.py); every candidate is measured by COCO mAP@0.5 through the
device runtime on the run's validation photos (which pick the one to ship:
the more accurate, a tie going to the one whose detections agree more with
float's, then to PTQ) and on its test photos, which training never saw (the
numbers bundle.json and MODEL_CARD.md report). The golden set is a few
validation photos with the shipped model's boxes, checked on the device by
class and IoU.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe import __version__
from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_directory, refuse_overwrite
from edgepipe.core.progress import say
from edgepipe.device.model.bundle import CPU_MODEL, EDGETPU_MODEL, LABELS, MANIFEST, build_manifest, sha256_file
from edgepipe.device.model.golden import GOLDEN_DIR
from edgepipe.device.model.labels import format_labels
from edgepipe.train.detect.anchors import make_anchors
from edgepipe.train.detect.decode import PostprocessConfig
from edgepipe.train.detect.measure import (DetectionEvaluation, Photos, evaluate_keras_detector,
                                         evaluate_tflite_detector, load_photos, map50_difference_error)
from edgepipe.train.detect.trainer import TASK, boxed_images
from edgepipe.train.run_dir import TrainedRun, load_run

from .converter import ConvertResult, compile_for_edgetpu
from .options import ConvertOptions
from .detect_export import OUTPUT_ORDER, POSTPROCESS_OP, SIGNATURE_OUTPUTS, export_detector, implements_signature
from .detect_verify import agreement
from edgepipe.device.inspect.edgetpu_rules import predict_ops, summarize
from .metadata import METADATA_NAME, edgepipe_metadata, with_metadata
from .model_card import MODEL_CARD, detection_model_card
from .provenance import public_training_config
from edgepipe.device.model.modelinfo import read_model_info
from .quantize import representative_pixels

GOLDEN_MIN_AGREEMENT = {"cpu": 1.0, "edgetpu": 0.9}
# A drop past --max-drop rejects the bundle only when it is past by more than this many standard errors.
DROP_ERRORS = 2.0


@dataclass
class DetectCandidate:
    name: str
    data: bytes
    val: DetectionEvaluation
    test: DetectionEvaluation
    agreement: float = 0.0


@dataclass
class DetectInputs:
    run: TrainedRun
    model: Any
    anchors: np.ndarray
    postprocess: PostprocessConfig
    val: Photos
    test: Photos
    train: list = field(default_factory=list)  # BoxedImages

    @property
    def train_files(self) -> list[tuple[Path, int]]:
        return [(image.path, 0) for image in self.train]


def is_detection_run(run: TrainedRun) -> bool:
    return run.config.get("task") == TASK


def _check_detector(model: Any, run: TrainedRun, anchors: np.ndarray) -> None:
    shapes = [tuple(o.shape) for o in model.outputs]
    expected = [(None, len(anchors), 4), (None, len(anchors), len(run.labels))]
    if shapes != expected:
        raise UserError(f"{run.model_path} is not the detector its run describes: outputs {shapes}, expected {expected} "
                        f"({len(anchors)} anchors, {len(run.labels)} classes); retrain with edgepipe train --task detect")


def load_detect_inputs(run: TrainedRun) -> DetectInputs:
    spec = run.input_spec
    anchors = make_anchors(spec.height)
    say(f"loading {run.model_path}")
    model = run.load_model()
    _check_detector(model, run, anchors)
    postprocess = PostprocessConfig(**run.config.get("postprocess", {}))
    val = load_photos(boxed_images(run.split or {}, "val"), spec, "validation photos")
    test_images = boxed_images(run.split or {}, "test")
    test = load_photos(test_images, spec, "test photos") if test_images else val
    return DetectInputs(run, model, anchors, postprocess, val, test, boxed_images(run.split or {}, "train"))


def _candidate(name: str, data: bytes, inputs: DetectInputs) -> DetectCandidate:
    labels = inputs.run.labels
    return DetectCandidate(name, data, evaluate_tflite_detector(name, data, inputs.val, labels),
                           evaluate_tflite_detector(name, data, inputs.test, labels))


def build_candidates(o: ConvertOptions, inputs: DetectInputs, warnings: list[str]) -> dict[str, DetectCandidate]:
    run, spec = inputs.run, inputs.run.input_spec
    rep = representative_pixels(inputs.train_files, spec, o.representative)
    say(f"representative set: {len(rep)} of {len(inputs.train_files)} training photos")
    export = lambda model, name: export_detector(model, spec, inputs.anchors, inputs.postprocess, rep, o.io, name)
    candidates = {"ptq": _candidate("ptq", export(inputs.model, "PTQ"), inputs)}
    if o.method in ("auto", "qat"):
        from .detect_qat import detection_qat_model

        started = time.perf_counter()
        say(f"QAT: calibrating and fine-tuning for {o.qat_epochs} epoch(s) at lr {o.qat_lr:g}")
        qat = detection_qat_model(inputs.model, rep, inputs.train, spec, inputs.anchors, epochs=o.qat_epochs,
                                  learning_rate=o.qat_lr, batch_size=o.batch_size,
                                  seed=int(run.config.get("seed", 0) or 0))
        candidates["qat"] = _candidate("qat", export(qat, "QAT"), inputs)
        say(f"QAT: done in {time.perf_counter() - started:.0f} s")
    if o.float32:
        candidates["float32_tflite"] = _candidate(
            "float32_tflite", export_detector(inputs.model, spec, inputs.anchors, inputs.postprocess, None), inputs)
    return candidates


def choose(method: str, candidates: dict[str, DetectCandidate]) -> tuple[DetectCandidate, dict[str, Any]]:
    """The int8 model to ship: higher validation mAP@0.5, then more agreement with float, then PTQ."""
    int8 = [c for c in candidates.values() if c.name in ("ptq", "qat")]
    numbers = {c.name: {"val_map50": c.val.map50, "agreement_with_float": c.agreement} for c in int8}
    rule = "higher validation mAP@0.5; a tie goes to the one agreeing more with float (class and IoU), then PTQ"
    if method != "auto":
        return candidates[method], {"rule": f"--method {method}", "decided_by": "forced", "candidates": numbers}
    rank = lambda c: (-c.val.map50, -c.agreement, c.name != "ptq")
    ranked = sorted(int8, key=rank)
    if len(ranked) == 1:
        decided_by = "only candidate"
    elif ranked[0].val.map50 != ranked[1].val.map50:
        decided_by = "validation mAP@0.5"
    elif ranked[0].agreement != ranked[1].agreement:
        decided_by = "agreement with float"
    else:
        decided_by = "tie: PTQ"
    return ranked[0], {"rule": rule, "decided_by": decided_by, "candidates": numbers}


def accuracy_block(float_val: DetectionEvaluation, float_test: DetectionEvaluation, chosen: DetectCandidate,
                   candidates: dict[str, DetectCandidate], inputs: DetectInputs) -> dict[str, Any]:
    def part(name: str) -> dict[str, Any] | None:
        c = candidates.get(name)
        return {"test": c.test.to_json(), "val": c.val.to_json()} if c else None

    return {
        "metric": "COCO mAP@0.5 (pycocotools), through the device runtime",
        "float": float_test.map50,
        "int8": chosen.test.map50,
        "ptq": candidates["ptq"].test.map50,
        "qat": candidates["qat"].test.map50 if "qat" in candidates else None,
        "edgetpu": None,
        "split": "test photos of the run (never seen in training)",
        "n": len(inputs.test.images),
        "map50_95": {"float": float_test.map50_95, "int8": chosen.test.map50_95},
        "validation": {"n": len(inputs.val.images), "float": float_val.to_json(),
                       **{name: part(name)["val"] for name in ("ptq", "qat") if name in candidates}},
        "test": {"float": float_test.to_json(), **{name: part(name)["test"] for name in candidates}},
        "agreement_with_float": chosen.agreement,
    }


def drop_verdict(drop: float, error: float, max_drop: float, n_photos: int) -> tuple[bool, str | None]:
    """(reject?, warning) for int8 mAP@0.5 `drop` points below float, measured with standard `error` points.

    --max-drop is a limit on the model's loss, not on one sample of it: a few dozen test photos measure
    mAP@0.5 to within a few points (a new user's first data set is that size), so a drop past the limit
    rejects the bundle only when it is past by more than DROP_ERRORS standard errors; a smaller excess
    ships with a warning that says so. With many test photos the error shrinks and the limit is plain.
    """
    if drop <= max_drop:
        return False, None
    if drop - DROP_ERRORS * error > max_drop:
        return True, None
    return False, (f"int8 mAP@0.5 is {drop:.2f} points below float, more than --max-drop {max_drop:g}, but within "
                   f"{DROP_ERRORS:g} standard errors ({error:.2f} points) of it on {n_photos} test photos: shipped; "
                   "more test photos would tell a real loss from chance")


def golden_block(root: Path, chosen: DetectCandidate, photos: Photos, count: int) -> dict[str, Any]:
    """`count` validation photos copied as they are, with the shipped model's detections on them."""
    from edgepipe.device.model.backends import find_backend

    (root / GOLDEN_DIR).mkdir()
    images = []
    for k, (image, found) in enumerate(list(zip(photos.images, chosen.val.found))[:count]):
        name = f"{GOLDEN_DIR}/{k:03d}{Path(image.path).suffix.lower()}"
        shutil.copyfile(image.path, root / name)
        images.append({"file": name, "expected": [
            {"class": c, "score": round(s, 4), "box": [round(float(v), 4) for v in box]} for c, s, box in found]})
    backend = find_backend()
    return {"images": images, "min_agreement": dict(GOLDEN_MIN_AGREEMENT),
            "match": {"iou": 0.5, "same_class": True, "min_score": 0.3},
            "expected_from": {"model": CPU_MODEL, "backend": backend.name, "backend_version": backend.version}}


def output_block(inputs: DetectInputs) -> dict[str, Any]:
    p = inputs.postprocess
    return {
        "task": TASK,
        "postprocess": POSTPROCESS_OP,
        "outputs_by_index": list(OUTPUT_ORDER),
        "signature_outputs": SIGNATURE_OUTPUTS,
        "box_format": "ymin, xmin, ymax, xmax, normalised to the model input",
        "max_detections": p.max_detections,
        "score_threshold": p.score_threshold,
        "iou_threshold": p.iou_threshold,
        "num_classes": len(inputs.run.labels),
        "anchors": int(len(inputs.anchors)),
        "implements": implements_signature(p, len(inputs.run.labels)),
    }


def run_detect_convert(o: ConvertOptions) -> ConvertResult:
    started = time.perf_counter()
    refuse_overwrite(o.out, o.force)
    warnings: list[str] = []
    run = load_run(o.run_dir)
    if o.io == "float":
        raise UserError("--io float is not for detectors: their int8 model takes uint8 or int8 and ends in float boxes")
    inputs = load_detect_inputs(run)
    o.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{o.out.name}.convert-", dir=o.out.parent) as tmp:
        scratch = Path(tmp)
        candidates = build_candidates(o, inputs, warnings)
        say(f"measuring float on {len(inputs.val.images)} validation and {len(inputs.test.images)} test photos")
        float_val = evaluate_keras_detector(inputs.model, inputs.val, run.input_spec, inputs.anchors, inputs.postprocess, run.labels)
        float_test = evaluate_keras_detector(inputs.model, inputs.test, run.input_spec, inputs.anchors, inputs.postprocess, run.labels)
        for c in candidates.values():
            c.agreement = agreement(float_val.found, c.val.found)
        chosen, choice = choose(o.method, candidates)
        accuracy = accuracy_block(float_val, float_test, chosen, candidates, inputs)
        drop = (float_test.map50 - chosen.test.map50) * 100
        past_limit = drop > o.max_drop
        error = 100 * map50_difference_error(inputs.test, float_test.found, chosen.test.found, run.labels) \
            if past_limit else 0.0
        rejected, why = drop_verdict(drop, error, o.max_drop, len(inputs.test.images))
        warnings += [why] if why else []
        model_path = scratch / CPU_MODEL
        model_path.write_bytes(with_metadata(chosen.data, {
            METADATA_NAME: edgepipe_metadata(run.labels, run.input_spec.to_json(), chosen.name)}))
        prediction = summarize(predict_ops(read_model_info(model_path)))
        compiled, compiler = compile_for_edgetpu(o, model_path, scratch, warnings) if o.edgetpu else (None, None)
        info = read_model_info(model_path)
        tensor = info.tensors[info.inputs[0]]
        spec = run.input_spec.with_tensor(tensor.dtype, tensor.scale or 0.0, tensor.zero_point or 0)
        target = o.out.with_name(o.out.name + ".rejected") if rejected else o.out
        extra = {
            "task": TASK,
            "edgetpu": {"compiled": compiled is not None, "prediction": prediction, "compiler": compiler},
            "quantization": {"method": chosen.name, "requested": o.method, "io": o.io,
                             "representative_images": min(o.representative, len(inputs.train_files)),
                             "qat_epochs": o.qat_epochs if "qat" in candidates else None, "choice": choice},
            "source": {"run_dir": run.root.resolve().name, "model_sha256": sha256_file(run.model_path)},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "created_by": f"edgepipe {__version__} convert",
            "model_card": MODEL_CARD,
            "warnings": warnings,
        }
        with atomic_directory(target, force=o.force or rejected) as root:
            shutil.copy(model_path, root / CPU_MODEL)
            (root / LABELS).write_text(format_labels(run.labels), encoding="utf-8")
            models = {"cpu": CPU_MODEL}
            if compiled is not None:
                shutil.copy(compiled.model_path, root / EDGETPU_MODEL)
                models["edgetpu"] = EDGETPU_MODEL
            if o.golden:
                extra["golden"] = golden_block(root, chosen, inputs.val, o.golden)
            (root / MODEL_CARD).write_text(detection_model_card(run, accuracy, extra), encoding="utf-8")
            manifest = build_manifest(root, labels=run.labels, input_spec=spec, output=output_block(inputs),
                                      models=models, accuracy=accuracy, training=public_training_config(run.config),
                                      extra=extra)
            (root / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    summary = {
        "task": TASK, "status": "rejected" if rejected else "ok", "bundle": str(target), "method": chosen.name,
        "requested_method": o.method, "accuracy": accuracy, "drop_points": round(drop, 2),
        "drop_standard_error": round(error, 2) if past_limit else None, "max_drop": o.max_drop,
        "sizes": {p.name: p.stat().st_size for p in sorted(target.glob("*.tflite"))},
        "edgetpu": extra["edgetpu"], "golden_images": len(extra.get("golden", {}).get("images", [])),
        "warnings": warnings, "wall_s": round(time.perf_counter() - started, 1),
    }
    if rejected:
        return ConvertResult(summary, failure=(
            f"edgepipe convert: error: int8 mAP@0.5 {chosen.test.map50:.3f} is {drop:.2f} points below float "
            f"{float_test.map50:.3f}, more than --max-drop {o.max_drop:g} by more than {DROP_ERRORS:g} standard errors "
            f"({error:.2f} points on {len(inputs.test.images)} test photos); no bundle written to {o.out}; "
            f"outputs kept for inspection in {target}"))
    return ConvertResult(summary)
