"""`edgepipe demo`: the whole pipeline, offline, on data it draws itself.

It runs every stage through the same CLI entry point a user types, so the
demo proves the commands, not a private shortcut: train, convert (QAT),
inspect (Edge TPU prediction), run on a video, bench; then one table.
The device stages (run, bench) run in a child process, as on the device: in
the demo's own process TensorFlow is loaded, which would count gigabytes of
its memory (and its threads) in the model's latency report.
`--task detect` is the same for a detector (demo_detect.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepipe.core.args import add_command, positive_int
from edgepipe.core.options import add_options, flag, options_from
from edgepipe.train.options import ModelConfig

from .demo_stages import (DeviceResults, RunCommand, device_rows, device_stages, device_summary, pct, prepare_workdir,
                          read_json, resolve_weights, run_stage, table, timed)

DEMO_CLASSES = ("circle", "square", "triangle", "cross")
DEMO_ALPHA = "1.0"
DEMO_INPUT_SIZE = "96"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = flag("--workdir", default=Path("edgepipe-demo"), parse=Path, metavar="DIR",
                         help="where data, run, bundle and reports go")
    force: bool = flag("--force", default=False, help="replace an existing work dir (one an earlier demo made)")
    task: str = flag("--task", default="classify", choices=("classify", "detect"),
                     help="classify: one shape per image; detect: scenes of shapes with boxes, an SSDLite detector")
    weights: str = flag("--weights", default=ModelConfig.weights, metavar="imagenet|none|PATH",
                        help="backbone weights (imagenet: Keras' download, else the copy shipped with edgepipe)")
    per_class: int = flag("--per-class", default=100, parse=positive_int, metavar="N",
                          help="[classify] images drawn per class (20%% are held out)")
    images: int = flag("--images", default=240, parse=positive_int, metavar="N",
                       help="[detect] scenes drawn, each with 1 to 3 boxed shapes (20%% are held out)")
    video_frames: int = flag("--video-frames", default=120, parse=positive_int, metavar="N",
                             help="frames in the generated video")


def register(subparsers: argparse._SubParsersAction, run_command: RunCommand) -> None:
    """`run_command` is the entry point's main(), handed in so the demo runs stages through it
    without importing the module that imports this one."""
    p = add_command(
        subparsers,
        "demo",
        help="run the whole pipeline offline on a synthetic dataset",
        description="""
            Draws a small labelled dataset (shapes on cluttered backgrounds), trains a
            MobileNetV2 at 96x96, converts it to a full-int8 bundle (quantization-aware
            training and post-training quantization, both measured; the more accurate
            ships), predicts its Edge TPU mapping, classifies a
            generated 640x480 video with the device runtime and benchmarks latency.
            Ends with a table: float vs int8 accuracy, model size, latency p50/p99, FPS.
            Uses Keras' ImageNet weights when Keras can download them, else the ImageNet
            copy shipped with edgepipe, and says which. Takes a few minutes on a
            laptop CPU. --task detect does the same for a detector: scenes of shapes
            with boxes (Pascal VOC), an SSDLite at 160x160, int8 by post-training
            quantization, mAP from `edgepipe evaluate`, boxes tracked in a video.
        """,
        examples="""
            edgepipe demo
            edgepipe demo --task detect --workdir /tmp/edgepipe-detect-demo
            edgepipe demo --workdir /tmp/edgepipe-demo --force
            edgepipe demo --weights none        # random initialisation, to see what ImageNet buys
            edgepipe demo --json
        """,
    )
    add_options(p, DemoOptions)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run_demo, run_command=run_command)


def run_demo(args: argparse.Namespace) -> int:
    options = options_from(args, DemoOptions)
    work = options.workdir.expanduser().resolve()
    prepare_workdir(work, options.force)
    if options.task == "detect":
        from .demo_detect import detect_demo, detect_table

        summary, table = detect_demo(work, args.run_command, images=options.images,
                                     video_frames=options.video_frames, weights=options.weights), detect_table
    else:
        summary, table = _classify_demo(options, work, args.run_command), _table
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2) if args.json else table(summary))
    return 0


def _classify_demo(options: DemoOptions, work: Path, run_command: RunCommand) -> dict[str, Any]:
    from edgepipe.synthetic import write_dataset, write_video

    data, run, bundle, video = work / "data", work / "run", work / "bundle", work / "shapes.mp4"
    timings: dict[str, float] = {}

    print(f"drawing {options.per_class} images x {len(DEMO_CLASSES)} classes into {data}", file=sys.stderr)
    write_dataset(data, per_class=options.per_class, size=128, seed=0, classes=DEMO_CLASSES)
    truth = write_video(video, frames=options.video_frames, size=(640, 480), fps=15.0, seed=7, classes=DEMO_CLASSES)

    weights, weights_note = resolve_weights(options.weights, int(DEMO_INPUT_SIZE))
    print(weights_note, file=sys.stderr)
    train_argv = ["train", str(data), "--out", str(run), "--input-size", DEMO_INPUT_SIZE, "--alpha", DEMO_ALPHA,
                  "--weights", weights, "--seed", "0", "--epochs", "30", "--fine-tune-epochs", "3"]
    timed("train_s", timings, lambda: run_stage(run_command, "train", train_argv))
    timed("convert_s", timings, lambda: run_stage(run_command, "convert", ["convert", str(run), "--out", str(bundle)]))
    device = device_stages(run_command, work, bundle, video, timings)
    return _summarise(work, bundle, device, truth, weights_note, timings)


def _video_accuracy(results_path: Path, truth: list[str]) -> float | None:
    """Share of video frames whose top label is the shape drawn in that frame."""
    rows = [json.loads(line) for line in results_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    hits = [row["top"][0]["label"] == truth[row["frame"]] for row in rows if row.get("top") and row["frame"] < len(truth)]
    return sum(hits) / len(hits) if hits else None


def _summarise(work: Path, bundle: Path, device: DeviceResults, truth: list[str], weights_note: str,
               timings: dict[str, float]) -> dict[str, Any]:
    manifest = read_json(bundle / "bundle.json")
    accuracy = manifest.get("accuracy", {})
    return {
        "workdir": str(work),
        "weights": weights_note,
        "accuracy_float": accuracy.get("float"),
        "accuracy_int8": accuracy.get("int8"),
        "accuracy_ptq": accuracy.get("ptq"),
        "accuracy_qat": accuracy.get("qat"),
        "method": manifest.get("quantization", {}).get("method") if isinstance(manifest.get("quantization"), dict) else None,
        "heldout_n": accuracy.get("n"),
        **device_summary(bundle, device),
        "video_accuracy": _video_accuracy(device.frames, truth),
        "timings_s": timings,
    }


def _table(s: dict[str, Any]) -> str:
    return table(s, [
        ("held-out accuracy, float", pct(s["accuracy_float"])),
        ("held-out accuracy, int8", pct(s["accuracy_int8"]) + (f"  [PTQ {pct(s['accuracy_ptq'])}, QAT {pct(s['accuracy_qat'])}]"
                                                                if s["accuracy_qat"] is not None else "")),
        *device_rows(s),
        ("edgepipe run on 640x480 video", f"{s['run_fps']:.1f} FPS, {pct(s['video_accuracy'])} of frames right"),
    ])
