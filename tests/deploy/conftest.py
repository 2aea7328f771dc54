"""A real OpenSSH server on 127.0.0.1 for the deploy tests.

sshd runs as the current user with a generated host key, a generated client
key, and every path (authorized_keys, known_hosts, client config) in a temp
dir, so the tests never read or write ~/.ssh. The 'device' is this machine,
so its Python (with edgepipe installed) is the remote Python, and the service
runs through the agent's `process` manager (no service manager runs in CI).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepipe.deploy.ssh import Remote, SshOptions, Target

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
READY_TIMEOUT_S = 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgepipe-test", "-f", str(path)],
                   check=True)
    return path.with_suffix(".pub").read_text().strip()


def _wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not start listening")


@dataclass
class SshServer:
    port: int
    user: str
    root: Path
    client_config: Path
    host_public_key: str

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def write_client_config(self, name: str, known_hosts: str, identity: Path | None = None) -> Path:
        """A client config with the given known_hosts contents and key (default: the authorized one)."""
        known = self.root / f"{name}.known_hosts"
        known.write_text(known_hosts)
        config = self.root / f"{name}.ssh_config"
        config.write_text(
            "Host *\n"
            f"  User {self.user}\n"
            f"  IdentityFile {identity or self.root / 'id_client'}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n"
        )
        return config


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(root / "host_ed25519")
    client_key = _keygen(root / "id_client")
    (root / "authorized_keys").write_text(client_key + "\n")
    port = _free_port()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_ed25519'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
        "StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\nMaxStartups 100\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
    try:
        _wait_listening(port, proc)
        server = SshServer(port=port, user=user, root=root, client_config=root / "client.ssh_config",
                           host_public_key=host_key)
        server.client_config = server.write_client_config(
            "client", f"[127.0.0.1]:{port} {' '.join(host_key.split()[:2])}\n")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stop_service(prefix: Path) -> None:
    """Kill the `process`-manager service under `prefix` (its whole process group)."""
    pid_file = prefix / "service.pid"
    try:
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        return


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


@pytest.fixture(scope="session")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short real video for the service's `--source` (the device has no camera here)."""
    from edgepipe.synthetic import write_video

    path = tmp_path_factory.mktemp("video") / "shapes.mp4"
    write_video(path, frames=40, size=(160, 120))
    return path


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (an unreachable device)."""
    return _free_port()
