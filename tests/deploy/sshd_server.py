"""A real OpenSSH server on 127.0.0.1, for the deploy tests and benchmarks/bench_deploy.py.

sshd runs as the current user with a generated host key, a generated client
key, and every path (authorized_keys, known_hosts, client config) in one
directory, so nothing reads or writes ~/.ssh.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
READY_TIMEOUT_S = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> str:
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
    host_public_key: str

    @property
    def host(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {' '.join(self.host_public_key.split()[:2])}\n"

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

    @property
    def client_config(self) -> Path:
        """The config that knows the host key and uses the authorized key."""
        return self.root / "client.ssh_config"


@contextlib.contextmanager
def running_sshd(root: Path) -> Iterator[SshServer]:
    """sshd in the foreground for the duration of the block; stopped (and waited for) after it."""
    host_key = keygen(root / "host_ed25519")
    (root / "authorized_keys").write_text(keygen(root / "id_client") + "\n")
    port = free_port()
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
        server = SshServer(port=port, user=user, root=root, host_public_key=host_key)
        server.write_client_config("client", server.known_hosts_line)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def stop_service(prefix: Path) -> None:
    """Kill the agent's `process`-manager service under `prefix` (its whole process group)."""
    try:
        os.killpg(int(json.loads((prefix / "service.pid").read_text())["pid"]), 9)
    except (OSError, ValueError, KeyError, TypeError):
        return
