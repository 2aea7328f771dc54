"""How well does a model say "I don't know", and what does collecting cost? (issue 14)

On flowers12 (../shared/datasets/flowers12/train): the model is trained on 9
classes and the other 3 (sunflower, tigerlily, windflower: KNOWN/UNKNOWN
below) play "none of the classes". Real commands throughout:

  1. edgepipe train KNOWN --input-size 128 --fine-tune-epochs 1 --augment-copies 1
     (the fast recipe: this measures rejection, not the best accuracy; see docs/performance.md)
  2. edgepipe convert RUN --method ptq --unknown-dir UNKNOWN   (default --unknown-accept 0.99; with
     --unknown-dir, convert chooses the score by its AUROC against those images)
  3. edgepipe evaluate BUNDLE --split val --run RUN --unknown-dir UNKNOWN
     -> false-accept rate at the default calibration, AUROC in-class vs unknown,
        in-class accuracy with rejection on and off;
     plus the AUROC and false-accept of every score kind on the same images
     (softmax kinds and the feature-space distances: which separates unseen
     flower species, near the training distribution, best?)
  4. edgepipe run BUNDLE --source <the held-out and unknown images> without
     --collect, with --collect at its default limits, and with --collect at its
     worst case (every frame kept: --collect-every 1, no rate limit, so every
     frame the queue takes is JPEG-encoded and written), alternated for
     --rounds rounds, in fresh processes: throughput (frames / run duration
     from --stats-json). Target: default on/off >= 0.95; the worst case is
     reported.

Writes benchmarks/results/unknown.json; prints a table. With --reuse, an
existing run dir and bundle in benchmarks/results/unknown/ are kept.

    python benchmarks/bench_unknown.py [--shared ../shared] [--rounds 4] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "unknown"
UNKNOWN_CLASSES = ("sunflower", "tigerlily", "windflower")
TRAIN_FLAGS = ["--input-size", "128", "--fine-tune-epochs", "1", "--augment-copies", "1"]
TARGET_COLLECT_RATIO = 0.95
REPEAT = 5  # each run classifies every image this many times: runs of seconds, not a noisy fraction of one
EDGEPIPE = [sys.executable, "-m", "edgepipe"]


def sh(*argv: str) -> str:
    print("$ " + " ".join(argv[2:] if argv[:2] == tuple(EDGEPIPE[1:]) else argv), file=sys.stderr, flush=True)
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return proc.stdout


def split_classes(data: Path) -> tuple[Path, Path]:
    """KNOWN and UNKNOWN: folders of symlinks to the 9 and 3 class folders."""
    known, unknown = WORK / "known", WORK / "unknown"
    for folder in (known, unknown):
        folder.mkdir(parents=True, exist_ok=True)
    for cls in sorted(p for p in data.iterdir() if p.is_dir()):
        link = (unknown if cls.name in UNKNOWN_CLASSES else known) / cls.name
        if not link.exists():
            link.symlink_to(cls.resolve(), target_is_directory=True)
    return known, unknown


def score_table(bundle: Path, run: Path, outside: Path) -> dict[str, dict[str, float]]:
    """AUROC and false-accept at 95% and 99% held-out accepted for every score kind, on the int8 model's outputs."""
    import numpy as np

    from edgepipe.convert.calibrate import threshold_for
    from edgepipe.convert.feature_fit import fit, with_reference
    from edgepipe.device.model.feature_score import FEATURE_KINDS
    from edgepipe.device.model.unknown import SOFTMAX_KINDS, confidence
    from edgepipe.train.data import image_files
    from edgepipe.train.device_eval import run_files
    from edgepipe.train.metrics import auroc
    from edgepipe.train.run_dir import load_run

    trained = load_run(run)
    temperature = json.loads((bundle / "bundle.json").read_text())["unknown"]["fitted_temperature"]
    train_files = trained.split_files("train")
    train = run_files(bundle, [p for p, _ in train_files])
    train_labels = np.array([label for _, label in train_files])
    inside = run_files(bundle, [p for p, _ in trained.split_files("val")])
    far = run_files(bundle, image_files(outside))
    table = {}
    for kind in SOFTMAX_KINDS + FEATURE_KINDS:
        if kind in FEATURE_KINDS:
            score = fit(kind, train.features, train_labels)
            score = with_reference(score, inside.features) if kind == "mahalanobis" else score
            value_in, value_out = score.familiarity(inside.features), score.familiarity(far.features)
        else:
            value_in, value_out = confidence(inside.scores, kind, temperature), confidence(far.scores, kind, temperature)
        table[kind] = {"auroc": round(auroc(value_in, value_out), 4),
                       **{f"false_accept_at_{round(share * 100)}":
                          round(float(np.mean(value_out >= threshold_for(value_in, share))), 4) for share in (0.95, 0.99)}}
    return table


def repeated_images(folder: Path, run: Path, unknown: Path, repeat: int) -> Path:
    """One folder of symlinks: the run's held-out in-class images and the unknown images, `repeat` times each."""
    if not folder.exists():
        folder.mkdir()
        from edgepipe.train.data import image_files
        from edgepipe.train.run_dir import load_run

        for path in [p for p, _ in load_run(run).split_files("val")] + image_files(unknown):
            for copy in range(repeat):
                (folder / f"{copy}_{path.parent.name}_{path.name}").symlink_to(path.resolve())
    return folder


COLLECT_MODES = {
    "default": [],
    "worst": ["--collect-every", "1", "--collect-rate", "1000000", "--collect-max-mb", "200"],
}


class RunMeasure(NamedTuple):
    fps: float  # frames / run duration, from the run's own summary
    cpu_ms: float  # CPU milliseconds per frame, user + system (what a shared machine's load changes least)
    postprocess_ms: float  # the run's mean postprocess stage per frame (top-k, smoothing, the unknown rule)


def throughput(bundle: Path, source: Path, collect: Path | None, mode: str = "default",
               extra: list[str] | tuple[str, ...] = ()) -> RunMeasure:
    """One `edgepipe run` over the images, measured. `extra`: more `run` flags
    (bench_unknown_features.py: --unknown off|auto)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.json"
        argv = [*EDGEPIPE, "run", str(bundle), "--source", str(source), "--stats-interval", "0",
                "--stats-json", str(stats), "--top-k", "1", *extra]
        if collect is not None:
            shutil.rmtree(collect, ignore_errors=True)
            argv += ["--collect", str(collect), *COLLECT_MODES[mode]]
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        summary = json.loads(stats.read_text())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_ms = ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) * 1e3 / summary["frames"]
    if collect is not None:
        saved = summary["collect"]["saved"]
        print(f"  collect {mode}: {saved} saved, {summary['collect']['dropped_queue_full']} dropped (queue full), "
              f"{summary['collect']['rate_limited']} rate-limited of {summary['frames']}", file=sys.stderr)
    return RunMeasure(float(summary["fps"]), cpu_ms, float(summary["latency_ms"]["postprocess"]["mean"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("EDGEPIPE_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--rounds", type=int, default=4, help="alternated off/on pairs for the collect cost")
    parser.add_argument("--reuse", action="store_true", help="keep an existing run dir and bundle")
    args = parser.parse_args()
    data = args.shared / "datasets" / "flowers12" / "train"
    weights = args.shared / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
    missing = [p for p in (data, weights) if not p.exists()]
    if missing:
        print(f"skipped: {missing[0]} is absent (put ../shared beside the checkout or pass --shared)")
        return 0
    known, unknown = split_classes(data)
    run, bundle = WORK / "run", WORK / "bundle"
    if not (args.reuse and (run / "model.keras").is_file()):
        sh(*EDGEPIPE, "train", str(known), "--out", str(run), "--weights", str(weights), "--force", *TRAIN_FLAGS)
    if not (args.reuse and (bundle / "bundle.json").is_file()):
        sh(*EDGEPIPE, "convert", str(run), "--out", str(bundle), "--method", "ptq", "--unknown-dir", str(unknown),
           "--force")
    report = json.loads(sh(*EDGEPIPE, "evaluate", str(bundle), "--split", "val", "--run", str(run),
                           "--unknown-dir", str(unknown), "--json"))
    rejection = report["unknown"]
    calibration = json.loads((bundle / "bundle.json").read_text())["unknown"]
    separation = score_table(bundle, run, unknown)

    images = repeated_images(WORK / "run_images", run, unknown, REPEAT)
    collect_dir = WORK / "collected"
    measured: dict[str, list[RunMeasure]] = {"off": [], "default": [], "worst": []}
    for _ in range(args.rounds):
        measured["off"].append(throughput(bundle, images, None))
        measured["default"].append(throughput(bundle, images, collect_dir, "default"))
        measured["worst"].append(throughput(bundle, images, collect_dir, "worst"))
    off, on, worst = ([m.fps for m in measured[k]] for k in ("off", "default", "worst"))
    cpu = {k: round(statistics.median(m.cpu_ms for m in v), 2) for k, v in measured.items()}
    ratios = [b / a for a, b in zip(off, on)]
    worst_ratios = [b / a for a, b in zip(off, worst)]
    result = {
        "benchmark": "unknown",
        "train_flags": TRAIN_FLAGS,
        "train_wall_s": json.loads((run / "config.json").read_text())["wall_seconds"],
        "unknown_classes": list(UNKNOWN_CLASSES),
        "calibration": calibration,
        "evaluate": rejection,
        "auroc_by_score": separation,
        "collect": {"fps_off": off, "fps_on_default": on, "fps_on_worst": worst,
                    "ratios": [round(r, 3) for r in ratios], "median_ratio": round(statistics.median(ratios), 3),
                    "worst_ratios": [round(r, 3) for r in worst_ratios],
                    "worst_median_ratio": round(statistics.median(worst_ratios), 3),
                    "cpu_ms_per_frame": cpu, "target": TARGET_COLLECT_RATIO,
                    "frames_per_run": len(list(images.iterdir()))},
        "load_average_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "unknown.json").write_text(json.dumps(result, indent=2))
    pct = lambda v: f"{v * 100:.1f}%"  # noqa: E731
    rows = [
        ("score chosen by convert", f"{calibration['score']} ({calibration['selection']['misclassified']} held-out errors)"),
        ("threshold (default accept)", f"{calibration['threshold']:.4f}, accepts {pct(calibration['accepted'])}"),
        ("false-accept rate", f"{pct(rejection['false_accept_rate'])} of {rejection['n_unknown']} unknown images"),
        ("AUROC in-class vs unknown", f"{rejection['auroc']:.4f}"),
        ("AUROC by score", ", ".join(f"{k} {v['auroc']:.4f}" for k, v in separation.items())),
        ("in-class accuracy, rejection off", pct(rejection["accuracy_rejection_off"])),
        ("in-class accuracy, rejection on", f"{pct(rejection['accuracy_rejection_on'])} "
                                            f"(accepted answers: {pct(rejection['accuracy_of_accepted'])})"),
        ("run fps, --collect off / default / worst",
         f"{statistics.median(off):.1f} / {statistics.median(on):.1f} / {statistics.median(worst):.1f}"),
        ("collect default on/off (median)", f"{result['collect']['median_ratio']:.3f} (target >= {TARGET_COLLECT_RATIO})"),
        ("collect worst case on/off (median)", f"{result['collect']['worst_median_ratio']:.3f} (reported)"),
        ("CPU ms/frame off / default / worst", f"{cpu['off']:.2f} / {cpu['default']:.2f} / {cpu['worst']:.2f}"),
        ("load average after", f"{result['load_average_1m_after']:.2f} on {os.cpu_count()} CPUs"),
    ]
    for name, value in rows:
        print(f"{name:<40} {value}")
    print(f"wrote {RESULTS / 'unknown.json'}")
    return 0 if result["collect"]["median_ratio"] >= TARGET_COLLECT_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
