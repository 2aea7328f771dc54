"""Deploying a bundle with an IMX500 model: the device's agent has the device's edgepipe make
network.rpk with imx500-package (a stand-in here: it is Raspberry Pi OS's) once per package hash,
keeps it in the release, and the release still holds nothing but the manifest's files and those two."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from edgepipe.deploy.agent import imx500 as agent_imx500
from edgepipe.deploy.agent.layout import Layout
from edgepipe.deploy.agent.protocol import AgentError
from edgepipe.deploy.agent.verify import verify_release

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "device"))
from imx500_helpers import packager_calls, path_with, stand_in_packager, with_imx500  # noqa: E402


@pytest.fixture
def layout(tmp_path: Path, tiny_bundle: Path) -> tuple[Layout, str]:
    layout = Layout(str(tmp_path / "prefix"))
    layout.releases.mkdir(parents=True)
    with_imx500(tiny_bundle, layout.release("r1"))
    return layout, "r1"


@pytest.fixture
def packager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    stand_in_packager(bin_dir)
    monkeypatch.setenv("PATH", path_with(bin_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return bin_dir


def test_activation_packages_network_rpk_into_the_release_once_per_package_hash(layout, packager):
    layout, release = layout
    shutil.copytree(layout.release(release), layout.release("r2"))  # the same model in another release
    result = agent_imx500.package_imx500(layout, release, sys.executable, required=True)
    assert result == {"packaged": True, "reason": ""}
    rpk = layout.release(release) / "imx500" / "network.rpk"
    assert rpk.read_bytes().startswith(b"9464")
    assert agent_imx500.package_imx500(layout, "r2", sys.executable, required=True)["packaged"]
    assert len(packager_calls(packager)) == 1
    verify_release(layout.release(release))  # the rpk and its record are the only extras allowed
    (layout.release(release) / "imx500" / "other.rpk").write_bytes(b"x")
    with pytest.raises(AgentError, match="imx500/other.rpk is not listed"):
        verify_release(layout.release(release))


def test_without_imx500_package_deploy_stops_only_when_the_ai_camera_is_to_be_used(layout, tmp_path, monkeypatch):
    layout, release = layout
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    soft = agent_imx500.package_imx500(layout, release, sys.executable, required=False)
    assert not soft["packaged"] and "sudo apt install imx500-all imx500-tools" in soft["reason"]
    with pytest.raises(AgentError, match="no imx500-package on this machine"):
        agent_imx500.package_imx500(layout, release, sys.executable, required=True)


def test_a_bundle_without_an_imx500_model_is_left_alone(tmp_path, tiny_bundle):
    layout = Layout(str(tmp_path / "prefix"))
    shutil.copytree(tiny_bundle, layout.release("plain"))
    assert agent_imx500.package_imx500(layout, "plain", sys.executable, required=True)["packaged"] is False


def test_every_service_accelerator_has_a_verification_and_the_ai_camera_verifies_on_its_sensor():
    from edgepipe.core.accelerators import ACCELERATORS
    from edgepipe.deploy.release import VERIFY_ACCELERATOR

    assert set(VERIFY_ACCELERATOR) == set(ACCELERATORS) and VERIFY_ACCELERATOR["imx500"] == "imx500"


def test_the_deploy_line_says_whether_network_rpk_was_made():
    from edgepipe.deploy.release import _imx500_phrase

    assert _imx500_phrase({"packaged": True, "reason": ""}) == "; AI Camera network.rpk made with imx500-package"
    missing = _imx500_phrase({"packaged": False, "reason": "no imx500-package on this machine"})
    assert "NOT made" in missing and "deploy setup HOST --imx500" in missing
    assert _imx500_phrase({"packaged": False, "reason": "no IMX500 model in the bundle"}) == ""
    assert _imx500_phrase(None) == ""
