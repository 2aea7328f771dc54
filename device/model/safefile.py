"""Reading a file whose bytes are then trusted: opened once, checked cheaply
(regular file, size, identifier) before it is read, hashed from the same
bytes that are then used, so there is no gap between check and use.

`open_member` also keeps a bundle member inside its bundle: the name is a
plain relative path and no component of it may be a symlink (O_NOFOLLOW on
every step, relative to the directory already opened).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path

from edgepipe.core.errors import UserError

NAME_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_BLOCK = 1 << 20


class FileRefused(UserError):
    """A file that is not what it must be (outside its folder, a link, not regular, too big)."""


def plain_relative_name(name: object) -> bool:
    """True for `a.txt` or `dir/a.txt`: no absolute path, no `..`, no `.`, no backslash, no empty part."""
    return isinstance(name, str) and 0 < len(name) <= 255 and all(NAME_PART.fullmatch(p) for p in name.split("/"))


def open_member(root: Path, name: str) -> int:
    """A read-only fd of regular file `name` inside `root`, refusing symlinks at every component."""
    if not plain_relative_name(name):
        raise FileRefused(f"{name!r} is not a plain relative name inside {root}")
    parts = name.split("/")
    try:
        fd = os.open(root, os.O_RDONLY | _DIRECTORY)
    except OSError as exc:
        raise FileRefused(f"cannot open {root}: {exc.strerror}") from None
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        member = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except FileNotFoundError:
        raise FileRefused(f"{root} is missing {name}") from None
    except OSError as exc:  # ELOOP / ENOTDIR: a symlink where a file or folder must be
        raise FileRefused(f"{root}/{name} is a symlink or not a regular file ({exc.strerror}); "
                          "a bundle holds plain files only") from None
    finally:
        os.close(fd)
    return _regular(member, f"{root}/{name}")


def open_regular(path: Path) -> int:
    """A read-only fd of `path` (links followed: the user named it), refusing anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FileRefused(f"{path} does not exist") from None
    except OSError as exc:
        raise FileRefused(f"cannot read {path}: {exc.strerror}") from None
    return _regular(fd, str(path))


def _regular(fd: int, where: str) -> int:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileRefused(f"{where} is not a regular file")
    return fd


def read_fd(fd: int, where: str, *, max_bytes: int, identifier: bytes | None = None,
            identifier_at: int = 0, what: str = "file") -> bytes:
    """All of fd's bytes after the cheap checks: size bound first, then the identifier from a small read."""
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise FileRefused(f"{where} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB "
                              f"a {what} may have; it is not a {what} edgepipe made")
        if identifier is not None:
            head = os.pread(fd, identifier_at + len(identifier), 0)
            if head[identifier_at:] != identifier:
                raise FileRefused(f"{where} is not a {what} (no {identifier.decode()} identifier; empty, "
                                  "truncated or another format)")
        chunks, total = [], 0
        while block := os.read(fd, _BLOCK):
            total += len(block)
            if total > max_bytes:  # grew while we read
                raise FileRefused(f"{where} grew beyond {max_bytes / 2**20:.0f} MiB while being read")
            chunks.append(block)
        return b"".join(chunks)
    finally:
        os.close(fd)


def sha256_fd(fd: int) -> str:
    """Streaming hash (constant memory), closing fd."""
    digest = hashlib.sha256()
    try:
        while block := os.read(fd, _BLOCK):
            digest.update(block)
    finally:
        os.close(fd)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
