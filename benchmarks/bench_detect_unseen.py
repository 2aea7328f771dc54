"""Do `edgepipe train --task detect` + `edgepipe convert` work, with defaults, on a new user's data?

The detector was tuned on the raccoon photos. This runs the same two commands, with no flag but the
folders, on two Pascal VOC sets it never saw (tests/flower_boxes.py makes them from the real photos
in ../shared: flowers cut out and pasted on real backgrounds, mixed photo sizes, some photos empty):

- sunflowers: one class, 120 photos, labelImg's layout (XML beside each JPEG);
- meadow: daisy and dandelion, 160 photos, VOC's layout (Annotations/ + JPEGImages/), both in many photos;

    edgepipe train --task detect SET --out benchmarks/results/unseen/SET-run
    edgepipe convert benchmarks/results/unseen/SET-run --out benchmarks/results/unseen/SET-bundle

and reports per set, on its held-out test split (a seeded fifth of the photos, chosen by train):
int8 mAP@0.5 of the bundle's model.tflite measured again here through the device runtime, float
mAP@0.5 (convert's), mAP@[.5:.95], AP per class; the same numbers (int8 and float) on 40 "fresh"
photos made from a disjoint fifth of the source flowers and backgrounds (nothing in them was seen in
training, unlike the test split, whose flowers were also pasted into training photos); train and
convert wall and CPU time, and the load average before and after each set. Writes
benchmarks/results/detect_unseen.json.

    python benchmarks/bench_detect_unseen.py [--sets sunflowers meadow]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # benchmarks/ as a package, and the data set maker
from benchmarks.bench_detect import run_command  # noqa: E402
from flower_boxes import MEADOW, SUNFLOWERS, missing_sources, write_flower_set  # noqa: E402

from edgepipe.train.detect.measure import evaluate_keras_detector, evaluate_tflite_detector, load_photos  # noqa: E402
from edgepipe.device.model.bundle import load_bundle  # noqa: E402
from edgepipe.train.detect.anchors import make_anchors  # noqa: E402
from edgepipe.train.detect.data import load_detection_data  # noqa: E402
from edgepipe.train.detect.decode import PostprocessConfig  # noqa: E402
from edgepipe.train.detect.trainer import boxed_images  # noqa: E402
from edgepipe.train.run_dir import load_run  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "unseen"
SHARED = Path(os.environ.get("EDGEPIPE_SHARED", ROOT.parent / "shared"))
SETS = {s.name: s for s in (SUNFLOWERS, MEADOW)}


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _ap(per_class: dict) -> dict:
    return {name: row["ap50"] for name, row in per_class.items()}


def measure(name: str) -> dict:
    """Make the set, run both commands with defaults, measure the bundle on the test split and the fresh photos."""
    spec = SETS[name]
    data, fresh = WORK / name, WORK / f"{name}-fresh"
    run, bundle = WORK / f"{name}-run", WORK / f"{name}-bundle"
    for folder in (data, fresh):
        shutil.rmtree(folder, ignore_errors=True)
    counts = write_flower_set(spec, data, SHARED)
    write_flower_set(spec, fresh, SHARED, part="fresh")
    load_before = _load()
    trained, train_s, train_cpu = run_command(["train", "--task", "detect", str(data), "--out", str(run), "--force",
                                               "--json"])
    converted, convert_s, convert_cpu = run_command(["convert", str(run), "--out", str(bundle), "--force", "--json"],
                                                    accept_rejected=True)
    load_after = _load()
    bundle = Path(converted["bundle"])  # BUNDLE.rejected when int8 fell further below float than --max-drop

    trained_run = load_run(run)
    model = (bundle / "model.tflite").read_bytes()
    labels = load_bundle(bundle).labels
    test = evaluate_tflite_detector("int8", model, load_photos(boxed_images(trained_run.split, "test"),
                                                               trained_run.input_spec, "test photos"), labels)
    fresh_data = load_detection_data([fresh], test_fraction=0.5)
    fresh_images = sorted(fresh_data.train + fresh_data.test, key=lambda i: str(i.path))
    fresh_photos = load_photos(fresh_images, trained_run.input_spec, "fresh photos")
    fresh_eval = evaluate_tflite_detector("int8", model, fresh_photos, labels)
    size = trained_run.input_spec
    fresh_float = evaluate_keras_detector(trained_run.load_model(), fresh_photos, size, make_anchors(size.height),
                                          PostprocessConfig(**trained_run.config.get("postprocess", {})), labels)
    acc = converted["accuracy"]
    return {
        "set": name, "classes": list(spec.classes), "layout": spec.layout, "made": counts,
        "photos": {"train": trained["n_train"], "validation": trained["n_val"], "test": trained["n_test"],
                   "fresh": len(fresh_images)},
        "labels": labels, "shipped_method": converted["method"], "convert_status": converted["status"],
        "test": {"int8_map50": test.map50, "int8_map50_bundle": acc["int8"], "float_map50": acc["float"],
                 "int8_map50_95": test.map50_95, "float_map50_95": acc["map50_95"]["float"],
                 "int8_ap50": _ap(test.per_class), "float_ap50": _ap(acc["test"]["float"]["per_class"]),
                 "int8_per_class": test.per_class},
        "fresh": {"int8_map50": fresh_eval.map50, "float_map50": fresh_float.map50,
                  "int8_map50_95": fresh_eval.map50_95, "float_map50_95": fresh_float.map50_95,
                  "int8_ap50": _ap(fresh_eval.per_class), "float_ap50": _ap(fresh_float.per_class),
                  "int8_per_class": fresh_eval.per_class},
        "best_epoch": trained["best"], "val_map50": trained["val_map50"],
        "seconds": {"train": round(train_s, 1), "convert": round(convert_s, 1), "total": round(train_s + convert_s, 1)},
        "cpu_seconds": {"train": round(train_cpu, 1), "convert": round(convert_cpu, 1)},
        "load_average_before": load_before, "load_average_after": load_after,
    }


def _row(r: dict) -> list[str]:
    t, f = r["test"], r["fresh"]
    ap = ", ".join(f"{k} {v:.3f}" for k, v in t["int8_ap50"].items())
    fresh_ap = ", ".join(f"{k} {v:.3f}" for k, v in f["int8_ap50"].items())
    return [
        f"{r['set']}: {len(r['classes'])} class(es), {r['photos']['train']}/{r['photos']['validation']}/"
        f"{r['photos']['test']} train/val/test photos, shipped {r['shipped_method']}, convert {r['convert_status']}",
        f"  test mAP@0.5 int8 {t['int8_map50']:.3f} (bundle.json {t['int8_map50_bundle']:.3f}), float "
        f"{t['float_map50']:.3f}; mAP@[.5:.95] int8 {t['int8_map50_95']:.3f}, float {t['float_map50_95']:.3f}",
        f"  test AP@0.5 int8 per class: {ap}",
        f"  fresh ({r['photos']['fresh']} photos) mAP@0.5 int8 {f['int8_map50']:.3f}, float {f['float_map50']:.3f}; "
        f"mAP@[.5:.95] int8 {f['int8_map50_95']:.3f}, float {f['float_map50_95']:.3f}; int8 per class: {fresh_ap}",
        f"  train {r['seconds']['train']:.0f} s (CPU {r['cpu_seconds']['train']:.0f} s) + convert "
        f"{r['seconds']['convert']:.0f} s (CPU {r['cpu_seconds']['convert']:.0f} s); load "
        f"{r['load_average_before'][0]:.1f} before, {r['load_average_after'][0]:.1f} after",
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", choices=sorted(SETS), default=list(SETS))
    args = parser.parse_args(argv)
    missing = missing_sources(SHARED)
    if missing:
        print(missing, file=sys.stderr)
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    results = [measure(name) for name in args.sets]
    out = RESULTS / "detect_unseen.json"
    out.write_text(json.dumps({"sets": results, "cores": os.cpu_count()}, indent=2))
    for r in results:
        print("\n".join(_row(r)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
