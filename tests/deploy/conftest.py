"""Fixtures for the deploy tests: a real OpenSSH server on 127.0.0.1 (sshd_server.py).

The 'device' is this machine, so its Python (with edgepipe installed) is the
remote Python, and the service runs through the agent's `process` manager (no
service manager runs in CI). Every test's prefix is stopped at teardown, so
no service process outlives a test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from sshd_server import SSHD, SshServer, free_port, running_sshd, stop_service

from edgepipe.core.ssh import SshOptions, Target
from edgepipe.deploy.remote import Remote


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def prefix(tmp_path: Path):
    path = tmp_path / "device" / "edgepipe"
    yield path
    stop_service(path)


@pytest.fixture
def remote(sshd: SshServer, prefix: Path) -> Remote:
    return Remote(Target.parse(sshd.host), SshOptions(config=str(sshd.client_config)), prefix=str(prefix),
                  python=sys.executable)


@pytest.fixture
def deploy_argv(sshd: SshServer, prefix: Path):
    """CLI arguments that reach the test sshd and deploy into `prefix`."""

    def argv(*extra: str) -> list[str]:
        return ["--ssh-config", str(sshd.client_config), "--prefix", str(prefix),
                "--remote-python", sys.executable, "--service-manager", "process", *extra]

    return argv


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (an unreachable device)."""
    return free_port()
