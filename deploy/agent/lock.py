"""One deploy at a time per prefix.

`lock` holds an flock on PREFIX/.deploy.lock for as long as the workstation
keeps its stdin open (a dead workstation or connection closes it, so the lock
never outlives its deploy); the commands that change the device run either
under that holder's token or take the lock themselves for their own duration.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time

from .files import PRIVATE
from .layout import Layout
from .protocol import AgentError


class PrefixLock:
    """An flock on PREFIX/.deploy.lock, released when its holder exits."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.path = layout.lock_file
        self.fd = None

    def _open(self) -> int:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        return os.open(str(self.path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE)

    def _busy(self, fd: int) -> AgentError:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except ValueError:
            info = {}
        since = info.get("since") if isinstance(info, dict) else None
        return AgentError("another deploy to %s is in progress since %s; try again"
                          % (self.layout.root, since or "an unknown time"), busy=True)

    def acquire(self) -> dict:
        """Take the lock (or AgentError: busy); the `lock` answer: this holder's token, start time and PID."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            error = self._busy(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else exc
            os.close(fd)
            raise error
        info = {"token": secrets.token_hex(16), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pid": os.getpid()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self.fd = fd
        return info

    def check(self, token: str) -> None:
        """The lock is held, by the deploy that holds `token` (not by us, not by another deploy)."""
        fd = self._open()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
                if not isinstance(info, dict) or info.get("token") != token:
                    raise self._busy(fd)
                return
            raise AgentError("the deploy lock on %s was lost (the connection holding it dropped); deploy again"
                             % self.layout.root)
        finally:
            os.close(fd)
