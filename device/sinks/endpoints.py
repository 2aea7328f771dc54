"""Where `run --mqtt` and `run --serve` go, parsed at the command line (argparse types).

It sits with the sinks it describes (the MQTT sink takes its `MqttTarget`) and is
light on purpose: cli/register.py and deploy import it to register the flags,
before any command loads numpy, OpenCV or a client library. Secrets may come from the
environment so they never appear on a command line or in a unit file.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgepipe.core.errors import UserError

PASSWORD_ENV = "EDGEPIPE_MQTT_PASSWORD"
TOKEN_ENV = "EDGEPIPE_SERVE_TOKEN"
TOPIC_LEVEL = re.compile(r"[^#+\x00]+")
MAX_PREFIX_BYTES = 512  # topics are PREFIX/NAME/attributes: well inside MQTT's 65535 bytes


@dataclass(frozen=True)
class MqttTarget:
    """Where to publish, parsed from mqtt[s]://[user[:password]@]host[:port]/PREFIX."""

    host: str
    port: int
    prefix: str
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        """The URL with the password hidden: the form every log and summary shows."""
        return self._url(":***" if self.password else "")

    def without_password(self) -> str:
        """The URL for a command line, the password left to $EDGEPIPE_MQTT_PASSWORD."""
        return self._url("")

    def _url(self, password: str) -> str:
        user = f"{self.username}{password}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{host}:{self.port}/{self.prefix}"


def mqtt_url(text: str) -> MqttTarget:
    """argparse type for --mqtt; the password may also come from $EDGEPIPE_MQTT_PASSWORD."""
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed [ of an IPv6 address
        raise argparse.ArgumentTypeError(f"{text!r} is not a URL: mqtt://[user[:password]@]host[:port]/PREFIX") from None
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise argparse.ArgumentTypeError("give the broker as mqtt://[user[:password]@]host[:port]/PREFIX (or mqtts://)")
    if "#" in text or "?" in text:
        raise argparse.ArgumentTypeError("the broker URL may not hold # or ? (wildcards, queries); "
                                         "percent-encode them in a password: %23, %3F")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise argparse.ArgumentTypeError("the broker's port must be a number from 1 to 65535") from None
    prefix = parts.path.strip("/") or f"edgepipe/{socket.gethostname()}"
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError("the topic prefix is not valid UTF-8") from None
    if size > MAX_PREFIX_BYTES or not prefix.isprintable():
        raise argparse.ArgumentTypeError(f"the topic prefix must be printable and at most {MAX_PREFIX_BYTES} bytes")
    if not all(TOPIC_LEVEL.fullmatch(level) for level in prefix.split("/")):
        raise argparse.ArgumentTypeError(f"topic prefix {prefix!r} may not contain empty levels, + or #")
    password = unquote(parts.password) if parts.password is not None else os.environ.get(PASSWORD_ENV) or None
    username = unquote(parts.username) if parts.username else None
    return MqttTarget(parts.hostname, port, prefix, parts.scheme == "mqtts", username, password)


def serve_address(text: str) -> tuple[str, int]:
    """argparse type for --serve: [HOST:]PORT, bound to 127.0.0.1 unless a host is given."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535 or (sep and not host):
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether --serve on `host` is reachable from this machine only."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve_token(token: str | None, token_file: Path | None) -> str | None:
    """--serve-token, else --serve-token-file's first line, else $EDGEPIPE_SERVE_TOKEN."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"--serve-token-file {token_file}: cannot read it ({exc})") from None
        if not token:
            raise UserError(f"--serve-token-file {token_file} is empty: put the token on its first line")
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None and (len(token) < 8 or not token.isprintable() or " " in token):
        raise UserError("the serve token must be at least 8 printable characters without spaces")
    return token
