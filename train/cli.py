"""`edgepipe train` and `edgepipe evaluate`.

Registration imports only argparse and our light modules; TensorFlow is
imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepipe.core.args import add_command, fraction, non_negative_float, non_negative_int, positive_float, positive_int

from edgepipe.device.cli.register import unknown_mode

from .model import ALPHAS, ARCHITECTURES, MAX_INPUT_SIZE, MIN_INPUT_SIZE


def input_size(text: str) -> int:
    value = positive_int(text)
    if not MIN_INPUT_SIZE <= value <= MAX_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} must be between {MIN_INPUT_SIZE} and {MAX_INPUT_SIZE}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_evaluate(subparsers)


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
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace RUN_DIR if it exists")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    data = p.add_argument_group("data")
    data.add_argument("--val-split", type=fraction, default=0.2, help="stratified validation fraction (default 0.2)")
    data.add_argument("--val-dir", metavar="DIR", help="use this folder for validation instead of a split")
    data.add_argument("--seed", type=int, default=0, help="seed for the split, augmentation and weights (default 0)")
    data.add_argument("--background-class", metavar="NAME",
                      help="the class folder of images of none of the classes (e.g. none): trained like any "
                           "other, reported as \"unknown\" by run/classify and treated so by convert and evaluate")
    model = p.add_argument_group("model")
    model.add_argument("--architecture", choices=ARCHITECTURES, default="mobilenet_v2")
    model.add_argument("--alpha", type=float, choices=ALPHAS, default=1.0, help="width multiplier (default 1.0)")
    model.add_argument("--input-size", type=input_size, default=224, help="square input, 96..224 (default 224)")
    model.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                       help="backbone weights: ImageNet (Keras' download, offline the copy shipped with edgepipe for mobilenet_v2 alpha 1.0), none (random) or a .h5 file")
    model.add_argument("--dropout", type=fraction, default=0.2, help="dropout before the softmax (default 0.2)")
    model.add_argument("--l2", type=non_negative_float, default=1e-4, help="L2 on the softmax kernel (default 1e-4)")
    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=positive_int, default=60, help="head epochs (default 60)")
    fit.add_argument("--fine-tune-epochs", type=non_negative_int, default=4,
                     help="epochs fine-tuning the top backbone layers, 0 = none (default 4)")
    fit.add_argument("--fine-tune-layers", type=non_negative_int, default=11,
                     help="backbone layers to fine-tune, counted from the top and extended to a block boundary "
                          "(default 11: MobileNetV2's last block and final conv)")
    fit.add_argument("--batch-size", type=positive_int, default=32)
    fit.add_argument("--learning-rate", type=positive_float, default=1e-3, help="head learning rate (default 1e-3)")
    fit.add_argument("--fine-tune-learning-rate", type=positive_float, default=1e-4,
                     help="fine-tuning learning rate (default 1e-4)")
    fit.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="adam, or sgd with momentum")
    fit.add_argument("--momentum", type=fraction, default=0.9, help="sgd momentum (default 0.9)")
    fit.add_argument("--patience", type=positive_int, default=10,
                     help="early stopping: epochs without a better validation loss (default 10)")
    fit.add_argument("--no-class-weights", action="store_true", help="do not weight classes by inverse frequency")
    fit.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default",
                     help="tf.distribute strategy; multiworker reads TF_CONFIG (default: one device)")
    aug = p.add_argument_group("augmentation (training images only)")
    aug.add_argument("--no-augment", action="store_true", help="no augmentation (head trains on clean features only)")
    aug.add_argument("--augment-copies", type=non_negative_int, default=3,
                     help="augmented copies of each training image, computed once (default 3)")
    aug.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    aug.add_argument("--rotation", type=non_negative_float, default=0.05, help="max rotation, fraction of a turn")
    aug.add_argument("--zoom", type=non_negative_float, default=0.15, help="max zoom in/out fraction")
    aug.add_argument("--brightness", type=non_negative_float, default=0.15, help="max brightness shift fraction")
    aug.add_argument("--contrast", type=non_negative_float, default=0.2, help="max contrast change fraction")
    p.set_defaults(func=run_train)


def _register_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers, "evaluate",
        help="accuracy, per-class metrics and confusion matrix of a model on labelled photos",
        description="""
            Evaluate a trained model on DATA_DIR/<label>/*.jpg (or on the held-out part of a run's
            split with --split val): accuracy, top-k, per-class precision/recall/F1, macro averages
            and the confusion matrix. MODEL is a run dir or model.keras (TensorFlow), or a bundle dir
            or .tflite file (through the device runtime, as on the Pi).""",
        examples="""
            edgepipe evaluate run/ photos_test/
            edgepipe evaluate run/ --split val --json
            edgepipe evaluate bundle/ photos_test/ --out eval/
            edgepipe evaluate model.tflite photos_test/ --labels labels.txt --top-k 3
            edgepipe evaluate bundle/ --split val --run run/ --unknown-dir not_flowers/""",
    )
    p.add_argument("model", metavar="MODEL", help="run dir, model.keras, bundle dir or .tflite")
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", type=Path,
                   help="folder with one sub-folder of images per class")
    p.add_argument("--split", choices=("val", "train"),
                   help="evaluate on this part of the run's split.json instead of DATA_DIR")
    p.add_argument("--run", metavar="RUN_DIR", type=Path, help="run dir whose split --split uses (default: MODEL)")
    p.add_argument("--labels", metavar="FILE", type=Path, help="labels file for a bare .tflite or .keras model")
    p.add_argument("--top-k", type=positive_int, default=5, help="also report top-K accuracy (default 5; omitted when K >= the number of classes)")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--unknown-dir", metavar="DIR",
                   help="images of none of the classes (any depth): report the false-accept rate, the AUROC of "
                        "in-class vs unknown and in-class accuracy with rejection on and off")
    p.add_argument("--unknown", type=unknown_mode, default="auto", metavar="auto|P",
                   help="the threshold --unknown-dir evaluates: auto (default) = the bundle's calibrated one; "
                        "P in [0, 1] on its score (max softmax for other models)")
    p.add_argument("--out", metavar="DIR", help="write metrics.json and confusion_matrix.png here")
    p.add_argument("--force", action="store_true", help="overwrite files in --out")
    p.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    import json

    from .keras_io import keras
    keras()  # a missing `train` extra is reported before any photo is scanned

    from .data import Augmentation
    from .model import ModelConfig
    from .trainer import TrainConfig, train

    augment = None if args.no_augment else Augmentation(
        flip=not args.no_flip, rotation=args.rotation, zoom=args.zoom,
        brightness=args.brightness, contrast=args.contrast)
    cfg = TrainConfig(
        data_dirs=args.data_dirs, out=args.out, force=args.force, background_class=args.background_class,
        model=ModelConfig(architecture=args.architecture, alpha=args.alpha, input_size=args.input_size,
                          weights=args.weights, dropout=args.dropout, l2=args.l2),
        val_split=args.val_split, val_dir=args.val_dir, seed=args.seed, epochs=args.epochs,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_layers=args.fine_tune_layers,
        batch_size=args.batch_size, learning_rate=args.learning_rate,
        fine_tune_learning_rate=args.fine_tune_learning_rate, optimizer=args.optimizer, momentum=args.momentum,
        patience=args.patience, class_weights=not args.no_class_weights, augment=augment,
        augment_copies=args.augment_copies, strategy=args.strategy,
    )
    summary = train(cfg)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['run_dir']}: validation accuracy {summary['accuracy']:.4f}, macro F1 "
              f"{summary['macro_f1']:.4f} on {summary['n_val']} held-out images "
              f"(best: {summary['best']}; {summary['wall_seconds']:.0f} s)")
    return 130 if summary["interrupted"] else 0


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys

    from . import run_dir as rd
    from .evaluate import EvaluateOptions, evaluate
    from .metrics import format_report, format_unknown_report

    if args.data_dir is not None and args.split is not None:
        args.parser.error("pass either DATA_DIR or --split, not both")
    if args.data_dir is None and args.split is None:
        args.parser.error("pass DATA_DIR (a folder of class sub-folders) or --split val to use the run's held-out split")
    out = Path(args.out) if args.out else None
    evaluation = evaluate(EvaluateOptions(
        model=Path(args.model), data_dir=args.data_dir, split=args.split, run=args.run, labels=args.labels,
        top_k=args.top_k, batch_size=args.batch_size, out=out, force=args.force,
        unknown_dir=Path(args.unknown_dir) if args.unknown_dir else None, unknown=args.unknown))
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
        if out is not None:
            print(f"\nwrote {out / rd.METRICS} and {out / rd.CONFUSION_PNG}")
    if skipped:
        print(f"skipped {len(skipped)} unreadable files", file=sys.stderr)
    return 0
