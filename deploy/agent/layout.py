"""Where things live under PREFIX on the device, and the two changes made to it atomically:
the `current` switch and the activation history (see the package docstring for the tree)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .files import PRIVATE, fsync_dir, plain_name, read_json, write_json_atomic
from .protocol import ENV_FILE, AgentError

RELEASES = "releases"
CURRENT = "current"
STATE_FILE = "deploy-state.json"
VERIFICATIONS_FILE = "verifications.json"
SERVICE_FILE = "service.json"
TEMPLATE_FILE = "edgepipe.service.in"
COLLECT_DIR = "collect"
LOCK_FILE = ".deploy.lock"
PARTIAL_SUFFIX = ".partial"


class StateDamaged(Exception):
    """deploy-state.json exists but cannot be read as {"history": [...]}."""


class Layout:
    def __init__(self, prefix: str) -> None:
        self.root = Path(os.path.expanduser(prefix)).absolute()
        self.releases = self.root / RELEASES
        self.current = self.root / CURRENT
        self.state_file = self.root / STATE_FILE
        self.verifications_file = self.root / VERIFICATIONS_FILE
        self.service_file = self.root / SERVICE_FILE
        self.template = self.root / TEMPLATE_FILE
        self.env_file = self.root / ENV_FILE
        self.lock_file = self.root / LOCK_FILE
        self.collect = self.root / COLLECT_DIR

    def release(self, release_id: str) -> Path:
        return self.releases / release_id

    def partial(self, release_id: str) -> Path:
        return self.releases / (".%s%s" % (release_id, PARTIAL_SUFFIX))

    def release_dirs(self) -> list:
        """The releases on disk (not partial uploads), in name order."""
        if not self.releases.is_dir():
            return []
        return sorted(p for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith("."))

    def current_release(self) -> str | None:
        try:
            return Path(os.readlink(self.current)).name
        except OSError:
            return None

    def history(self) -> list:
        """Activations, oldest first: [{"release": id, "service": settings or None}, ...].

        A damaged state file raises StateDamaged; callers that must work anyway use history_or_disk."""
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StateDamaged("%s is damaged (%s)" % (self.state_file, exc))
        history = data.get("history") if isinstance(data, dict) else None
        if not isinstance(history, list) or not all(
                isinstance(e, dict) and isinstance(e.get("release"), str) and plain_name(e["release"])
                and "/" not in e["release"] and isinstance(e.get("service"), (dict, type(None))) for e in history):
            raise StateDamaged("%s is damaged (not {\"history\": [{\"release\": ..., \"service\": ...}]})"
                               % self.state_file)
        return list(history)

    def history_or_disk(self) -> tuple:
        """(history, problem): the recorded history, or when it is damaged the releases on disk,
        oldest first by time, with the service settings in effect, so status and rollback still work."""
        try:
            return self.history(), None
        except StateDamaged as exc:
            service = read_json(self.service_file, {}) or None
            on_disk = sorted(self.release_dirs(), key=lambda p: p.stat().st_mtime)
            current = self.current_release()
            names = [p.name for p in on_disk if p.name != current] + ([current] if current else [])
            return [{"release": name, "service": service} for name in names], str(exc)

    def save_history(self, history: list) -> None:
        write_json_atomic(self.state_file, {"history": history}, PRIVATE)  # entries hold the service's arguments

    def switch(self, release_id: str) -> None:
        """Point `current` at a release atomically: a new symlink renamed over the old one."""
        if not self.release(release_id).is_dir():
            raise AgentError("release %s is not on the device" % release_id)
        tmp = self.root / (".%s.%d.tmp" % (CURRENT, os.getpid()))
        if os.path.lexists(tmp):
            tmp.unlink()
        os.symlink(os.path.join(RELEASES, release_id), tmp)
        os.replace(tmp, self.current)
        fsync_dir(self.root)
