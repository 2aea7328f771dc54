"""README's install claims, exercised as a user on a Pi would meet them: the sdist and the
wheel build and pass `twine check`, carry the one version number, and a clean venv with
nothing but `edgepipe[device]` from that wheel classifies an image exactly as the checkout
does, with no TensorFlow installed."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from edgepipe import __version__
from edgepipe.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str | Path) -> str:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True)
    assert proc.returncode == 0, f"{argv[:3]}: {proc.stderr[-2000:]}"
    return proc.stdout


def _assert_nothing_of_sonys(wheel: Path) -> None:
    """Sony's IMX500 packages forbid redistribution: not in the wheel, not among its requirements
    (convert --imx500 installs them into a venv of their own, at the user's request)."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "edgepipe/convert/imx500_in_venv.py" in names  # our own script that runs in that venv
    assert not [n for n in names if n.split("/")[0] in ("model_compression_toolkit", "mct_quantizers", "uni")]
    requires = [line.lower() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and not [r for r in requires if "imx500" in r or "model-compression" in r or "mct" in r]


@pytest.mark.e2e
def test_the_wheel_builds_passes_twine_and_classifies_with_the_device_extra_alone(tmp_path, tiny_bundle, shapes_dataset,
                                                                                 capsys):
    dist = tmp_path / "dist"
    # The wheel is built from the sdist (build's default), as a user's pip would: no stale build/ tree
    # of the checkout can slip a removed module into it.
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    wheel, sdist = dist / f"edgepipe-{__version__}-py3-none-any.whl", dist / f"edgepipe-{__version__}.tar.gz"
    assert sorted(dist.iterdir()) == sorted([wheel, sdist])
    assert "PASSED" in _run(sys.executable, "-m", "twine", "check", "--strict", wheel, sdist)
    _assert_nothing_of_sonys(wheel)

    env = tmp_path / "pi-venv"
    venv.create(env, with_pip=True)  # no system site packages: only what the wheel asks for
    _run(env / "bin" / "pip", "install", "--quiet", f"{wheel}[device]")
    assert _run(env / "bin" / "edgepipe", "--version").strip() == f"edgepipe {__version__}"
    image = sorted(shapes_dataset.rglob("*.jpg"))[0]
    installed = json.loads(_run(env / "bin" / "edgepipe", "classify", tiny_bundle, image, "--json"))
    assert main(["classify", str(tiny_bundle), str(image), "--json"]) == 0
    checkout = json.loads(capsys.readouterr().out)
    assert installed["top"] == checkout["top"] and installed["top"][0]["label"]
    missing = subprocess.run([env / "bin" / "python", "-c", "import tensorflow"], capture_output=True)
    assert missing.returncode != 0  # the device extra never pulls TensorFlow
