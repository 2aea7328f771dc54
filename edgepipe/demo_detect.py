"""`edgepipe demo --task detect`: the detection pipeline, offline, on scenes it draws itself.

The same stages as the classification demo, through the same CLI: train an
SSDLite detector on boxed shapes (Pascal VOC), convert it to int8, measure it
with `edgepipe evaluate` (COCO mAP on the photos train held out, through the
device runtime), predict its Edge TPU mapping, run it over a video of the
same kind of scenes and benchmark it.

Kept to a few minutes on two cores the way the classification demo is: small
photos (192x192) and the smallest input a detector takes (160x160), few
epochs (each head epoch costs a second or two on cached backbone features),
one short fine-tune, and int8 by post-training quantization alone
(quantization-aware training adds minutes; `edgepipe convert RUN` does both).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .demo_stages import (RunCommand, device_rows, device_stages, device_summary, pct, read_json, resolve_weights,
                          run_stage, table, timed)

SCENE_SIZE = 192
INPUT_SIZE = "160"
TRAIN_RECIPE = ["--seed", "0", "--epochs", "12", "--fine-tune-epochs", "2"]
EVALUATION = "evaluation"


def detect_demo(work: Path, run_command: RunCommand, *, images: int, video_frames: int, weights: str) -> dict[str, Any]:
    """Every stage in `work` (already made), with `images` scenes drawn; the summary."""
    from edgepipe.synthetic import SHAPES, write_detection_dataset, write_detection_video

    classes = SHAPES[:3]
    data, run, bundle, video = work / "data", work / "run", work / "bundle", work / "scenes.mp4"
    timings: dict[str, float] = {}
    print(f"drawing {images} scenes of {', '.join(classes)} with boxes into {data}", file=sys.stderr)
    write_detection_dataset(data, images=images, size=SCENE_SIZE, seed=0, classes=classes)
    truth = write_detection_video(video, frames=video_frames, seed=7, classes=classes, scene_size=SCENE_SIZE)

    weights, weights_note = resolve_weights(weights, int(INPUT_SIZE))
    print(weights_note, file=sys.stderr)
    train_argv = ["train", "--task", "detect", str(data), "--out", str(run), "--input-size", INPUT_SIZE,
                  "--weights", weights, *TRAIN_RECIPE]
    timed("train_s", timings, lambda: run_stage(run_command, "train", train_argv))
    timed("convert_s", timings, lambda: run_stage(
        run_command, "convert", ["convert", str(run), "--out", str(bundle), "--method", "ptq"]))
    evaluation = json.loads(timed("evaluate_s", timings, lambda: run_stage(
        run_command, "evaluate", ["evaluate", str(bundle), str(data), "--split", "test", "--out", str(work / EVALUATION),
                                  "--json"], echo=False)))
    device = device_stages(run_command, work, bundle, video, timings)

    accuracy = read_json(bundle / "bundle.json").get("accuracy", {})
    return {
        "workdir": str(work),
        "task": "detect",
        "weights": weights_note,
        "map50_float": accuracy.get("float"),
        "map50": evaluation["map50"],
        "map50_95": evaluation["map50_95"],
        "precision": evaluation["precision"],
        "recall": evaluation["recall"],
        "score_threshold": evaluation["score_threshold"],
        "per_class_ap50": {name: c["ap50"] for name, c in evaluation["per_class"].items()},
        "heldout_n": evaluation["n_images"],
        **device_summary(bundle, device),
        "edgetpu_expected_cpu": device.inspect.get("prediction", {}).get("expected_cpu"),
        "video": _video_scores(device.frames, truth, classes),
        "timings_s": timings,
    }


def _video_scores(results_path: Path, truth: list, classes: tuple[str, ...]) -> dict[str, Any]:
    """Precision and recall of what `edgepipe run` reported in the video's frames (its own score floor)."""
    import numpy as np

    from edgepipe.train.detect.boxes import BoxedImage
    from edgepipe.train.detect.metrics import PredictedBox, evaluate_detections

    rows = [json.loads(line) for line in results_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    frames = [BoxedImage(Path(f"frame {i}"), 640, 480, np.array([box for _, box in objects], np.float32).reshape(-1, 4),
                         np.array([classes.index(name) for name, _ in objects], np.int32))
              for i, objects in enumerate(truth)]
    found = {row["frame"]: [PredictedBox(d["index"], d["score"], *d["box"]) for d in row.get("detections", [])]
             for row in rows}
    metrics = evaluate_detections(frames, [found.get(i, []) for i in range(len(frames))], classes, score_threshold=0.0)
    return {"frames": len(rows), "objects": int(sum(len(f.boxes) for f in frames)),
            "precision": round(metrics.precision, 4), "recall": round(metrics.recall, 4)}


def detect_table(s: dict[str, Any]) -> str:
    video = s["video"]
    return table(s, [
        (f"mAP@0.5 on {s['heldout_n']} held-out photos", f"int8 {s['map50']:.3f} (float {s['map50_float']:.3f}), "
                                                         f"mAP@[.5:.95] {s['map50_95']:.3f}  (edgepipe evaluate)"),
        (f"at score >= {s['score_threshold']:g}", f"precision {pct(s['precision'])}, recall {pct(s['recall'])}"),
        ("AP@0.5 per class", ", ".join(f"{k} {v:.3f}" for k, v in s["per_class_ap50"].items() if v is not None)),
        *device_rows(s, f" (expected {s['edgetpu_expected_cpu']}: the postprocess tail, as in Coral's SSDs)"),
        ("edgepipe run on 640x480 video", f"{s['run_fps']:.1f} FPS; of {video['objects']} objects in "
                                          f"{video['frames']} frames: precision {pct(video['precision'])}, "
                                          f"recall {pct(video['recall'])}"),
    ])
