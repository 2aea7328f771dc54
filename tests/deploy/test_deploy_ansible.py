"""The Ansible role against the real test sshd: the same agent, the same layout.

`edgepipe deploy BUNDLE --inventory` runs the real ansible-playbook (ansible-core
is installed by the dev extra); its ssh options come from edgepipe's flags,
and ControlPersist is off so no ssh master outlives the test. Marked e2e:
ansible-playbook's start-up makes it the slowest deploy test.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import MANIFEST, sha256_file


@pytest.fixture
def ansible_env(tmp_path, monkeypatch):
    if shutil.which("ansible-playbook") is None:
        pytest.skip("ansible-playbook not installed (pip install 'edgepipe[deploy]')")
    home = tmp_path / "ansible"
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(home / "local"))
    monkeypatch.setenv("ANSIBLE_REMOTE_TEMP", str(home / "remote"))
    monkeypatch.setenv("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
    monkeypatch.setenv("ANSIBLE_NOCOLOR", "1")
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "True")
    return home


@pytest.mark.e2e  # two playbook runs: about a minute on a busy 2-core machine
def test_inventory_deploy_runs_the_playbook_with_the_same_steps(
        tiny_bundle, sshd, prefix, video, tmp_path, ansible_env, capfd):
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        "[cameras]\n"
        f"cam1 ansible_host=127.0.0.1 ansible_port={sshd.port} ansible_user={sshd.user} "
        f"ansible_python_interpreter={sys.executable}\n"
    )
    argv = ["deploy", str(tiny_bundle), "--inventory", str(inventory), "--ssh-config", str(sshd.client_config),
            "--prefix", str(prefix), "--remote-python", sys.executable, "--service-manager", "process",
            "--source", str(video)]
    assert main(argv) == 0, capfd.readouterr().out[-3000:]
    out = capfd.readouterr().out
    assert "cam1" in out and "failed=0" in out
    release_id = sha256_file(tiny_bundle / MANIFEST)[:16]
    assert os.readlink(prefix / "current") == f"releases/{release_id}"
    manifest = json.loads((prefix / "releases" / release_id / MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        assert sha256_file(prefix / "releases" / release_id / name) == digest
    state = json.loads((prefix / "deploy-state.json").read_text())
    assert state["history"][0]["release"] == release_id
    assert state["history"][0]["service"]["source"] == str(video)
    assert (prefix / "service.pid").is_file()  # the health-checked service runs

    # A second run finds the release verified on the device and skips the copy.
    assert main(argv) == 0
    assert "failed=0    skipped=2" in capfd.readouterr().out  # the upload and the commit
