"""Which interpolation shrinks frames for the model: accuracy and CPU cost of each.
(bench_run_accuracy.py measures accuracy through `edgepipe run` itself, JPEG-encoded frames included.)

Classifies a labelled held-out set (one sub-folder per class) through the
device runtime with every shrinking interpolation, the rest of preprocessing
being the shared definition (device/model/preprocess.py), and reports for each:
accuracy, top-1 agreement with INTER_AREA (the definition before issue 26), and
the CPU time of resizing a 640x480 frame to the model's input (median of 5
rounds of 200 resizes, one OpenCV thread). Each image is classified twice: as
it is on disk, and first scaled to 640x480 as a camera frame would be.

    python benchmarks/bench_interpolation.py BUNDLE HELDOUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.preprocess import IMAGE_SUFFIXES, load_image, resize_to_input

ROOT = Path(__file__).resolve().parent
# None: the shared definition (preprocess.shrink: INTER_AREA by a whole factor, then INTER_LINEAR).
INTERPOLATIONS = {"area": cv2.INTER_AREA, "area x k + linear": None, "linear": cv2.INTER_LINEAR,
                  "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC}


def resize_cpu_ms(frame: np.ndarray, spec, interpolation: int | None, repeats: int = 200, rounds: int = 5) -> float:
    out = np.empty((spec.height, spec.width, 3), np.uint8)
    times = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(repeats):
            resize_to_input(frame, spec, out=out, interpolation=interpolation)
        times.append((time.process_time() - started) * 1000 / repeats)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a bundle or .tflite classifier whose labels are the folder names")
    parser.add_argument("heldout", type=Path, help="labelled images: HELDOUT/<label>/*.jpg")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "interpolation.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    clf = open_classifier(args.model, threads=1)
    samples = [(load_image(p), clf.labels.index(p.parent.name)) for p in sorted(args.heldout.rglob("*"))
               if p.suffix.lower() in IMAGE_SUFFIXES and p.parent.name in clf.labels]
    frame = cv2.resize(samples[0][0], (640, 480), interpolation=cv2.INTER_AREA)
    results: dict[str, dict] = {}
    answers: dict[str, dict[str, list[int]]] = {}
    table = clf._pixel_table
    for name, interpolation in INTERPOLATIONS.items():
        answers[name] = {}
        for view in ("as is", "640x480"):
            picks = []
            for bgr, _ in samples:
                image = bgr if view == "as is" else cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA)
                tensor = cv2.LUT(resize_to_input(image, clf.input_spec, interpolation=interpolation), table)
                picks.append(int(np.argmax(clf.invoke(tensor[np.newaxis]))))
            answers[name][view] = picks
        results[name] = {
            "resize_cpu_ms_640x480": round(resize_cpu_ms(frame, clf.input_spec, interpolation), 4),
            **{f"accuracy ({view})": round(float(np.mean([p == y for p, (_, y) in zip(picks, samples)])), 4)
               for view, picks in answers[name].items()},
            **{f"agreement with area ({view})": round(float(np.mean(
                [a == b for a, b in zip(picks, answers["area"][view])])), 4) for view, picks in answers[name].items()},
        }
    load = [round(v, 2) for v in os.getloadavg()]
    print(f"{len(samples)} labelled images, {args.model}; load average {load}")
    for name, row in results.items():
        print(f"{name:<18} " + ", ".join(f"{k} {v}" for k, v in row.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "interpolation", "model": str(args.model), "images": len(samples),
                                    "load_average": load, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
