"""The device installs without TensorFlow: prove that edgepipe.device and the
classify/run/bench/verify paths import and run with TensorFlow made unimportable, and
that the backends are tried lightest first. (tests/test_layering.py checks
that no device module imports TensorFlow or another stage.)"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import load_image
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.backends import find_backend

HEAVY = ("tensorflow", "tf_keras", "keras", "tensorflow_model_optimization")

BLOCKER = f"""
import os
import sys

class BlockTensorFlow:
    '''Makes TensorFlow and friends unimportable, as on a Pi with edgepipe[device] only.'''

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY!r}:
            with open(os.environ["EDGEPIPE_TEST_IMPORT_ATTEMPTS"], "a") as log:
                log.write(name + "\\n")
            raise ImportError(f"{{name}} is not installed on this device (blocked by the test)")
        return None

sys.meta_path.insert(0, BlockTensorFlow())
"""

SCRIPT = """
import importlib, json, pkgutil, sys
import edgepipe.device
for module in pkgutil.walk_packages(edgepipe.device.__path__, "edgepipe.device."):
    importlib.import_module(module.name)
from edgepipe.cli import main
bundle, image, video, golden = sys.argv[1:5]
codes = [
    main(["classify", bundle, image, "--json"]),
    main(["run", bundle, "--source", video, "--json", "--max-frames", "3"]),
    main(["bench", bundle, "--runs", "3", "--warmup", "1", "--json"]),
    main(["verify", golden, "--json"]),
]
try:
    import tensorflow
except ImportError:
    blocked = True
else:
    blocked = False
heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print("RESULT " + json.dumps({"codes": codes, "blocked": blocked, "heavy": heavy}))
""" % (HEAVY,)


def test_device_classify_run_bench_and_verify_work_with_tensorflow_unimportable(tiny_bundle, golden_bundle, image_folder,
                                                                                video, tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    attempts = tmp_path / "attempts.txt"
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "EDGEPIPE_TEST_IMPORT_ATTEMPTS": str(attempts)}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_bundle), str(image_folder["good"][0]), str(video.path),
         str(golden_bundle)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr
    result = json.loads(lines[0][len("RESULT "):])
    assert result == {"codes": [0, 0, 0, 0], "blocked": True, "heavy": []}, proc.stderr
    assert attempts.read_text().splitlines() == ["tensorflow"]  # only the script's own check tried


def _block(monkeypatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now raises ImportError


def test_tensorflow_lite_is_the_last_resort_backend(monkeypatch, tiny_int8_model, image_folder):
    lite = open_classifier(tiny_int8_model["model"], threads=1)
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime", "tflite_runtime.interpreter")
    assert find_backend().name == "tensorflow.lite"
    heavy = open_classifier(tiny_int8_model["model"], threads=1)
    assert heavy.backend == "tensorflow.lite"
    image = load_image(image_folder["good"][0])
    np.testing.assert_array_equal(heavy.invoke(heavy.preprocess(image)), lite.invoke(lite.preprocess(image)))


def test_no_runtime_at_all_says_what_to_install(monkeypatch):
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
           "tflite_runtime.interpreter", "tensorflow")
    with pytest.raises(UserError, match=r"no TFLite runtime is installed; install one with: pip install 'edgepipe\[device\]'"):
        find_backend()
