"""Where `run --mqtt` and `run --serve` go, parsed at the command line (argparse types).

Light on purpose: cli.py imports this to register the flags, before any
command loads numpy, OpenCV or a client library. Secrets may come from the
environment so they never appear on a command line or in a unit file.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

PASSWORD_ENV = "EDGEPIPE_MQTT_PASSWORD"
TOKEN_ENV = "EDGEPIPE_SERVE_TOKEN"
TOPIC_LEVEL = re.compile(r"[^#+\x00]+")


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
        user = f"{self.username}{':***' if self.password else ''}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}/{self.prefix}"


def mqtt_url(text: str) -> MqttTarget:
    """argparse type for --mqtt; the password may also come from $EDGEPIPE_MQTT_PASSWORD."""
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise argparse.ArgumentTypeError("give the broker as mqtt://[user[:password]@]host[:port]/PREFIX (or mqtts://)")
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise argparse.ArgumentTypeError("the broker's port must be a number from 1 to 65535") from None
    prefix = parts.path.strip("/") or f"edgepipe/{socket.gethostname()}"
    if not all(TOPIC_LEVEL.fullmatch(level) for level in prefix.split("/")):
        raise argparse.ArgumentTypeError(f"topic prefix {prefix!r} may not contain empty levels, + or #")
    password = unquote(parts.password) if parts.password is not None else os.environ.get(PASSWORD_ENV) or None
    username = unquote(parts.username) if parts.username else None
    return MqttTarget(parts.hostname, port, prefix, parts.scheme == "mqtts", username, password)


def serve_address(text: str) -> tuple[str, int]:
    """argparse type for --serve: [HOST:]PORT, bound to 127.0.0.1 unless a host is given."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise argparse.ArgumentTypeError(f"{text!r} is not [HOST:]PORT (e.g. 8080 or 0.0.0.0:8080)")
    return host, int(port)
