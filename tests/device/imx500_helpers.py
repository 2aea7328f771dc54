"""Bundles with an IMX500 model and a stand-in `imx500-package`, for the AI Camera tests (no Sony or
Raspberry Pi software exists here: the packerOut.zip is a real zip holding a placeholder network)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

from bundle_helpers import rehash

STAND_IN_PACKAGER = """
import hashlib, pathlib, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
package = pathlib.Path(args["-i"]).read_bytes()
calls = pathlib.Path(__file__).with_name("calls.log")
calls.write_text(calls.read_text() + hashlib.sha256(package).hexdigest() + "\\n" if calls.exists() else
                 hashlib.sha256(package).hexdigest() + "\\n")
(pathlib.Path(args["-o"]) / "network.rpk").write_bytes(b"9464" + hashlib.sha256(package).digest())
"""


def with_imx500(bundle: Path, out: Path, network_name: str = "edgepipe") -> Path:
    """A copy of `bundle` with imx500/packerOut.zip and imx500/quantized.keras listed under "imx500"."""
    shutil.copytree(bundle, out)
    (out / "imx500").mkdir()
    with zipfile.ZipFile(out / "imx500" / "packerOut.zip", "w") as zf:
        zf.writestr("network.fpk", network_name)
    (out / "imx500" / "quantized.keras").write_bytes(b"placeholder for the MCT model")
    rehash(out, imx500={"package": "imx500/packerOut.zip", "quantized_model": "imx500/quantized.keras",
                        "accuracy": {"simulated_sensor": 0.9}})
    return out


def stand_in_packager(bin_dir: Path) -> Path:
    """An `imx500-package` that writes network.rpk from the package's hash and logs each call in calls.log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "imx500-package"
    script.write_text(f"#!{sys.executable}\n" + STAND_IN_PACKAGER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def packager_calls(bin_dir: Path) -> list[str]:
    log = bin_dir / "calls.log"
    return log.read_text().split() if log.exists() else []


def path_with(bin_dir: Path) -> str:
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def trained_bundle(shapes_dataset: Path, out: Path) -> Path:
    """A bundle around a small model really trained on the shapes (32x32, int8 TFLite as convert exports it),
    with a golden set of the CPU model's answers: scores that separate the classes, unlike a random model's."""
    import numpy as np
    import tf_keras as keras

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "convert"))
    from convert_helpers import SMALL_SIZE, fitted, small_mobilenet_like

    from edgepipe.convert.golden import select_golden, write_golden
    from edgepipe.convert.quantize import export_tflite
    from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, build_manifest
    from edgepipe.device.model.preprocess import InputSpec, load_image, resize_to_input
    from edgepipe.synthetic import SHAPES
    from edgepipe.train.device_eval import run_files

    spec = InputSpec(height=SMALL_SIZE, width=SMALL_SIZE)
    files = sorted(shapes_dataset.rglob("*.jpg"))
    keras.utils.set_random_seed(0)  # the initial weights too (fitted seeds only the training): one model, every run
    model = fitted(small_mobilenet_like(), shapes_dataset, SMALL_SIZE, epochs=30)
    pixels = np.stack([resize_to_input(load_image(p), spec) for p in files])
    out.mkdir(parents=True)
    (out / CPU_MODEL).write_bytes(export_tflite(model, spec, pixels, "uint8"))
    (out / LABELS).write_text("".join(f"{s}\n" for s in SHAPES))
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / CPU_MODEL))
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    manifest = build_manifest(out, labels=list(SHAPES), input_spec=spec.with_tensor("uint8", *inp["quantization"]),
                              output={"dtype": "uint8", "scale": outp["quantization"][0],
                                      "zero_point": outp["quantization"][1], "num_classes": len(SHAPES),
                                      "activation": "softmax"},
                              models={"cpu": CPU_MODEL})
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    labels = np.array([SHAPES.index(p.parent.name) for p in files])
    scores = run_files(out, files).scores
    block = write_golden(out, files, labels, scores, select_golden(labels, 8, seed=0),
                         {"model": CPU_MODEL, "backend": "ai_edge_litert", "backend_version": "test"})
    rehash(out, golden=block)
    return out
