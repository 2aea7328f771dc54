"""The IMX500 conversion's steps that need Sony's toolchain, run by the Sony venv's own python.

edgepipe's convert (TensorFlow 2.21, tf_keras) cannot import Model Compression
Toolkit or the IMX500 converter: they need TensorFlow < 2.16, numpy < 2 and
Python < 3.12. So this file is run as a script by the python of the venv
`imx500_toolchain` made (`python imx500_in_venv.py JOB_DIR`) and imports only
the standard library and that venv's packages, never edgepipe (which is not
installed there). tests/test_layering.py checks that.

The job folder (written by edgepipe.convert.imx500) holds:
    job.json           what to do: "quantize" (model -> MCT -> imxconv-tf) or "evaluate"
    model.json         the architecture (tf_keras `to_json`), rebuilt here in Keras 2.15:
    weights.h5         its weights (a tf_keras 2.21 .keras file does not load in Keras 2.15)
    representative.npy uint8 RGB images (N, H, W, 3): MCT's calibration set
    evaluate.npy       uint8 RGB images to score as the sensor would
The answer is result.json in the same folder; progress lines go to stderr.

The sensor turns a pixel p into the int8 input p - 128 with scale 1/128, so the
model sees p/128 - 1 (not p/127.5 - 1): calibration and evaluation feed that.
The output is read as the sensor hands it over: the softmax quantized to uint8.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SENSOR_OFFSET = 128.0  # int8 input = pixel - 128 ...
SENSOR_SCALE = 1.0 / 128.0  # ... with scale 1/128: the model sees p/128 - 1
OUTPUT_LEVELS = 255  # the softmax leaves the sensor as uint8
BATCH = 16
QUANTIZED = "quantized.keras"
CONVERTED = "converted"
PACKAGE = "packerOut.zip"


PROGRESS = sys.stderr


def say(message: str) -> None:
    print(message, file=PROGRESS, flush=True)


def quiet(job_dir: Path) -> None:
    """TensorFlow's, MCT's and the converter's chatter (C++ logs, progress bars) into job_dir/child.log;
    our progress lines keep the real stderr. A failure's traceback ends that log: the caller reads it."""
    global PROGRESS
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    PROGRESS = os.fdopen(os.dup(2), "w")
    log = os.open(job_dir / "child.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


def sensor_input(pixels):
    """What the network sees on the sensor for uint8 RGB pixels: p/128 - 1, as float32."""
    import numpy as np

    return (pixels.astype(np.float32) - SENSOR_OFFSET) * np.float32(SENSOR_SCALE)


NEWER_KERAS_KEYS = {"InputLayer": ("optional",)}  # config keys tf_keras 2.21 writes that Keras 2.15 refuses


def older_keras_config(config: dict) -> dict:
    """The architecture as Keras 2.15 reads it: keys it does not know taken out of each layer's config."""
    for layer in config["config"]["layers"]:
        for key in NEWER_KERAS_KEYS.get(layer["class_name"], ()):
            layer["config"].pop(key, None)
    return config


def rebuild(job_dir: Path):
    """The float model in this venv's Keras, from the architecture and the weights."""
    import tensorflow as tf

    config = older_keras_config(json.loads((job_dir / "model.json").read_text(encoding="utf-8")))
    model = tf.keras.models.model_from_json(json.dumps(config))
    model.load_weights(str(job_dir / "weights.h5"))
    return model


def quantize(model, representative):
    """MCT post-training quantization for the IMX500 on the sensor's input."""
    import model_compression_toolkit as mct

    images = sensor_input(representative)

    def batches():
        for start in range(0, len(images), BATCH):
            yield [images[start:start + BATCH]]

    tpc = mct.get_target_platform_capabilities("tensorflow", "imx500", target_platform_version="v1")
    quantized, _ = mct.ptq.keras_post_training_quantization(
        model, batches, target_platform_capabilities=tpc)
    return quantized


def convert(quantized_path: Path, out: Path, verbose: bool) -> dict:
    """imxconv-tf on the exported model (its output kept in imxconv.log) and its memory report."""
    converter = Path(sys.executable).with_name("imxconv-tf")
    proc = subprocess.run([str(converter), "-i", str(quantized_path), "-o", str(out), "--overwrite-output",
                           "--report-size-unit", "B"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (out.parent / "imxconv.log").write_text(proc.stdout, encoding="utf-8")
    if verbose:
        sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        tail = [line for line in proc.stdout.splitlines() if line.strip()][-5:]
        return {"ok": False, "error": f"imxconv-tf exited {proc.returncode}: " + " | ".join(tail)}
    package = out / PACKAGE
    if not package.is_file():
        return {"ok": False, "error": f"imxconv-tf wrote no {PACKAGE} in {out}"}
    return {"ok": True, "package": str(package), "memory": memory_report(out)}


SIZE = re.compile(r"^\s*([\d.]+)\s*(B|KB|MB|GB)\s*$", re.IGNORECASE)
UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def size_bytes(text: str) -> int:
    """"786.22KB" -> bytes (the converter's units are binary: its 8.00MB is the sensor's 8 MiB)."""
    match = SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return round(float(match.group(1)) * UNITS[match.group(2).upper()])


def memory_report(out: Path) -> dict:
    """What the network needs of the sensor's memory, from the converter's *_MemoryReport.json."""
    reports = sorted(out.glob("*_MemoryReport.json"))
    if not reports:
        return {"error": f"imxconv-tf wrote no memory report in {out}"}
    report = json.loads(reports[0].read_text(encoding="utf-8")).get("Memory Report", {})
    try:
        return {"used_bytes": size_bytes(report["Memory Usage"]),
                "available_bytes": size_bytes(report["Total Memory Available On Chip"]),
                "fits_in_chip": bool(report.get("Fit In Chip")), "report": report}
    except (KeyError, ValueError) as exc:
        return {"error": f"{reports[0].name} has no usable memory numbers ({exc})", "report": report}


def predict(model, pixels):
    """The model's softmax for uint8 RGB images fed as the sensor feeds them (p/128 - 1), in batches."""
    import numpy as np

    out = [np.asarray(model(sensor_input(pixels[s:s + BATCH]), training=False)) for s in range(0, len(pixels), BATCH)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def score(model, pixels) -> list[list[int]]:
    """uint8 output levels for each image, as the sensor would report them."""
    import numpy as np

    return np.round(np.clip(predict(model, pixels), 0.0, 1.0) * OUTPUT_LEVELS).astype(np.uint8).tolist()


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("imx500-converter", "model-compression-toolkit", "tensorflow", "numpy")}


def quantize_job(job_dir: Path, job: dict) -> dict:
    import numpy as np

    verbose = bool(job.get("verbose"))
    started = time.perf_counter()
    model = rebuild(job_dir)
    say(f"IMX500: rebuilt the model in this venv's Keras ({time.perf_counter() - started:.0f} s); "
        "MCT post-training quantization")
    started = time.perf_counter()
    quantized = quantize(model, np.load(job_dir / "representative.npy"))
    import model_compression_toolkit as mct

    quantized_path = job_dir / QUANTIZED
    mct.exporter.keras_export_model(model=quantized, save_model_path=str(quantized_path))
    quantize_s = time.perf_counter() - started
    say(f"IMX500: quantized in {quantize_s:.0f} s; scoring the held-out images as the sensor would")
    evaluated = score(quantized, np.load(job_dir / "evaluate.npy"))
    float_scores = predict(model, np.load(job_dir / "evaluate.npy")).round(6).tolist()  # the input change alone
    say("IMX500: converting with imxconv-tf (a minute or more)")
    started = time.perf_counter()
    converted = convert(quantized_path, job_dir / CONVERTED, verbose)
    return {**converted, "quantized_model": str(quantized_path), "levels": evaluated, "float_scores": float_scores,
            "seconds": {"quantize": round(quantize_s, 1), "convert": round(time.perf_counter() - started, 1)},
            "versions": versions()}


def evaluate_job(job_dir: Path, job: dict) -> dict:
    import mct_quantizers
    import numpy as np

    model = mct_quantizers.keras_load_quantized_model(job["quantized_model"])
    return {"ok": True, "levels": score(model, np.load(job_dir / "evaluate.npy")), "versions": versions()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python imx500_in_venv.py JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(argv[0])
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    if not job.get("verbose"):
        quiet(job_dir)
    kind = job.get("kind")
    if kind == "quantize":
        result = quantize_job(job_dir, job)
    elif kind == "evaluate":
        result = evaluate_job(job_dir, job)
    else:
        print(f"unknown job kind {kind!r}", file=sys.stderr)
        return 2
    (job_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
