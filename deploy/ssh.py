"""Talking to a device through the system OpenSSH client.

Why the system client (not paramiko): users' ~/.ssh/config, agents, jump
hosts and known_hosts work exactly as with `ssh`, and host keys are checked
by the tool they already trust. We never pass StrictHostKeyChecking=no: an
unknown key stops the deploy with one line telling the user to verify it.

Why argument lists and one fixed remote script: ssh joins the remote command
into a string for the device's shell, so the only things on that string are
the interpreter path and arguments, each quoted with shlex.quote; the logic
itself is deploy/remote_agent.py, sent on stdin to `python3 -`.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edgepipe.device.errors import UserError

# With BatchMode ssh fails instead of hanging at a password or passphrase prompt.
DEFAULT_CONNECT_TIMEOUT = 10
SAFE_REMOTE_PATH = re.compile(r"^~?[A-Za-z0-9._/+-]*$")


class SshError(UserError):
    """The connection itself failed (unreachable, auth, host key)."""


@dataclass(frozen=True)
class Target:
    """`[user@]host[:port]` as typed by the user."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Target":
        user, _, hostport = text.rpartition("@")
        host, port = hostport, None
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", hostport)
        if bracketed:
            host, port = bracketed.group(1), bracketed.group(2)
        elif hostport.count(":") == 1:
            host, port = hostport.split(":")
        if not host or host.startswith("-") or any(c.isspace() for c in text):
            raise UserError(f"{text!r} is not a host; use user@host or user@host:port")
        if port is not None and not (str(port).isdigit() and 0 < int(port) < 65536):
            raise UserError(f"{text!r} has an invalid port; use user@host:port with a port 1-65535")
        return cls(host=host, user=user or None, port=int(port) if port else None)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def scp_destination(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user + '@' if self.user else ''}{host}:{path}"

    def __str__(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")


@dataclass
class SshOptions:
    identity: str | None = None
    config: str | None = None
    options: list[str] = field(default_factory=list)
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT

    def common(self) -> list[str]:
        """Options ssh and scp share (scp takes the port as -P, so not here)."""
        args: list[str] = []
        if self.config:
            args += ["-F", self.config]
        if self.identity:
            args += ["-i", self.identity]
        args += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}"]
        args += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]  # a dead link ends in ~1 min
        for option in self.options:
            args += ["-o", option]
        return args


def ssh_option(text: str) -> str:
    """argparse type for --ssh-option K=V; refuses to switch host key checking off."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. ProxyJump=bastion)")
    if key.strip().lower() == "stricthostkeychecking" and value.strip().lower() in ("no", "off"):
        raise argparse.ArgumentTypeError(
            "edgepipe never disables host key checking; verify the key once with `ssh HOST` or ssh-keyscan"
        )
    return f"{key.strip()}={value.strip()}"


def explain_failure(target: Target, stderr: str) -> SshError:
    """One line a user can act on, from what ssh printed when it exited 255."""
    text = stderr.lower()
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "no message")
    port = f"-p {target.port} " if target.port else ""
    if "remote host identification has changed" in text:
        return SshError(
            f"{target}: the host key CHANGED since you last connected (a re-installed device, or an attack); "
            f"check it, then remove the old key with `ssh-keygen -R {target.host}`"
        )
    if "host key verification failed" in text or "no " in text and "host key is known" in text:
        return SshError(
            f"{target}: host key not known; verify it once by connecting with `ssh {port}{target.destination}` "
            f"(or add it with `ssh-keyscan {port}{target.host} >> ~/.ssh/known_hosts` after checking its fingerprint)"
        )
    if "permission denied" in text or "too many authentication failures" in text:
        return SshError(
            f"{target}: authentication failed ({last}); install your key with `ssh-copy-id {port}{target.destination}` "
            "or pass --identity KEY"
        )
    if any(s in text for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                               "network is unreachable", "name or service not known", "connection closed",
                               "connection reset")):
        return SshError(f"{target}: cannot connect ({last}); check the address, the port and that sshd runs")
    return SshError(f"{target}: ssh failed: {last}")


class Remote:
    """One device: runs the agent there and copies files to it."""

    def __init__(self, target: Target, options: SshOptions, prefix: str, python: str | None = None,
                 ssh: str = "ssh", scp: str = "scp") -> None:
        if not SAFE_REMOTE_PATH.match(prefix) or "~" in prefix[1:]:
            raise UserError(
                f"--prefix {prefix!r}: use letters, digits and ._/+- only (optionally starting with ~/)"
            )
        self.target = target
        self.options = options
        self.prefix = prefix
        self.python = python
        self.ssh = ssh
        self.scp = scp

    def ssh_argv(self, remote_command: list[str]) -> list[str]:
        port = ["-p", str(self.target.port)] if self.target.port else []
        return [self.ssh, *self.options.common(), *port, self.target.destination, shlex.join(remote_command)]

    def agent_command(self, *args: str) -> list[str]:
        python = ["--python", self.python] if self.python else []
        return [self.python or "python3", "-", "--prefix", self.prefix, *python, *args]

    def run_agent_raw(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run the agent; returns the process (for `edgepipe` pass-through) after ssh-level errors."""
        script = resources.files("edgepipe.deploy").joinpath("remote_agent.py").read_text(encoding="utf-8")
        try:
            proc = subprocess.run(self.ssh_argv(self.agent_command(*args)), input=script, capture_output=True,
                                  text=True, timeout=timeout)
        except FileNotFoundError:
            raise UserError(f"`{self.ssh}` not found; install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise SshError(f"{self.target}: no answer within {timeout:g}s") from None
        if proc.returncode == 255:
            raise explain_failure(self.target, proc.stderr)
        return proc

    def agent(self, *args: str, timeout: float | None = None) -> dict:
        """Run one agent subcommand; its JSON result, or UserError with its one-line error."""
        proc = self.run_agent_raw(*args, timeout=timeout)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            python = self.python or "python3"
            raise UserError(f"{self.target}: cannot run the deploy agent with {python} ({last}); "
                            "install python3 on the device or pass --remote-python") from None
        if proc.returncode != 0 or "error" in result:
            raise AgentFailure(f"{self.target}: {result.get('error', 'agent failed')}", result)
        return result

    def upload(self, local: Path, remote_path: str) -> None:
        """Copy a file or a directory (to a path that does not exist yet) with scp."""
        port = ["-P", str(self.target.port)] if self.target.port else []
        argv = [self.scp, *self.options.common(), *port, "-q", "-p", "-r", str(local),
                self.target.scp_destination(remote_path)]
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            error = explain_failure(self.target, proc.stderr)
            raise SshError(f"{error}; upload of {local.name} did not complete")


class AgentFailure(UserError):
    """The agent ran and reported a failure; `result` holds what it did (e.g. a rollback)."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result
