"""How often does the stand-in AI Camera name the CPU model's class, and where not, why not?

The AI Camera tests (tests/device/test_imx500_camera.py) run a small model trained on the synthetic
shapes through a fake IMX500 whose network is that model's own int8 graph, fed what the sensor
feeds: the frame scaled by the sensor (INTER_AREA, RGB at the input size), as p/128 - 1, its
softmax read as 8-bit levels. For --seeds trainings of that model (as the tests train it), over
every scene shown as a 640x480 camera frame, this script counts the frames where the sensor's label
equals the CPU model's (argmax, as evaluate and verify take it):
- as run: the CPU model as `run --accelerator cpu` runs it on the whole frame (edgepipe's shrink,
  p/127.5 - 1);
- on the sensor's pixels: the CPU model on the pixels the sensor's scaler made, p/127.5 - 1;
- on the sensor's input: the CPU model on those pixels as p/128 - 1, exactly what the sensor saw;
and, where they differ, the CPU model's own top-two margin (in 1/256 output levels) and whether the
sensor's 8-bit scores tie. Prints one line per training and the totals; writes
benchmarks/results/imx500_agreement.json.

With --model (a trained int8 .tflite or a bundle, e.g. one trained on flowers12) and --photos (a labelled
folder, e.g. its held-out photos), the same three counts for that model on those photos as 640x480
frames instead: how a real model, not the tests' weak one, fares through the sensor's input path.

    python benchmarks/bench_imx500_agreement.py [--seeds 10]
    python benchmarks/bench_imx500_agreement.py --model BUNDLE --photos DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path[:0] = [str(ROOT / "tests" / "convert"), str(ROOT / "tests" / "device")]

from convert_helpers import SMALL_SIZE, fitted, small_mobilenet_like  # noqa: E402  (the tests' own model)
from fake_imx500 import tflite_sensor_network  # noqa: E402  (the tests' stand-in sensor)

from edgepipe.convert.quantize import export_tflite  # noqa: E402
from edgepipe.device.model.classifier import open_classifier  # noqa: E402
from edgepipe.device.model.imx500_contract import SENSOR_INPUT  # noqa: E402
from edgepipe.device.model.preprocess import InputSpec, load_image, resize_to_input, to_model_input  # noqa: E402
from edgepipe.synthetic import SHAPES, write_dataset  # noqa: E402

FRAME = (640, 480)
COMPARISONS = ("as run", "on the sensor's pixels", "on the sensor's input")


def trained_model(data: Path, seed: int, out: Path) -> Path:
    """The tests' small shapes model (tests/device/imx500_helpers.trained_bundle), initial weights from `seed`."""
    import tf_keras as keras

    spec = InputSpec(height=SMALL_SIZE, width=SMALL_SIZE)
    keras.utils.set_random_seed(seed)
    model = fitted(small_mobilenet_like(), data, SMALL_SIZE, epochs=30)
    pixels = np.stack([resize_to_input(load_image(p), spec) for p in sorted(data.rglob("*.jpg"))])
    out.write_bytes(export_tflite(model, spec, pixels, "uint8"))
    return out


def measure(model: Path, labels: Path | None, frames: list[np.ndarray]) -> dict:
    """Per comparison: the frames that agree, and (frame, CPU top-two margin in levels, sensor tie) where not.
    `model`: a .tflite, or a bundle folder (its model.tflite)."""
    cpu = open_classifier(model, labels=labels, accelerator="cpu", threads=1)
    sensor = tflite_sensor_network(model / "model.tflite" if model.is_dir() else model)
    spec = cpu.input_spec
    as_the_sensor_feeds = replace(spec, mean=SENSOR_INPUT["mean"], std=SENSOR_INPUT["std"])
    differ: dict[str, list] = {name: [] for name in COMPARISONS}
    for index, frame in enumerate(frames):
        rgb = cv2.cvtColor(cv2.resize(frame, (spec.width, spec.height), interpolation=cv2.INTER_AREA),
                           cv2.COLOR_BGR2RGB)
        seen = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        scores = sensor(rgb)
        tie = bool((scores == scores.max()).sum() > 1)
        for name, tensor in zip(COMPARISONS, (cpu.preprocess(frame), cpu.preprocess(seen),
                                              to_model_input(seen, as_the_sensor_feeds))):
            own = cpu.invoke(tensor)
            if int(np.argmax(own)) != int(np.argmax(scores)):
                best, second = np.sort(own)[::-1][:2]
                differ[name].append((index, int(round(float(best - second) * 256)), tie))
    return {name: {"agree": len(frames) - len(d), "differ": d} for name, d in differ.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="trainings, seeds 0..N-1")
    parser.add_argument("--model", type=Path, help="a trained int8 .tflite or bundle instead of the tests' trainings")
    parser.add_argument("--labels", type=Path, help="a .tflite's labels.txt")
    parser.add_argument("--photos", type=Path, help="with --model: photos (any folder of JPEGs) shown as frames")
    args = parser.parse_args()
    if args.model:
        return real_model(args.model, args.labels, args.photos)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shapes"
        write_dataset(data, per_class=16, size=96, seed=3)  # tests/conftest.py's shapes_dataset
        frames = [cv2.resize(load_image(p), FRAME, interpolation=cv2.INTER_AREA) for p in sorted(data.rglob("*.jpg"))]
        labels = Path(tmp) / "labels.txt"
        labels.write_text("".join(f"{shape}\n" for shape in SHAPES))
        rows = []
        for seed in range(args.seeds):
            model = trained_model(data, seed, Path(tmp) / f"model{seed}.tflite")
            row = {"seed": seed, "sha256": hashlib.sha256(model.read_bytes()).hexdigest()[:12],
                   **measure(model, labels, frames)}
            rows.append(row)
            print(f"seed {seed}: " + "; ".join(f"{name} {row[name]['agree']}/{len(frames)} "
                                               f"(differ at margin/256, tie: {row[name]['differ']})"
                                               for name in COMPARISONS), flush=True)
    n = len(frames) * len(rows)
    totals = {name: sum(r[name]["agree"] for r in rows) for name in COMPARISONS}
    margins = {name: max((m for r in rows for _, m, _ in r[name]["differ"]), default=None) for name in COMPARISONS}
    for name in COMPARISONS:
        print(f"{name}: {totals[name]}/{n} = {totals[name] / n:.2%} agree "
              f"(per training {min(r[name]['agree'] for r in rows)}-{max(r[name]['agree'] for r in rows)} "
              f"of {len(frames)}); largest CPU top-two margin where they differ: {margins[name]}/256")
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    print(f"{len(rows)} trainings of {len(SHAPES)} classes in {time.perf_counter() - started:.0f} s, "
          f"load average {' '.join(load)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "imx500_agreement.json").write_text(json.dumps(
        {"frames": len(frames), "trainings": rows, "totals": totals, "largest_margin_differing": margins}, indent=2))
    return 0


def real_model(model: Path, labels: Path | None, photos: Path) -> int:
    frames = [cv2.resize(load_image(p), FRAME, interpolation=cv2.INTER_AREA) for p in sorted(photos.rglob("*.jpg"))]
    result = measure(model, labels, frames)
    for name in COMPARISONS:
        print(f"{name}: {result[name]['agree']}/{len(frames)} = {result[name]['agree'] / len(frames):.2%} agree; "
              f"differ at (frame, CPU top-two margin/256, sensor tie): {result[name]['differ']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "imx500_agreement_model.json").write_text(json.dumps(
        {"model": model.name, "photos": str(photos), "frames": len(frames), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
