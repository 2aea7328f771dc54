"""One device, through the deploy agent.

Why argument lists and one fixed remote script: ssh joins the remote command
into a string for the device's shell, so the only things on that string are
the interpreter path and arguments, each quoted with shlex.quote; the logic
itself is deploy/remote_agent.py, sent on stdin to `python3 -`.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from importlib import resources
from pathlib import Path

from edgepipe.core.errors import UserError
from edgepipe.core.ssh import SAFE_REMOTE_PATH, Connection, SshError, SshOptions, Target, explain_failure


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
        script = resources.files(__package__).joinpath("remote_agent.py").read_text(encoding="utf-8")
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


def remote_for(connection: Connection) -> Remote:
    return Remote(connection.target, connection.ssh, connection.prefix, connection.python)
