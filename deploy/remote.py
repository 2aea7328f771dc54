"""One device, through the deploy agent.

Why argument lists and one fixed remote program: ssh joins the remote command
into a string for the device's shell, so the only things on that string are
the interpreter path and arguments, each quoted with shlex.quote; the logic
itself is the agent package (deploy/agent/), sent as one zipapp on stdin to a
fixed bootstrap that reads exactly its length (deploy/agent_archive.py), so the
rest of stdin stays free (the deploy lock is held until the workstation closes
it). Every answer is checked against the agent protocol's shape before use.
"""

from __future__ import annotations

import contextlib
import json
import resource
import signal
import subprocess
from pathlib import Path
from typing import Iterator

from edgepipe.core.errors import UserError
from edgepipe.core.safetext import safe_line
from edgepipe.core.ssh import (SAFE_REMOTE_PATH, Connection, SshError, SshOptions, Target, explain_failure, scp_command,
                               ssh_command)

from .agent import protocol
from .agent_archive import agent_archive, bootstrap


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
        self.lock_token: str | None = None

    def ssh_argv(self, remote_command: list[str]) -> list[str]:
        return ssh_command(self.target, self.options, remote_command, ssh=self.ssh)

    def agent_command(self, *args: str) -> list[str]:
        python = ["--python", self.python] if self.python else []
        lock = ["--lock", self.lock_token] if self.lock_token else []
        return [self.python or "python3", "-c", bootstrap(), "--prefix", self.prefix, *python, *lock, *args]

    @contextlib.contextmanager
    def locked(self) -> Iterator[str]:
        """Hold the device's prefix lock for the block: one ssh session whose open stdin is the lock.

        A second deploy gets the agent's "another deploy ... in progress since T" and touches nothing;
        if this process or its connection dies, the device sees stdin close and the lock goes with it.
        """
        try:
            proc = subprocess.Popen(self.ssh_argv(self.agent_command(protocol.LOCK)), stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise UserError(f"`{self.ssh}` not found; install the OpenSSH client (apt-get install openssh-client)") from None
        try:
            proc.stdin.write(agent_archive())
            proc.stdin.flush()
            answer = self._parse_answer(proc.stdout.readline().decode("utf-8", "replace"), proc)
            self.lock_token = answer["token"]
            yield self.lock_token
        finally:
            self.lock_token = None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()

    def _parse_answer(self, line: str, proc: subprocess.Popen) -> dict:
        """The holder's first line: its token, or why the lock was not taken."""
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("token"), str):
            return checked_answer(self.target, protocol.LOCK, answer)
        proc.stdin.close()
        stderr = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() == 255:
            raise explain_failure(self.target, stderr)
        if isinstance(answer, dict) and isinstance(answer.get("error"), str):
            raise AgentFailure(f"{self.target}: {answer['error']}", answer)
        raise self._no_agent(stderr)

    def _no_agent(self, stderr: str) -> UserError:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        python = self.python or "python3"
        return UserError(f"{self.target}: cannot run the deploy agent with {python} ({last}); "
                         "install python3 on the device or pass --remote-python")

    def run_agent_raw(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run the agent; returns the process (for `edgepipe` pass-through) after ssh-level errors."""
        try:
            proc = subprocess.run(self.ssh_argv(self.agent_command(*args)), input=agent_archive(),
                                  capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise UserError(f"`{self.ssh}` not found; install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise SshError(f"{self.target}: no answer within {timeout:g}s") from None
        proc.stdout, proc.stderr = (out.decode("utf-8", "replace") for out in (proc.stdout, proc.stderr))
        if proc.returncode == 255:
            raise explain_failure(self.target, proc.stderr)
        return proc

    def agent(self, *args: str, timeout: float | None = None) -> dict:
        """Run one agent command (args[0], a protocol command name); its JSON answer, checked against the
        protocol's shape, or UserError with its one-line error."""
        proc = self.run_agent_raw(*args, timeout=timeout)
        try:
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise self._no_agent(proc.stderr) from None
        if not isinstance(result, dict):
            raise UserError(f"{self.target}: the deploy agent answered {type(result).__name__}, not an object; "
                            "is the device running a different edgepipe?")
        if proc.returncode != 0 or "error" in result:
            raise AgentFailure(f"{self.target}: {result.get('error', 'agent failed')}", result)
        return checked_answer(self.target, args[0], result)

    def upload(self, local: Path, remote_path: str) -> None:
        """Copy `local` (a private staging folder holding exactly a bundle's files, made by
        release.staged_bundle: no links, nothing unlisted) to a path that does not exist yet."""
        argv = scp_command(self.target, self.options, [str(local)], self.target.scp_destination(remote_path),
                           recursive=True, scp=self.scp)
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode != 0:
            if "no space left on device" in proc.stderr.lower():
                raise DiskFull(f"{self.target}: the device's disk filled up during the upload of {local.name}")
            if proc.returncode != 255 and "failed to upload" in proc.stderr:  # the SFTP side reports only "failure"
                raise SshError(f"{self.target}: scp failed: "
                               + " / ".join(line.strip() for line in proc.stderr.splitlines() if line.strip()))
            error = explain_failure(self.target, proc.stderr)
            raise SshError(f"{error}; upload of {local.name} did not complete")


    def download(self, remote_paths: list[str], local_dir: Path, max_file_bytes: int) -> None:
        """Copy files from the device into `local_dir` with one scp (paths the agent listed, checked safe).

        No file scp writes can grow past `max_file_bytes` (RLIMIT_FSIZE on the scp process: the kernel
        stops it, whatever the device sends), so a device that sends more than it listed cannot fill
        this disk; that ends in Oversize, and the caller checks what did arrive against its hashes."""
        unsafe = [p for p in remote_paths if not SAFE_REMOTE_PATH.match(p)]
        if unsafe:
            raise UserError(f"{self.target}: the device listed an unsafe path {unsafe[0]!r}; not copying it")
        port = ["-P", str(self.target.port)] if self.target.port else []
        argv = [self.scp, *self.options.common(), *port, "-q", "-p",
                *(self.target.scp_destination(p) for p in remote_paths), str(local_dir)]
        limit = max(1, max_file_bytes)
        proc = subprocess.run(argv, capture_output=True, text=True,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        if proc.returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or "File too large" in proc.stderr:
            raise Oversize(f"{self.target}: the device sent a file larger than it listed")
        if proc.returncode != 0:
            raise SshError(f"{explain_failure(self.target, proc.stderr)}; the copy did not complete "
                           "(run the same command again to resume)")


def checked_answer(target: Target, command: str, answer: dict) -> dict:
    """`answer` when it fits the protocol's shape for `command`; else one line saying which field does not."""
    wrong = protocol.wrong_field(answer, protocol.ANSWERS[command])
    if wrong:
        raise UserError(f"{target}: the device agent's answer has {wrong[0]!r} = "
                        f"{safe_line(repr(wrong[1]))[:80]}, not what this edgepipe expects; "
                        "is the device running a different edgepipe?")
    return answer


class DiskFull(UserError):
    """The device ran out of space while receiving a bundle."""


class Oversize(UserError):
    """The device sent more bytes for a file than it listed (and the copy was stopped there)."""


class AgentFailure(UserError):
    """The agent ran and reported a failure; `result` holds what it did (e.g. a rollback)."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result


def remote_for(connection: Connection) -> Remote:
    return Remote(connection.target, connection.ssh, connection.prefix, connection.python)
