"""`edgepipe convert --imx500` for real: Sony's pinned converter and Model Compression Toolkit in their
cached venv (made on first use: about 7 minutes and 2.3 GB, then reused), a real packerOut.zip, the
converter's memory report, and the simulated-sensor accuracy that `evaluate --accelerator imx500`
reproduces. Needs Java (apt: default-jre-headless) and a Python 3.10/3.11; the venv lives in
$EDGEPIPE_IMX500_VENVS or ~/.cache/edgepipe/imx500-venv, never in the test's private cache."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from edgepipe.convert.imx500_toolchain import CACHE_ENV, find_python
from edgepipe.core.errors import UserError
from edgepipe.device.model.bundle import load_bundle, sha256_file
from edgepipe.device.model.imx500_contract import imx500_block

pytestmark = pytest.mark.e2e
USER_VENVS = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgepipe" / "imx500-venv")


def _toolchain_missing() -> str | None:
    if shutil.which("java") is None:
        return "no Java runtime (apt-get install default-jre-headless)"
    try:
        find_python()
    except UserError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def imx500_bundle(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    missing = _toolchain_missing()
    if missing:
        pytest.fail(f"the IMX500 e2e test needs {missing}")
    from edgepipe.cli import main

    out = tmp_path_factory.mktemp("imx500") / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(USER_VENVS))
        import contextlib
        import io

        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            code = main(["convert", str(small_run), "--out", str(out), "--method", "ptq", "--imx500", "--json"])
    assert code == 0
    return out, json.loads(stdout.getvalue())


def test_the_bundle_carries_a_packer_zip_that_fits_the_sensor_listed_and_hashed(imx500_bundle):
    root, summary = imx500_bundle
    bundle = load_bundle(root, verify=True)
    block = imx500_block(bundle.manifest, "bundle.json")
    package = root / block.package
    assert block.package == "imx500/packerOut.zip" and zipfile.is_zipfile(package)
    assert bundle.manifest["files"]["imx500/packerOut.zip"] == sha256_file(package) == block.package_sha256
    assert "imx500/quantized.keras" in bundle.manifest["files"]
    memory = bundle.manifest["imx500"]["memory"]
    assert 0 < memory["used_bytes"] < memory["available_bytes"] and memory["fits"]
    assert 8_000_000 < memory["available_bytes"] <= 8 * 1024 * 1024  # the sensor's 8 MiB, as the converter counts it
    contract = bundle.manifest["imx500"]["input"]
    assert (contract["mean"], contract["std"], contract["dtype"]) == (128.0, 128.0, "int8")
    versions = bundle.manifest["imx500"]["toolchain"]
    assert versions["imx500-converter"] == "3.19.2" and versions["model-compression-toolkit"] == "2.5.1"
    assert versions["tensorflow"].startswith("2.15.")


def test_simulated_sensor_accuracy_is_measured_and_written_to_manifest_card_and_summary(imx500_bundle):
    root, summary = imx500_bundle
    manifest = json.loads((root / "bundle.json").read_text())
    accuracy = manifest["imx500"]["accuracy"]
    assert accuracy["n"] == manifest["accuracy"]["n"] > 0
    # the small model separates its four shapes: the sensor's quantized model keeps most of that
    assert accuracy["simulated_sensor"] >= accuracy["float"] - 0.15
    assert summary["accuracy"]["imx500"] == accuracy["simulated_sensor"]
    golden = manifest["golden"]
    assert golden["min_agreement"]["imx500"] == 0.95  # what verify --accelerator imx500 asks of the sensor
    assert all(len(entry["expected_imx500"]) == len(entry["expected"]) for entry in golden["images"])
    card = (root / "MODEL_CARD.md").read_text()
    assert "## Raspberry Pi AI Camera (IMX500)" in card and f"{accuracy['simulated_sensor'] * 100:.1f}%" in card


def test_evaluate_accelerator_imx500_reproduces_the_manifest_accuracy_on_the_same_images(imx500_bundle, small_run,
                                                                                           cli, monkeypatch):
    root, _ = imx500_bundle
    monkeypatch.setenv(CACHE_ENV, str(USER_VENVS))
    code, out, err = cli("evaluate", root, "--split", "val", "--run", small_run, "--accelerator", "imx500", "--json")
    assert code == 0, err
    result = json.loads(out)
    manifest = json.loads((root / "bundle.json").read_text())
    assert result["engine"] == "imx500:simulated-sensor"
    assert result["accuracy"] == pytest.approx(manifest["imx500"]["accuracy"]["simulated_sensor"], abs=1e-9)


def test_evaluate_accelerator_imx500_refuses_a_bundle_without_an_imx500_model(tiny_bundle, shapes_dataset, cli):
    code, _, err = cli("evaluate", tiny_bundle, shapes_dataset, "--accelerator", "imx500")
    assert code == 1 and "has no IMX500 model" in err and "--imx500" in err
