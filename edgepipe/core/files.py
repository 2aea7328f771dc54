"""Writing outputs so that a crash or Ctrl-C never leaves a half-written file
and an existing result is never overwritten without --force.

Temporary files and directories are created with os.open/os.mkdir and modes
0666/0777, not tempfile's mkstemp/mkdtemp (0600/0700): renamed into place they
become the output, which must get the modes the umask gives any other file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import UserError


def refuse_overwrite(path: Path, force: bool) -> None:
    """Stop before any work when `path` exists and the user did not pass --force."""
    if path.exists() and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")


def _temporary_sibling(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{suffix}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_sibling(path, ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces `path` only if the block succeeds.

    On failure the temporary directory is removed and `path` is untouched, so
    readers never see a half-written directory (a bundle, a run dir).
    """
    path = Path(path)
    refuse_overwrite(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temporary_sibling(path, ".partial")
        try:
            tmp.mkdir(0o777)
            break
        except FileExistsError:
            continue
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def check_writable(path: Path, force: bool = False) -> None:
    """Stop before the work when an output could not be written after it.

    A run that takes an hour must not end with "permission denied" and lose
    its result: the destination's folder must exist (or be creatable) and be
    writable now, and an existing file needs --force.
    """
    path = Path(path)
    refuse_overwrite(path, force)
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(f"cannot write {path}: {folder} is not a writable folder")
    try:  # a real file, not os.access: root passes permission bits but not a read-only mount or a full disk
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {folder} is not a writable folder ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
