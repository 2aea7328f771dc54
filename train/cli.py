"""`edgepipe train` and `edgepipe evaluate`.

Registration imports only argparse and our light modules; TensorFlow is
imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from edgepipe.core.args import add_command, fraction, typed_dests
from edgepipe.core.options import add_options, argument_group, options_from

from .options import AUGMENTATION, MAX_INPUT_SIZE, MIN_INPUT_SIZE, Augmentation, EvaluateOptions, ModelConfig, TrainConfig

TASKS = ("classify", "detect")
# Flags of `train` a detector takes (argparse dests), and where they go in DetectTrainConfig
# (model.* = DetectorConfig, augment.* = BoxAugmentation); the detector keeps its own defaults.
DETECT_FLAGS = {
    "epochs": "epochs", "fine_tune_epochs": "fine_tune_epochs", "batch_size": "batch_size",
    "learning_rate": "learning_rate", "fine_tune_learning_rate": "fine_tune_learning_rate", "patience": "patience",
    "seed": "seed", "augment_copies": "augment_copies", "val_split": "val_fraction", "test_split": "test_fraction",
    "input_size": "model.input_size", "weights": "model.weights",
    "no_augment": "augment", "no_flip": "augment.flip", "brightness": "augment.brightness",
    "contrast": "augment.contrast",
}
SHARED_FLAGS = {"data_dirs", "out", "force", "json", "task", "func", "parser", "help"}


def register(subparsers: argparse._SubParsersAction, simulate_imx500: Callable | None = None) -> None:
    """`simulate_imx500`: convert's IMX500 sensor simulation, for `evaluate --accelerator imx500`."""
    _register_train(subparsers)
    _register_evaluate(subparsers, simulate_imx500)


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "train",
        help="fine-tune MobileNet on a folder of labelled photos",
        description="""
            Fine-tune an ImageNet MobileNet on DATA_DIR/<label>/*.jpg|png|bmp|webp (several DATA_DIRs
            merge: classes of the same name join, e.g. the original photos and sorted field frames from
            `edgepipe deploy collect`; config.json records the folders) and write a run
            directory (model.keras, labels.txt, config.json, split.json, metrics.json, history.csv,
            confusion_matrix.png, training_curves.png, skipped.txt) for `edgepipe convert`.
            Phase 1 trains the head on backbone features computed once (plus augmented copies);
            phase 2 fine-tunes the top backbone block at a lower learning rate. BatchNormalization
            stays frozen throughout. Unreadable images are skipped and listed. Ctrl-C keeps the
            best model so far.""",
        examples="""
            edgepipe train photos/ --out run/
            edgepipe train photos/ --out run/ --weights mobilenet_v2_1.0_224_no_top.h5
            edgepipe train photos/ --out run/ --input-size 96 --alpha 0.35 --weights none --epochs 5
            edgepipe train photos/ --out run/ --val-dir photos_val/ --force
            edgepipe train photos/ field/ --out run2/
            edgepipe train photos/ --out run/ --background-class none""",
    )
    p.add_argument("data_dirs", nargs="+", metavar="DATA_DIR",
                   help="folder with one sub-folder of images per class; several merge by class name")
    add_options(p, TrainConfig)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--task", choices=TASKS,
                   help="classify (default): one label per photo; detect: an SSDLite detector trained on photos "
                        "with boxes (VOC, TF CSV, YOLO, COCO), 320x320 unless --input-size (a multiple of 32, "
                        "160..640); it takes the data, training and augmentation flags with its own defaults "
                        "(docs/detect.md) and refuses the others")
    p.add_argument("--test-split", type=fraction, default=None,
                   help="[detect] share of photos held out for test when the data has no fixed split (default 0.2)")
    add_options(p, ModelConfig, group="model")
    argument_group(p, AUGMENTATION).add_argument(
        "--no-augment", action="store_true", help="no augmentation (head trains on clean features only)")
    add_options(p, Augmentation, group=AUGMENTATION)
    p.set_defaults(func=run_train)


def _register_evaluate(subparsers: argparse._SubParsersAction, simulate_imx500: Callable | None) -> None:
    p = add_command(
        subparsers, "evaluate",
        help="accuracy (or a detector's mAP), per-class metrics and plots of a model on labelled photos",
        description="""
            Evaluate a trained model on DATA_DIR/<label>/*.jpg (or on the held-out part of a run's
            split with --split val): accuracy, top-k, per-class precision/recall/F1, macro averages
            and the confusion matrix. MODEL is a run dir or model.keras (TensorFlow), or a bundle dir
            or .tflite file (through the device runtime, as on the Pi). A detector (a detection
            bundle, run or .tflite ending in TFLite_Detection_PostProcess) is evaluated on photos with
            boxes in any format train reads: COCO mAP@0.5 and mAP@[.5:.95] (pycocotools), AP per
            class, precision and recall at the device's score threshold, and precision-recall curves.""",
        examples="""
            edgepipe evaluate run/ photos_test/
            edgepipe evaluate run/ --split val --json
            edgepipe evaluate bundle/ photos_test/ --out eval/
            edgepipe evaluate model.tflite photos_test/ --labels labels.txt --top-k 3
            edgepipe evaluate bundle/ --split val --run run/ --unknown-dir not_flowers/
            edgepipe evaluate bundle/ photos_test/ --accelerator imx500
            edgepipe evaluate detect-bundle/ raccoon/ --split test --out eval/
            edgepipe evaluate detect-bundle/ --split test --run detect-run/ --json""",
    )
    p.add_argument("model", metavar="MODEL", type=Path, help="run dir, model.keras, bundle dir or .tflite")
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", type=Path,
                   help="folder with one sub-folder of images per class (a detector: photos with boxes)")
    add_options(p, EvaluateOptions)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.set_defaults(func=run_evaluate, simulate_imx500=simulate_imx500)


def _explicit_flags(args: argparse.Namespace) -> dict[str, object]:
    """The train flags typed on the command line, also those typed with classification's default value
    (a detector's defaults differ: `--augment-copies 3` must mean 3)."""
    own = {action.dest for action in args.parser._actions} - SHARED_FLAGS
    return {k: getattr(args, k) for k in sorted(own & typed_dests(args.parser, args.argv))}


def detect_config(args: argparse.Namespace):
    """DetectTrainConfig: its own defaults, overridden by the train flags a detector takes."""
    from dataclasses import replace

    from edgepipe.core.errors import UserError

    from .detect.augment import BoxAugmentation
    from .detect.sizes import check_input_size
    from .detect.trainer import DetectTrainConfig

    given = _explicit_flags(args)
    foreign = sorted(set(given) - set(DETECT_FLAGS))
    if foreign:
        args.parser.error(f"--{foreign[0].replace('_', '-')} does not apply to --task detect")
    cfg = DetectTrainConfig(data_dirs=args.data_dirs, out=str(args.out), force=args.force)
    top, model, augment = {}, {}, {}
    for flag, value in given.items():
        where = DETECT_FLAGS[flag]
        if where.startswith("model."):
            model[where[6:]] = value
        elif where.startswith("augment."):
            augment[where[8:]] = value  # --no-flip stores the field's own value (flip=False)
        elif where != "augment":
            top[where] = value
    if "input_size" in model:
        try:
            check_input_size(model["input_size"])
        except UserError as exc:
            args.parser.error(f"argument --input-size: {exc}")
    augmentation = None if args.no_augment else replace(BoxAugmentation(), **augment)
    return replace(cfg, **top, model=replace(cfg.model, **model), augment=augmentation)


def run_detect_train(args: argparse.Namespace) -> int:
    from .detect.trainer import train_detector

    summary = train_detector(detect_config(args))
    return _finished(args, summary, f"{summary['run_dir']}: validation mAP@0.5 {summary['val_map50']:.4f} on "
                                    f"{summary['n_val']} photos (best: {summary['best']}; {summary['n_test']} test "
                                    f"photos kept for convert; {summary['wall_seconds']:.0f} s)")


def run_train(args: argparse.Namespace) -> int:
    if args.task == "detect":
        detect_config(args)  # flags are checked before TensorFlow's seconds of import
        from .keras_io import keras
        keras()
        return run_detect_train(args)
    if args.input_size > MAX_INPUT_SIZE:
        args.parser.error(f"argument --input-size: {args.input_size} must be between {MIN_INPUT_SIZE} and "
                          f"{MAX_INPUT_SIZE} for classification")
    if args.test_split is not None:
        args.parser.error("--test-split is for --task detect; classification uses --val-split")

    from .data import class_folders
    for folder in [*args.data_dirs, *([args.val_dir] if args.val_dir else [])]:
        class_folders(Path(folder))  # a wrong folder is said at once, not after TensorFlow's seconds of import

    from .keras_io import keras
    keras()  # a missing `train` extra is reported before any photo is scanned

    from .trainer import train

    augment = None if args.no_augment else options_from(args, Augmentation)
    cfg = options_from(args, TrainConfig, data_dirs=args.data_dirs, model=options_from(args, ModelConfig),
                       augment=augment)
    summary = train(cfg)
    return _finished(args, summary, f"{summary['run_dir']}: validation accuracy {summary['accuracy']:.4f}, macro F1 "
                                    f"{summary['macro_f1']:.4f} on {summary['n_val']} held-out images "
                                    f"(best: {summary['best']}; {summary['wall_seconds']:.0f} s)")


def _finished(args: argparse.Namespace, summary: dict, line: str) -> int:
    """A training's last word: its summary as JSON with --json, else `line`; 130 when it was interrupted."""
    import json

    print(json.dumps(summary) if args.json else line)
    return 130 if summary["interrupted"] else 0


def _check_evaluate_args(args: argparse.Namespace, task: str) -> None:
    """Usage errors: which photos, by the model's task (a detector takes DATA_DIR with --split test|all)."""
    if args.data_dir is None and args.split is None:
        args.parser.error("pass DATA_DIR (a folder of class sub-folders, or of photos with boxes for a detector) "
                          "or --split val to use the run's held-out split")
    if task != "detect":
        if args.data_dir is not None and args.split is not None:
            args.parser.error("pass either DATA_DIR or --split, not both")
        if args.split in ("test", "all"):
            args.parser.error(f"--split {args.split} is for detectors; a classifier's run has the parts train and val")
    elif args.data_dir is not None and args.split in ("train", "val"):
        args.parser.error(f"--split {args.split} is a part of a run's split: pass it without DATA_DIR (--run RUN); "
                          "with DATA_DIR a detector takes --split test or all")
    elif args.data_dir is None and args.split == "all":
        args.parser.error("--split all evaluates every photo of DATA_DIR; pass DATA_DIR")


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys

    from . import run_dir as rd
    from .evaluate import evaluate, model_task
    from .metrics import format_report, format_unknown_report

    task = model_task(args.model)
    _check_evaluate_args(args, task)
    options = options_from(args, EvaluateOptions, model=args.model, data_dir=args.data_dir)
    if task == "detect":
        return _run_detect_evaluate(args, options)
    evaluation = evaluate(options, simulate_imx500=args.simulate_imx500)
    skipped = evaluation.skipped
    if args.json:
        print(json.dumps(evaluation.result))
    else:
        print(f"model {args.model} ({evaluation.engine})")
        print(format_report(evaluation.report))
        if "unknown" in evaluation.result:
            print("\n" + format_unknown_report(evaluation.result["unknown"]))
        if skipped:
            print(f"\nskipped {len(skipped)} unreadable files: {', '.join(map(str, skipped[:5]))}"
                  + (" ..." if len(skipped) > 5 else ""))
        if args.out is not None:
            print(f"\nwrote {args.out / rd.METRICS} and {args.out / rd.CONFUSION_PNG}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable files", file=sys.stderr)
    return 0


def _run_detect_evaluate(args: argparse.Namespace, options: EvaluateOptions) -> int:
    import json
    import sys

    from . import run_dir as rd
    from .detect.evaluate import PR_CURVES_PNG, evaluate_detector
    from .detect.metrics import format_detection_report

    evaluation = evaluate_detector(options)
    if args.json:
        print(json.dumps(evaluation.result))
    else:
        print(f"model {args.model} ({evaluation.engine}), on {evaluation.which}")
        print(format_detection_report(evaluation.metrics))
        if args.out is not None:
            print(f"\nwrote {args.out / rd.METRICS} and {args.out / PR_CURVES_PNG}")
    if evaluation.skipped:
        print(f"skipped {len(evaluation.skipped)} unreadable photos: {', '.join(map(str, evaluation.skipped[:5]))}"
              + (" ..." if len(evaluation.skipped) > 5 else ""), file=sys.stderr)
    return 0
