"""Sony's IMX500 converter and Model Compression Toolkit carry no open licence (their headers forbid
redistribution): edgepipe installs them into a venv of their own at the user's request and never
depends on them, vendors them or ships them. These tests hold that line without the toolchain."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edgepipe.convert import imx500_toolchain
from edgepipe.convert.imx500_toolchain import PINS, cache_root, venv_key
from edgepipe.core.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
SONY_DISTRIBUTIONS = ("imx500-converter", "model-compression-toolkit", "mct-quantizers", "uni-tensorflow",
                      "uni-pytorch", "imx500-converter-tf")
SONY_IMPORTS = re.compile(r"^\s*(import|from)\s+(model_compression_toolkit|mct_quantizers|uni)\b", re.MULTILINE)


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in requirements}


def test_no_sony_package_is_among_edgepipes_dependencies_or_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = _requirement_names(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        names |= _requirement_names(extra)
    assert not names & set(SONY_DISTRIBUTIONS)
    assert {"imx500-converter", "model-compression-toolkit"} <= _requirement_names(list(PINS))  # only here


def test_no_sony_code_is_in_the_repository_and_only_the_venv_script_imports_it():
    importers = []
    for path in ROOT.rglob("*.py"):
        if any(part in (".venv", "site", "build", ".git") for part in path.relative_to(ROOT).parts):
            continue
        if SONY_IMPORTS.search(path.read_text(errors="replace")):
            importers.append(path.relative_to(ROOT).as_posix())
        assert not (path.parent / "model_compression_toolkit").exists() and path.parent.name != "uni"
    assert importers == ["convert/imx500_in_venv.py"]  # the script the Sony venv's python runs, alone
    script = (ROOT / "convert" / "imx500_in_venv.py").read_text()
    assert "import model_compression_toolkit as mct" in script and "edgepipe" not in re.findall(
        r"^\s*(?:from|import)\s+(\w+)", script, re.MULTILINE)


def test_the_venv_is_keyed_by_the_pins_and_the_python_version(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(imx500_toolchain.CACHE_ENV, raising=False)
    assert cache_root() == tmp_path / "edgepipe" / "imx500-venv"
    before = venv_key((3, 11))
    assert before != venv_key((3, 10))
    monkeypatch.setattr(imx500_toolchain, "PINS", (*PINS[:-1], "numpy<1.26"))
    assert venv_key((3, 11)) != before  # a new pin is a new venv


def test_no_python_310_or_311_is_one_line_saying_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.11, no python3.10
    monkeypatch.setattr(imx500_toolchain.sys, "version_info", (3, 12, 0))
    with pytest.raises(UserError, match=r"needs Python 3\.10 or 3\.11.*pyenv install 3\.11.*--imx500-python"):
        imx500_toolchain.find_python()


def test_no_java_is_one_line_naming_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install default-jre-headless"):
        imx500_toolchain.check_java()


def test_an_interrupted_install_has_no_marker_and_is_not_used(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").write_text("")
    assert imx500_toolchain._ready(tmp_path) is None
    (tmp_path / imx500_toolchain.MARKER).write_text('{"pins": ["other==1"], "versions": {}}')
    assert imx500_toolchain._ready(tmp_path) is None  # made for other pins
