"""Files on the device: member names, hashes that follow no symlink, and atomic writes.

edgepipe.device.model.safefile's checks, again: this package must run where
edgepipe is not installed, so it cannot import them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path

from .protocol import AgentError

MANIFEST = "bundle.json"
PRIVATE = 0o600
# A bundle member: a plain relative path (the same rule as edgepipe.device.model.safefile).
NAME_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*\Z")


def plain_name(name) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 255 and all(NAME_PART.match(p) for p in name.split("/"))


def sha256_member(root: Path, name: str) -> str:
    """The sha256 of a regular file inside root, no symlink at any component, hashed in constant memory."""
    if not plain_name(name):
        raise AgentError("%s lists %r, not a plain relative path inside the bundle" % (MANIFEST, name))
    parts = name.split("/")
    fd = os.open(str(root), os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        member = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        raise AgentError("%s is missing after upload" % name)
    except OSError:
        raise AgentError("%s is a symlink or not a regular file on the device" % name)
    finally:
        os.close(fd)
    digest = hashlib.sha256()
    with os.fdopen(member, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise AgentError("%s is not a regular file on the device" % name)
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write, fsync, rename, fsync the directory: a power cut leaves the old file or the new one."""
    tmp = path.with_name(".%s.%d.tmp" % (path.name, os.getpid()))
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), mode)  # an existing tmp keeps its mode otherwise
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(str(tmp), str(path))
    except BaseException:
        if os.path.lexists(str(tmp)):
            os.unlink(str(tmp))
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, data: dict, mode: int = 0o644) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n", mode)


def read_json(path: Path, default: dict) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return default
    return data if isinstance(data, dict) else default
