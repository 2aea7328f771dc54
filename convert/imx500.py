"""The run's model for the Raspberry Pi AI Camera, whose Sony IMX500 sensor runs the network itself.

Sony's flow: Model Compression Toolkit (MCT) quantizes for the IMX500,
`imxconv-tf` turns that into `packerOut.zip`, and on the Pi `imx500-package`
(Raspberry Pi's imx500-tools) makes the `.rpk` that Picamera2 loads. The first
two steps run here, in the Sony venv (imx500_toolchain), through
imx500_in_venv.py: this module hands it the architecture and weights (a
tf_keras 2.21 model file does not load in Keras 2.15), the same representative
images as PTQ and the held-out images, and reads back the package, the
converter's memory report and the held-out scores as the sensor would give
them (input p/128 - 1, output uint8).

The bundle gets imx500/packerOut.zip (for the Pi) and imx500/quantized.keras
(the MCT model: what `evaluate --accelerator imx500` simulates), both listed
and hashed in bundle.json under "imx500" with the input contract, the memory
use and the simulated-sensor accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgepipe.core.errors import UserError
from edgepipe.core.progress import say
from edgepipe.core.tfenv import tensorflow_verbose
from edgepipe.device.model.imx500_contract import (IMX500_DIR, PACKAGE, QUANTIZED_MODEL, SENSOR_INPUT, levels_to_scores)

from .verify import HeldOut
from .imx500_toolchain import IN_VENV_SCRIPT, Toolchain, ensure_toolchain

CHILD_TIMEOUT_S = 3600.0  # MCT + imxconv-tf on MobileNetV2 took 636 s on 2 busy cores
MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryUse:
    """What the network needs of the sensor's memory, from the converter's report."""

    used_bytes: int
    available_bytes: int

    @property
    def fits(self) -> bool:
        return self.used_bytes <= self.available_bytes

    def to_json(self) -> dict[str, Any]:
        return {"used_bytes": self.used_bytes, "available_bytes": self.available_bytes, "fits": self.fits}

    def text(self) -> str:
        return f"{self.used_bytes / MIB:.2f} MiB of the sensor's {self.available_bytes / MIB:.2f} MiB"


@dataclass
class Imx500Conversion:
    package: Path
    quantized_model: Path
    memory: MemoryUse
    scores: np.ndarray  # held-out images as the sensor scores them (uint8 levels / 255)
    float_sensor_scores: np.ndarray  # the float model on the sensor's input, p/128 - 1
    seconds: dict[str, float]
    versions: dict[str, str]


def child_environment() -> dict[str, str]:
    """This environment without what edgepipe set for its own TensorFlow: TF_USE_LEGACY_KERAS would make
    TensorFlow 2.15 look for tf_keras, which the Sony venv does not have."""
    return {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}


def _run_job(toolchain: Toolchain, job_dir: Path, job: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """imx500_in_venv.py on a job folder; its progress lines pass through to stderr."""
    for name, array in arrays.items():
        np.save(job_dir / f"{name}.npy", array)
    (job_dir / "job.json").write_text(json.dumps({**job, "verbose": tensorflow_verbose()}), encoding="utf-8")
    try:  # -I: the script's folder (convert/, whose inspect.py would shadow the standard library's) is not on sys.path
        proc = subprocess.run([str(toolchain.python), "-I", str(IN_VENV_SCRIPT), str(job_dir)],
                              stdin=subprocess.DEVNULL, env=child_environment(), timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"the IMX500 {job['kind']} step took over {CHILD_TIMEOUT_S:.0f} s and was stopped") from None
    except OSError as exc:
        raise UserError(f"cannot run the Sony venv's python {toolchain.python} ({exc.strerror}); delete "
                        f"{toolchain.root} and convert again to remake it") from None
    result_path = job_dir / "result.json"
    if proc.returncode != 0 or not result_path.is_file():
        log = job_dir / "child.log"
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.is_file() else []
        raise UserError(f"the IMX500 {job['kind']} step failed in the Sony venv {toolchain.root}: "
                        f"{lines[-1] if lines else f'exit {proc.returncode}'} (rerun with --verbose for its log)")
    return json.loads(result_path.read_text(encoding="utf-8"))


def parse_memory(report: dict[str, Any]) -> MemoryUse:
    """The numbers from the converter's memory report (see imx500_in_venv.memory_report), checked."""
    if "error" in report:
        raise UserError(f"cannot tell whether the model fits the IMX500: {report['error']}")
    used, available = report.get("used_bytes"), report.get("available_bytes")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (used, available)):
        raise UserError(f"the IMX500 converter's memory report has no usable numbers: {used!r}, {available!r}")
    memory = MemoryUse(used, available)
    if memory.fits != bool(report.get("fits_in_chip")):
        raise UserError(f"the IMX500 converter's memory report contradicts itself: {memory.text()} but "
                        f"'Fit In Chip' is {report.get('fits_in_chip')}")
    return memory


def convert_for_imx500(model: Any, representative: np.ndarray, held_out: np.ndarray, scratch: Path,
                       python: str | None = None) -> Imx500Conversion:
    """MCT PTQ + imxconv-tf on `model` in the Sony venv; refuses a network that does not fit the sensor.

    `representative` and `held_out` are uint8 RGB images at the model's input size.
    """
    toolchain = ensure_toolchain(python)
    job_dir = scratch / "imx500-job"
    job_dir.mkdir(parents=True)
    (job_dir / "model.json").write_text(model.to_json(), encoding="utf-8")
    model.save_weights(str(job_dir / "weights.h5"))
    result = _run_job(toolchain, job_dir, {"kind": "quantize"},
                      {"representative": representative, "evaluate": held_out})
    if not result["ok"]:
        raise UserError(f"IMX500 conversion failed: {result['error']}")
    memory = parse_memory(result["memory"])
    if not memory.fits:
        raise UserError(f"the model does not fit the IMX500: it needs {memory.text()} (imxconv-tf's memory "
                        "report); train a smaller one (e.g. --alpha 0.5 or --input-size 160) and convert again")
    say(f"IMX500: packerOut.zip written, {memory.text()}")
    return Imx500Conversion(
        package=Path(result["package"]), quantized_model=Path(result["quantized_model"]), memory=memory,
        scores=levels_to_scores(np.asarray(result["levels"], np.uint8)),
        float_sensor_scores=np.asarray(result["float_scores"], np.float32),
        seconds=result["seconds"], versions=result["versions"])


def simulate_sensor(quantized_model: Path, pixels: np.ndarray, python: str | None = None) -> np.ndarray:
    """Scores of the MCT model for uint8 RGB images as the sensor would give them (evaluate --accelerator imx500)."""
    toolchain = ensure_toolchain(python)
    with tempfile.TemporaryDirectory(prefix="edgepipe-imx500-") as tmp:
        result = _run_job(toolchain, Path(tmp), {"kind": "evaluate", "quantized_model": str(quantized_model.resolve())},
                          {"evaluate": pixels})
    return levels_to_scores(np.asarray(result["levels"], np.uint8))


def manifest_block(conversion: Imx500Conversion, accuracy: float, float_sensor_accuracy: float,
                   float_accuracy: float, n: int) -> dict[str, Any]:
    """bundle.json's "imx500": the files, the input contract, the memory use and the measured accuracy."""
    return {
        "package": f"{IMX500_DIR}/{PACKAGE}",
        "quantized_model": f"{IMX500_DIR}/{QUANTIZED_MODEL}",
        "input": SENSOR_INPUT,
        "output": {"dtype": "uint8", "scale": 1 / 255, "zero_point": 0, "activation": "softmax"},
        "memory": conversion.memory.to_json(),
        "accuracy": {"simulated_sensor": accuracy, "float_sensor_input": float_sensor_accuracy,
                     "float": float_accuracy, "n": n,
                     "how": "the MCT model in Sony's venv, input p/128 - 1, softmax read as uint8"},
        "toolchain": conversion.versions,
        "seconds": conversion.seconds,
        "on_device": "imx500-package -i packerOut.zip -o DIR (imx500-tools, on the Pi) makes network.rpk",
    }



@dataclass
class Imx500Files:
    """The IMX500 model measured and ready to go into a bundle."""

    conversion: Imx500Conversion
    accuracy: float
    block: dict[str, Any]

    def copy_into(self, root: Path) -> None:
        folder = root / IMX500_DIR
        folder.mkdir()
        shutil.copy(self.conversion.package, folder / PACKAGE)
        shutil.copy(self.conversion.quantized_model, folder / QUANTIZED_MODEL)


def top1_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores, axis=1) == labels)) if len(labels) else float("nan")


def imx500_for_bundle(model: Any, representative: np.ndarray, held_out: HeldOut, float_accuracy: float,
                      scratch: Path, python: str | None = None) -> Imx500Files:
    """Convert, score the held-out split as the sensor would, and describe it for bundle.json."""
    conversion = convert_for_imx500(model, representative, held_out.pixels, scratch, python)
    accuracy = top1_accuracy(conversion.scores, held_out.labels)
    float_sensor = top1_accuracy(conversion.float_sensor_scores, held_out.labels)
    say(f"IMX500: simulated-sensor accuracy {accuracy:.2%} on {len(held_out.labels)} held-out images "
        f"(float {float_accuracy:.2%}; float on the sensor's p/128 - 1 input {float_sensor:.2%})")
    block = manifest_block(conversion, accuracy, float_sensor, float_accuracy, len(held_out.labels))
    return Imx500Files(conversion, accuracy, block)
