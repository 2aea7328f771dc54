"""A libedgetpu that crashes, hangs or answers wrong cannot take edgepipe down.

No Edge TPU here: stand-in libedgetpu.so.1 libraries are compiled by the test
with gcc (fake_libedgetpu.c) and reached through LD_LIBRARY_PATH, the dynamic
loader's own search path, exactly as the real library would be; no Python is
patched. Every command runs as a real `python -m edgepipe` process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bundle_helpers import rehash

# A probe that works must never hit its timeout, however busy the machine (a hang is what the timeout is
# for); the hanging library gets a short one.
PROBE_TIMEOUT_S = "120"
HANG_TIMEOUT_S = "3"


@pytest.fixture
def edgepipe(tmp_path: Path, fake_libedgetpu: dict[str, Path]):
    """Run `python -m edgepipe ARGS` with the stand-in library named `lib` first on LD_LIBRARY_PATH."""
    log = tmp_path / "creates.log"

    def run(lib: str, *args: str) -> subprocess.CompletedProcess:
        timeout = HANG_TIMEOUT_S if lib == "hanging" else PROBE_TIMEOUT_S
        env = dict(os.environ, LD_LIBRARY_PATH=str(fake_libedgetpu[lib]), XDG_CACHE_HOME=str(tmp_path / "cache"),
                   EDGEPIPE_EDGETPU_PROBE_TIMEOUT=timeout, FAKE_EDGETPU_LOG=str(log))
        return subprocess.run([sys.executable, "-m", "edgepipe", *args], capture_output=True, text=True, env=env,
                              timeout=600)

    run.creates = lambda: len(log.read_text().splitlines()) if log.exists() else 0
    run.cache = tmp_path / "cache" / "edgepipe" / "edgetpu-probe.json"
    return run


def classify(edgepipe, lib: str, bundle: Path, image: Path, accelerator: str) -> subprocess.CompletedProcess:
    return edgepipe(lib, "classify", str(bundle), str(image), "--json", "--accelerator", accelerator)


def test_segfaulting_delegate_falls_back_to_cpu_under_auto_and_is_cached(edgepipe, golden_edgetpu_bundle, shapes_dataset):
    image = next(shapes_dataset.rglob("*.jpg"))
    first = classify(edgepipe, "crashing", golden_edgetpu_bundle, image, "auto")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["top"]
    [line] = [l for l in first.stderr.splitlines() if "Edge TPU not usable" in l]
    assert "model.tflite on cpu (auto: Edge TPU not usable, using the CPU model: the Edge TPU delegate crashed " \
           "the probe process with SIGSEGV (libedgetpu fake crashing libedgetpu, RuntimeVersion(14), ai_edge_litert " in line
    assert "the known fix is a libedgetpu built for this runtime's TensorFlow version" in line
    assert edgepipe.creates() == 1  # the probe child only: this process never loaded the delegate
    entry = next(iter(json.loads(edgepipe.cache.read_text()).values()))
    assert entry["status"] == "crash" and entry["libedgetpu"] == "fake crashing libedgetpu, RuntimeVersion(14)"
    again = classify(edgepipe, "crashing", golden_edgetpu_bundle, image, "auto")
    assert again.returncode == 0 and "cached probe result" in again.stderr and "SIGSEGV" in again.stderr
    assert edgepipe.creates() == 1  # a restart does not probe (nor crash) again


def test_segfaulting_delegate_with_explicit_edgetpu_exits_1_with_one_line(edgepipe, golden_edgetpu_bundle, shapes_dataset):
    result = classify(edgepipe, "crashing", golden_edgetpu_bundle, next(shapes_dataset.rglob("*.jpg")), "edgetpu")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("edgepipe classify: error: cannot use the Edge TPU: the Edge TPU delegate crashed "
                                    "the probe process with SIGSEGV")


def test_hanging_delegate_is_killed_after_the_timeout_and_auto_falls_back(edgepipe, golden_edgetpu_bundle, shapes_dataset):
    image = next(shapes_dataset.rglob("*.jpg"))
    result = classify(edgepipe, "hanging", golden_edgetpu_bundle, image, "auto")
    assert result.returncode == 0, result.stderr
    assert "using the CPU model: the Edge TPU probe hung for 3 s and was killed (libedgetpu fake hanging" in result.stderr
    explicit = classify(edgepipe, "hanging", golden_edgetpu_bundle, image, "edgetpu")
    assert explicit.returncode == 1 and "hung for 3 s" in explicit.stderr


def test_working_delegate_passes_the_probe_and_runs_on_the_edge_tpu_path(edgepipe, golden_edgetpu_bundle, shapes_dataset):
    image = next(shapes_dataset.rglob("*.jpg"))
    cpu = classify(edgepipe, "working", golden_edgetpu_bundle, image, "cpu")
    tpu = classify(edgepipe, "working", golden_edgetpu_bundle, image, "auto")
    assert tpu.returncode == 0, tpu.stderr
    assert "model_edgetpu.tflite on edgetpu (auto: Edge TPU found)" in tpu.stderr
    assert json.loads(tpu.stdout)["top"] == json.loads(cpu.stdout)["top"]
    assert edgepipe.creates() == 2  # the probe child, then this process
    entry = next(iter(json.loads(edgepipe.cache.read_text()).values()))
    assert entry["status"] == "ok" and entry["comparison"]["top1_agreement"] == 1.0
    assert classify(edgepipe, "working", golden_edgetpu_bundle, image, "edgetpu").returncode == 0
    assert edgepipe.creates() == 3  # cached: no second probe


@pytest.fixture
def wrong_answer_bundle(tmp_path: Path, golden_edgetpu_bundle: Path, constant_answer_model: Path) -> Path:
    """An Edge TPU model that gives one class for every image (its answers differ from the golden set's)."""
    root = Path(shutil.copytree(golden_edgetpu_bundle, tmp_path / "wrong"))
    (root / "model_edgetpu.tflite").write_bytes(constant_answer_model.read_bytes() + b"edgetpu-custom-op")
    rehash(root)
    return root


def test_wrong_answers_on_the_golden_set_are_caught_by_the_probe(edgepipe, wrong_answer_bundle, shapes_dataset):
    image = next(shapes_dataset.rglob("*.jpg"))
    auto = classify(edgepipe, "working", wrong_answer_bundle, image, "auto")
    assert auto.returncode == 0, auto.stderr
    assert "using the CPU model: the Edge TPU model disagrees with the expected answers on the golden set: " \
           "top-1 agreement" in auto.stderr
    verify = edgepipe("working", "verify", str(wrong_answer_bundle), "--json")
    assert verify.returncode == 1
    report = json.loads(verify.stdout)
    checks = {c["accelerator"]: c for c in report["checks"]}
    assert checks["cpu"]["status"] == "passed" and checks["edgetpu"]["status"] == "failed"
    assert checks["edgetpu"]["comparison"]["agreed"] <= 4  # the rarest expected class: at most half of 8
    assert "edgetpu model the Edge TPU model disagrees" in verify.stderr


def test_verify_reports_each_accelerator_and_exit_codes(edgepipe, golden_edgetpu_bundle):
    ok = edgepipe("working", "verify", str(golden_edgetpu_bundle), "--json")
    assert ok.returncode == 0, ok.stderr
    checks = {c["accelerator"]: c for c in json.loads(ok.stdout)["checks"]}
    assert checks["edgetpu"]["status"] == "passed" and checks["edgetpu"]["min_agreement"] == 0.95
    assert checks["edgetpu"]["comparison"]["max_abs_diff"] == 0.0  # the stand-in delegate runs the CPU kernels
    crash = edgepipe("crashing", "verify", str(golden_edgetpu_bundle), "--accelerator", "edgetpu")
    assert crash.returncode == 1
    assert "edgetpu  FAILED  the Edge TPU delegate crashed the probe process with SIGSEGV" in crash.stdout


def test_verify_all_skips_the_edge_tpu_where_there_is_none(tmp_path, golden_edgetpu_bundle):
    env = dict(os.environ, LD_LIBRARY_PATH=str(tmp_path), XDG_CACHE_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "edgepipe", "verify", str(golden_edgetpu_bundle)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "edgetpu  SKIPPED libedgetpu.so.1 is not installed" in result.stdout
    explicit = subprocess.run([sys.executable, "-m", "edgepipe", "verify", str(golden_edgetpu_bundle), "--accelerator",
                               "edgetpu"], capture_output=True, text=True, env=env, timeout=120)
    assert explicit.returncode == 1 and "libedgetpu.so.1 is not installed" in explicit.stdout


def test_bench_on_a_crashing_edge_tpu_stack_reports_the_probe_not_a_missing_runtime(edgepipe, golden_edgetpu_bundle):
    result = edgepipe("crashing", "bench", str(golden_edgetpu_bundle), "--accelerator", "edgetpu", "--runs", "3",
                      "--warmup", "1")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot use the Edge TPU: the Edge TPU delegate crashed the probe process with SIGSEGV" in last
    assert "not installed" not in last
