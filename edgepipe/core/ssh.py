"""Talking to a device through the system OpenSSH client.

Why the system client (not paramiko): users' ~/.ssh/config, agents, jump
hosts and known_hosts work exactly as with `ssh`, and host keys are checked
by the tool they already trust. We never pass StrictHostKeyChecking=no: an
unknown key stops the deploy with one line telling the user to verify it.

Every stage that reaches a machine over SSH (deploy, `bench --host`,
`convert --compiler-host`) goes through these few pieces, so host keys are
checked, and options parsed, the same way everywhere.

The destination is validated in full (user and host) and always passed after
`--`, so nothing in it reaches ssh's option parser; --ssh-option values that
would weaken host-key checking are refused whatever their spelling.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass

from .args import positive_int
from .errors import UserError
from .options import add_options, flag, options_from

CONNECTION = "connection (OpenSSH: ~/.ssh/config, agents and known_hosts apply)"
SAFE_REMOTE_PATH = re.compile(r"^~?[A-Za-z0-9._/+-]*$")
USER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252})")


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
        if not _valid_host(host) or (user and not USER_NAME.fullmatch(user)) or (not user and "@" in text):
            raise UserError(f"{text!r} is not a host; use user@host or user@host:port "
                            "(user: letters, digits, ._-; host: a name or an IP address)")
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


def _valid_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(HOST_NAME.fullmatch(host))


_OPTION = re.compile(r"\s*(?P<key>\"[^\"]*\"|[^\s=\"]+)\s*(?:=\s*|\s+)(?P<value>.*?)\s*")
# Keys whose value decides which host keys are trusted: (allowed values, or None = refused outright).
_HOST_KEY_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "stricthostkeychecking": ("yes", "true", "ask"),
    "checkhostip": ("yes", "true"),
    "knownhostscommand": None,
    "hostkeyalias": None,
    "include": None,
    "match": None,
    "host": None,
}
_KNOWN_HOSTS_FILES = ("userknownhostsfile", "globalknownhostsfile")


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def parse_ssh_option(text: str) -> tuple[str, str]:
    """(key, value) the way ssh reads `-o`: `Key=Value` or `Key Value`, keys case-insensitive, quotes removed."""
    match = _OPTION.fullmatch(text)
    if not match or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. ProxyJump=bastion)")
    key, value = _unquote(match["key"]), match["value"]
    if not key or not value:
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. ProxyJump=bastion)")
    return key, value


def weakens_host_key_checking(key: str, value: str) -> bool:
    lowered = key.lower()
    words = [_unquote(w).lower() for w in value.split()]
    if lowered in _HOST_KEY_OPTIONS:
        allowed = _HOST_KEY_OPTIONS[lowered]
        return allowed is None or len(words) != 1 or words[0] not in allowed
    if lowered in _KNOWN_HOSTS_FILES:  # a file that holds no keys accepts none, so /dev/null means "trust any"
        return any(w == "none" or os.path.realpath(os.path.expanduser(w)) == os.devnull for w in words)
    return False


def ssh_option(text: str) -> str:
    """argparse type for --ssh-option K=V; refuses anything that weakens host key checking."""
    try:
        key, value = parse_ssh_option(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if weakens_host_key_checking(key, value):
        raise argparse.ArgumentTypeError(
            f"{key} {value}: edgepipe never weakens host key checking; verify the key once with `ssh HOST` "
            "or ssh-keyscan, and put other host-key settings in your ssh config (--ssh-config)"
        )
    return f"{key}={value}"


@dataclass
class SshOptions:
    identity: str | None = flag("--identity", "-i", default=None, metavar="KEY", help="private key file (ssh -i)")
    config: str | None = flag("--ssh-config", default=None, metavar="FILE",
                              help="ssh client config file instead of ~/.ssh/config (ssh -F)")
    options: tuple[str, ...] = flag("--ssh-option", default=(), parse=ssh_option, repeat=True, metavar="K=V",
                                    help="extra ssh -o option, repeatable (e.g. ProxyJump=bastion); host key "
                                         "checking stays on")
    # With BatchMode ssh fails instead of hanging at a password or passphrase prompt.
    connect_timeout: int = flag("--connect-timeout", default=10, parse=positive_int, metavar="S",
                                help="seconds to wait for the TCP connection")

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


def ssh_command(target: Target, options: SshOptions, remote_command: list[str], ssh: str = "ssh") -> list[str]:
    """ssh's argv: options, then `--`, then the validated destination, then the quoted remote command."""
    port = ["-p", str(target.port)] if target.port else []
    return [ssh, *options.common(), *port, "--", target.destination, shlex.join(remote_command)]


def scp_command(target: Target, options: SshOptions, sources: list[str], destination: str,
                recursive: bool = False, scp: str = "scp") -> list[str]:
    """scp's argv: options, then `--`, then the paths (scp takes the port as -P)."""
    port = ["-P", str(target.port)] if target.port else []
    return [scp, *options.common(), *port, "-q", "-p", *(["-r"] if recursive else []), "--", *sources, destination]


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection flags of every command that reaches a device (deploy, `bench --host`)."""
    add_options(parser, SshOptions, group=CONNECTION)
    add_options(parser, Connection, group=CONNECTION)


@dataclass(frozen=True)
class Connection:
    """Where a device is and how to reach it: what the connection flags say."""

    target: Target
    ssh: SshOptions
    prefix: str = flag("--prefix", default="~/edgepipe", help="install directory on the device")
    python: str | None = flag("--remote-python", default=None, metavar="PATH",
                              help="Python with edgepipe on the device (default: PREFIX/venv/bin/python, made by "
                                   "pi-setup.sh, else python3)")

    @classmethod
    def from_args(cls, args: argparse.Namespace, host: str) -> "Connection":
        """For CLI modules: the connection flags added by `add_connection_arguments`."""
        return options_from(args, cls, target=Target.parse(host), ssh=options_from(args, SshOptions))
