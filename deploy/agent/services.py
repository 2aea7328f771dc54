"""The service on the device and its health: a systemd unit, or a supervised process where there is no
systemd (containers, the tests); healthy means it has printed a result and not failed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .files import PRIVATE, read_json, write_atomic, write_json_atomic
from .layout import Layout
from .protocol import AgentError
from .unit import read_env_file, render_unit, service_argv

SERVICE_NAME = "edgepipe"
POLL_S = 0.25

# Parent of the service process for the `process` manager: records the exit
# status that systemd would otherwise keep, and passes SIGTERM on.
SUPERVISOR = """
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
signal.signal(signal.SIGTERM, lambda *_: child.terminate())
code = child.wait()
with open(sys.argv[1], "w") as f:
    f.write(str(code))
"""


class SystemdService:
    """The real service: a systemd user unit (default) or system unit, driven with systemctl/journalctl."""

    def __init__(self, layout: Layout, config: dict) -> None:
        self.layout = layout
        self.system = config.get("scope") == "system"
        self.unit = SERVICE_NAME + ".service"
        if self.system:
            self.unit_path = Path("/etc/systemd/system") / self.unit
        else:
            self.unit_path = Path(os.path.expanduser("~/.config/systemd/user")) / self.unit

    def _sudo(self) -> list:
        return ["sudo", "-n"] if self.system and os.geteuid() != 0 else []

    def _run(self, tool: str, *args: str, check: bool = True) -> str:
        argv = self._sudo() + [tool] + ([] if self.system else ["--user"]) + list(args)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AgentError("%s failed: %s" % (" ".join(argv), exc))
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["exit %d" % proc.returncode])[-1]
            raise AgentError("%s failed: %s" % (" ".join(argv), detail))
        return proc.stdout

    def install(self, unit_text: str, argv: list) -> None:
        if not (self.unit_path.is_file() and self.unit_path.read_text() == unit_text):
            if self._sudo():  # the unit holds the service's arguments: readable by root and its user only
                tmp = self.layout.root / (".%s.%d.tmp" % (self.unit, os.getpid()))
                write_atomic(tmp, unit_text, PRIVATE)
                subprocess.run(["sudo", "-n", "install", "-m", "600", str(tmp), str(self.unit_path)], check=True)
                tmp.unlink()
            else:
                self.unit_path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(self.unit_path, unit_text, PRIVATE)
        self._run("systemctl", "daemon-reload")
        self._run("systemctl", "enable", self.unit)

    def restart(self) -> float:
        started = time.time()
        self._run("systemctl", "restart", self.unit)
        return started

    def stop(self) -> None:
        self._run("systemctl", "stop", self.unit, check=False)

    def state(self) -> dict:
        props = {}
        text = self._run("systemctl", "show", self.unit, "-p", "ActiveState", "-p", "SubState", "-p", "Result",
                         "-p", "ExecMainStatus", "-p", "ActiveEnterTimestampMonotonic", check=False)
        for line in text.splitlines():
            key, _, value = line.partition("=")
            props[key] = value
        active, sub = props.get("ActiveState", "unknown"), props.get("SubState", "")
        failed = active == "failed" or sub == "auto-restart" or props.get("Result", "success") != "success"
        if failed:
            state = "failed"
        elif active in ("active", "activating", "reloading"):
            state = "active"
        else:
            state = "exited" if active == "inactive" and props.get("ExecMainStatus") == "0" else active
        uptime = None
        entered = int(props.get("ActiveEnterTimestampMonotonic") or 0)
        if state == "active" and entered:
            uptime = max(0.0, time.monotonic() - entered / 1e6)
        return {"manager": "systemd", "unit": str(self.unit_path), "state": state,
                "detail": "%s/%s" % (active, sub), "exit_status": props.get("ExecMainStatus"), "uptime_s": uptime}

    def output(self, since: float | None) -> list:
        args = ["-u", self.unit, "-o", "cat", "--no-pager"]
        args += ["--since", "@%d" % int(since)] if since else ["-n", "200"]
        return self._run("journalctl", *args, check=False).splitlines()


class ProcessService:
    """A detached process with a pid file, for devices without systemd (containers)
    and for the tests, where the 'device' is this machine and no service manager runs.
    No restart on failure: that is systemd's job."""

    def __init__(self, layout: Layout, config: dict) -> None:
        self.layout = layout
        self.pid_file = layout.root / "service.pid"
        self.log_file = layout.root / "service.log"
        self.exit_file = layout.root / "service.exit"
        self.argv_file = layout.root / "service.argv.json"

    def install(self, unit_text: str, argv: list) -> None:
        write_json_atomic(self.argv_file, {"argv": argv}, PRIVATE)

    def _pid(self) -> int | None:
        """The service's PID, only when the live process is provably the one we launched: same start
        time (field 22 of /proc/PID/stat) and command line as recorded at launch. A stale pid file
        (PID reused after a reboot) names someone else's process, which is never signalled."""
        try:
            recorded = json.loads(self.pid_file.read_text())
            pid = int(recorded["pid"])
            identity = process_identity(pid)
        except (OSError, ValueError, TypeError, KeyError):
            return None
        if identity is None or identity["state"] == "Z":
            return None
        if identity["start_time"] != recorded.get("start_time") or identity["cmdline"] != recorded.get("cmdline"):
            return None
        return pid

    def restart(self) -> float:
        self.stop()
        argv = read_json(self.argv_file, {}).get("argv")
        if not argv:
            raise AgentError("no service installed under %s; deploy with --service first" % self.layout.root)
        for path in (self.exit_file, self.log_file):
            if path.exists():
                path.unlink()
        started = time.time()
        log_fd = os.open(str(self.log_file), os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE)
        with os.fdopen(log_fd, "ab") as log, open(os.devnull, "rb") as null:
            env = dict(os.environ, PYTHONUNBUFFERED="1", **read_env_file(self.layout.env_file))
            command = [sys.executable, "-c", SUPERVISOR, str(self.exit_file)] + argv
            proc = subprocess.Popen(command, stdin=null, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=str(self.layout.root), env=env, start_new_session=True)
        # The start time is the fork's (unchanged by exec); the child exists until waited for, even if it exited.
        identity = process_identity(proc.pid)
        write_json_atomic(self.pid_file, {"pid": proc.pid, "start_time": identity and identity["start_time"],
                                          "cmdline": command})
        return started

    def stop(self) -> None:
        pid = self._pid()
        if pid is None:
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self._pid() is not None:
            if time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                deadline = time.monotonic() + 10
            time.sleep(0.05)

    def state(self) -> dict:
        pid = self._pid()
        if pid is not None:
            state, status, uptime = "active", None, time.time() - self.pid_file.stat().st_mtime
        else:
            uptime = None
            status = self.exit_file.read_text().strip() if self.exit_file.exists() else None
            state = "inactive" if status is None else ("exited" if status == "0" else "failed")
        return {"manager": "process", "pid": pid, "state": state, "exit_status": status, "uptime_s": uptime,
                "log": str(self.log_file)}

    def output(self, since: float | None) -> list:
        try:
            return self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return []


def process_identity(pid: int) -> dict | None:
    """{"state", "start_time", "cmdline"} of a live PID from /proc, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read().decode("utf-8", "replace").rstrip("\0").split("\0")
    except (OSError, IndexError):
        return None
    return {"state": fields[0], "start_time": int(fields[19]), "cmdline": cmdline}


MANAGERS: dict = {"systemd": SystemdService, "process": ProcessService}


def open_service(layout: Layout) -> "SystemdService | ProcessService | None":
    config = read_json(layout.service_file, {})
    manager = MANAGERS.get(config.get("manager", ""))
    return manager(layout, config) if manager else None


def last_result(lines: list) -> dict | None:
    """The newest `edgepipe run --json` result line (a JSON object with "top")."""
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "top" in obj:
                return obj
    return None


def last_message(lines: list) -> str:
    text = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("{")]
    return text[-1] if text else "no output"


def wait_healthy(service, started: float, timeout: float) -> dict:
    """Healthy = the service has not failed and printed a result since `started`."""
    deadline = time.monotonic() + timeout
    while True:
        lines = service.output(started)
        result, state = last_result(lines), service.state()
        if result is not None and state["state"] != "failed":
            return {"healthy": True, "state": state, "result": result}
        if result is None and state["state"] in ("failed", "exited", "inactive"):
            return {"healthy": False, "state": state,
                    "reason": "the service stopped (%s, exit status %s) before printing a result: %s"
                              % (state["state"], state.get("exit_status"), last_message(lines))}
        if time.monotonic() > deadline:
            return {"healthy": False, "state": state,
                    "reason": "no result within %gs; last output: %s" % (timeout, last_message(lines))}
        time.sleep(POLL_S)


def install_service(layout: Layout, config: dict):
    """Write the unit (or argv) for `config` and record it as the settings in effect."""
    argv = service_argv(config["python"], layout, config)
    service = MANAGERS[config["manager"]](layout, config)
    service.install(render_unit(layout.template.read_text(), layout, config, argv), argv)
    write_json_atomic(layout.service_file, config, PRIVATE)
    return service


def restore(layout: Layout, entry: dict, timeout: float) -> dict | None:
    """Run a release from the history again, with the service settings it had then."""
    layout.switch(entry["release"])
    if not entry.get("service"):
        return None
    service = install_service(layout, entry["service"])
    return wait_healthy(service, service.restart(), timeout)


