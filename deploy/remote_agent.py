"""edgepipe's device-side agent: everything `edgepipe deploy` does ON the device.

Why one fixed script instead of remote shell commands: the workstation never
builds a shell string from user input. `edgepipe deploy` sends this file on
ssh's stdin to `python3 -` and passes its arguments quoted with shlex.quote;
Ansible runs the same file with its `script` module. So single-host deploys
and fleets share one implementation of verify/switch/service/health/rollback,
and the steps that must be atomic on the device (switch, health check,
rollback) run there even when the SSH connection drops halfway.

Why stdlib only: it runs before we know whether edgepipe (or numpy) is
installed on the device, and with whatever python3 the OS has (3.7+), so it
can report what is missing instead of failing to import.

Every subcommand prints ONE JSON object on stdout and exits 0, or prints
{"error": "one line"} (plus any partial result) and exits 1; an unexpected
failure of the agent itself is reported as "device-side error: TYPE: message".

One deploy at a time per prefix: `lock` holds an flock on PREFIX/.deploy.lock
for as long as the workstation keeps its stdin open (a dead workstation or
connection closes it, so the lock never outlives its deploy), and the commands
that change the device run either under that holder's token or take the lock
themselves for their own duration.

Layout under PREFIX:
    releases/<id>/          verified bundles (<id> = first 16 hex of sha256(bundle.json))
    releases/.<id>.partial  an upload in progress (removed by the next `prepare`)
    current -> releases/<id>   the running release (relative symlink, switched atomically)
    deploy-state.json       {"history": [{"release": id, "service": config}, ...]}, oldest first:
                            what rollback goes back to, with the service settings it ran with
    verifications.json      {id: the last `edgepipe verify` result of that release on this device}
    service.json            the service settings in effect (manager, source, accelerator, python)
    .deploy.lock            the prefix lock (holder's token and start time)
Files holding the service's arguments (which may carry stream credentials) are 0600;
state files and the `current` switch are fsynced with their directory.
    edgepipe.service.in     the unit template (sent by `edgepipe deploy`, copied by Ansible)
    collect/                frames kept by `edgepipe run --collect` (the service's with deploy --collect):
                            <stem>.jpg + <stem>.json pairs, listed and deleted by `deploy collect`
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import glob
import hashlib
import re
import secrets
import stat
import json
import os
import platform
import pwd
import shutil
import signal
import string
import subprocess
import sys
import time
from pathlib import Path

RELEASES = "releases"
CURRENT = "current"
STATE_FILE = "deploy-state.json"
VERIFICATIONS_FILE = "verifications.json"
VERIFY_TIMEOUT_S = 600  # the golden set takes seconds; an Edge TPU probe that hangs is killed by verify itself
SERVICE_FILE = "service.json"
ENV_FILE = "service.env"  # the service's secrets (MQTT password, serve token), mode 0600
SECRET_NAMES = ("EDGEPIPE_MQTT_PASSWORD", "EDGEPIPE_SERVE_TOKEN")
TEMPLATE_FILE = "edgepipe.service.in"
PARTIAL_SUFFIX = ".partial"
MANIFEST = "bundle.json"
SERVICE_NAME = "edgepipe"
LOCK_FILE = ".deploy.lock"
PRIVATE = 0o600
# A bundle member: a plain relative path (same rule as edgepipe.device.safefile, which this script cannot import).
NAME_PART = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*\Z")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
COLLECT_DIR = "collect"
# Coral USB Accelerator before (1a6e:089a) and after (18d1:9302) its firmware is loaded.
CORAL_USB_IDS = ("1a6e:089a", "18d1:9302")
POLL_S = 0.25

# Asks the Python that will run the service what it can import: in that
# interpreter (the venv), or in this process when it is the same one.
EDGEPIPE_PROBE = """
import importlib.util, sys
out = {"python": sys.version.split()[0]}
try:
    import edgepipe, edgepipe.device
    out["version"] = edgepipe.__version__
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, exc)
out["modules"] = {m: importlib.util.find_spec(m) is not None
                  for m in ("numpy", "cv2", "ai_edge_litert", "tflite_runtime", "picamera2")}
"""

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


class AgentError(Exception):
    """A failure reported to the workstation as one line."""

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.details = details


def plain_name(name) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 255 and all(NAME_PART.match(p) for p in name.split("/"))


def sha256_member(root: Path, name: str) -> str:
    """edgepipe.device.safefile's check, again (this script must run where edgepipe is not installed):
    a regular file inside root, no symlink at any component, hashed in constant memory."""
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

    def release(self, release_id: str) -> Path:
        return self.releases / release_id

    def partial(self, release_id: str) -> Path:
        return self.releases / (".%s%s" % (release_id, PARTIAL_SUFFIX))

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
            on_disk = sorted((p for p in self.releases.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: p.stat().st_mtime) if self.releases.is_dir() else []
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


class PrefixLock:
    """One deploy at a time per prefix: an flock on PREFIX/.deploy.lock, released when its holder exits."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.path = layout.root / LOCK_FILE
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


def verify_release(directory: Path, expected_sha: str | None = None) -> None:
    """Check every file against the manifest, on the device, after the copy.

    The device may not have edgepipe yet (that is what `prepare` reports), so
    this cannot use edgepipe.device.bundle; it checks the same `files` map.
    """
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise AgentError("%s has no %s" % (directory, MANIFEST))
    if expected_sha and sha256_member(directory, MANIFEST) != expected_sha:
        raise AgentError("%s does not match the bundle's sha256 (corrupted in transfer)" % MANIFEST)
    files = read_json(manifest_path, {}).get("files")
    if not isinstance(files, dict) or not files:
        raise AgentError("%s lists no files" % MANIFEST)
    for name, expected in sorted(files.items()):
        if sha256_member(directory, name) != expected:
            raise AgentError("%s does not match its sha256 on the device (corrupted in transfer or on disk)" % name)
    listed = set(files) | {MANIFEST}
    for dirpath, dirnames, filenames in os.walk(str(directory)):
        for entry in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            name = os.path.relpath(os.path.join(dirpath, entry), str(directory)).replace(os.sep, "/")
            if name not in listed:
                raise AgentError("%s is not listed in %s; a release holds exactly the manifest's files" % (name, MANIFEST))


# ---------------------------------------------------------------- verification

def verification_summary(report: dict, accelerator: str, reason: str) -> dict:
    """What status shows of an `edgepipe verify --json` report: per model, the numbers that decide."""
    checks = []
    for check in report.get("checks") or []:
        numbers = check.get("comparison") or {}
        checks.append({"accelerator": check.get("accelerator"), "status": check.get("status"),
                       "top1_agreement": numbers.get("top1_agreement"), "agreed": numbers.get("agreed"),
                       "n": numbers.get("n"), "max_abs_diff": numbers.get("max_abs_diff"),
                       "min_agreement": check.get("min_agreement"), "reason": check.get("reason") or ""})
    return {"passed": bool(report.get("passed")) and not reason, "accelerator": accelerator,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "checks": checks, "reason": reason}


def verify_on_device(layout: Layout, release_id: str, accelerator: str, python: str) -> dict:
    """`edgepipe verify` of a release with the device's own edgepipe, recorded in verifications.json."""
    argv = [python, "-m", "edgepipe", "verify", str(layout.release(release_id)), "--accelerator", accelerator, "--json"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=VERIFY_TIMEOUT_S, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as exc:
        report, reason = {}, "edgepipe verify did not finish: %s" % exc
    else:
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            report = {}
        last = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        reason = "" if proc.returncode == 0 else last.split(": error: ", 1)[-1]
        if proc.returncode == 2 and "invalid choice: 'verify'" in proc.stderr:
            reason = "edgepipe on the device has no `verify` command (it is older): upgrade it there, or use --no-verify"
    summary = verification_summary(report if isinstance(report, dict) else {}, accelerator, reason)
    verifications = read_json(layout.verifications_file, {})
    verifications[release_id] = summary
    write_json_atomic(layout.verifications_file, verifications)
    return summary


# ---------------------------------------------------------------- device report

def probe_edgepipe(python: str) -> dict:
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # not realpath: a venv links to its base
        namespace = {}
        exec(EDGEPIPE_PROBE, namespace)  # a fixed string of this file, not input
        return namespace["out"]
    code = EDGEPIPE_PROBE + "import json\nprint(json.dumps(out))\n"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": "cannot run %s: %s" % (python, exc)}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "%s failed: %s" % (python, (proc.stderr.strip().splitlines() or ["no output"])[-1])}


def coral_usb_devices() -> list:
    found = []
    for device in glob.glob("/sys/bus/usb/devices/*"):
        try:
            ident = "%s:%s" % (Path(device, "idVendor").read_text().strip(), Path(device, "idProduct").read_text().strip())
        except OSError:
            continue
        if ident in CORAL_USB_IDS:
            found.append(ident)
    return sorted(found)


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def libcamera_present() -> bool:
    return bool(
        shutil.which("rpicam-hello") or shutil.which("libcamera-hello")
        or glob.glob("/usr/lib/*/libcamera.so*") or glob.glob("/usr/lib/libcamera.so*")
    )


def linger_enabled() -> bool | None:
    """Whether this user's systemd manager outlives their SSH sessions (and starts at boot)."""
    try:
        proc = subprocess.run(["loginctl", "show-user", pwd.getpwuid(os.geteuid()).pw_name, "-p", "Linger",
                               "--value"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired, KeyError):
        return None
    return {"yes": True, "no": False}.get(proc.stdout.strip())


def existing_ancestor(path: Path) -> Path:
    """PREFIX, or the directory it will be made in (a fresh device has no PREFIX yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def device_report(layout: Layout, python: str) -> dict:
    edgepipe = probe_edgepipe(python)
    systemd = bool(shutil.which("systemctl")) and os.path.isdir("/run/systemd/system")
    return {
        "hostname": platform.node(),
        "os": os_name(),
        "machine": platform.machine(),
        "agent_python": platform.python_version(),
        "python_path": python,
        "edgepipe": edgepipe,
        "camera": {
            "video_devices": sorted(glob.glob("/dev/video*")),
            "libcamera": libcamera_present(),
            "picamera2": bool(edgepipe.get("modules", {}).get("picamera2")),
        },
        "edgetpu": {"usb": coral_usb_devices(), "pcie": os.path.exists("/dev/apex_0")},
        "disk_free": shutil.disk_usage(str(existing_ancestor(layout.root))).free,
        "systemd": systemd,
        "linger": linger_enabled() if systemd else None,
    }


def edgepipe_python(layout: Layout, requested: str | None) -> str:
    """The interpreter that runs edgepipe: --python, else PREFIX/venv (pi-setup.sh), else this one."""
    if requested:
        found = shutil.which(os.path.expanduser(requested))
        if not found:
            raise AgentError("remote python %s does not exist on the device" % requested)
        return os.path.abspath(found)
    venv = layout.root / "venv" / "bin" / "python"
    return str(venv) if os.access(str(venv), os.X_OK) else sys.executable


# ---------------------------------------------------------------- services

def systemd_quote(arg: str) -> str:
    """One ExecStart argument: systemd expands % specifiers and $VARS, splits on spaces."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and all(c.isalnum() or c in "_@%+=:,./-" for c in text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def service_argv(python: str, layout: Layout, config: dict) -> list:
    argv = [python, "-m", "edgepipe", "run", str(layout.current), "--json"]
    if config.get("source"):
        argv += ["--source", config["source"]]
    for key in ("mqtt", "serve"):
        if config.get(key):
            argv += ["--" + key, config[key]]
    for region in config.get("roi") or []:
        argv += ["--roi", region]
    if config.get("collect"):
        argv += ["--collect", str(layout.root / COLLECT_DIR)]
    return argv + ["--accelerator", config.get("accelerator") or "auto"]


def read_env_file(path: Path) -> dict:
    """NAME=value lines of the secrets file; only the names edgepipe reads are accepted."""
    env = {}
    try:
        text = path.read_text()
    except OSError:
        return env
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or name not in SECRET_NAMES:
            raise AgentError("%s: unexpected line (only %s)" % (path, ", ".join(SECRET_NAMES)))
        env[name] = value
    return env


def install_env_file(layout: Layout, uploaded: str | None) -> None:
    """Move the uploaded secrets into PREFIX/service.env (0600), or remove a stale one when none came."""
    if uploaded is None:
        if layout.env_file.exists():
            layout.env_file.unlink()
        return
    path = Path(uploaded)
    if path.parent != layout.root:
        raise AgentError("the environment file must be uploaded into %s" % layout.root)
    read_env_file(path)  # validated before it replaces anything
    os.chmod(str(path), 0o600)
    os.replace(str(path), str(layout.env_file))


def render_unit(template: str, layout: Layout, config: dict, argv: list) -> str:
    """The unit text; a value with a control character (a newline would start a new directive) is refused."""
    for value in list(argv) + [str(layout.root), str(config.get("user") or "")]:
        if CONTROL.search(value):
            raise AgentError("refusing a systemd unit value with a control character: %r" % value)
    system = config.get("scope") == "system"
    return string.Template(template).substitute(
        prefix=str(layout.root),
        exec_start=" ".join(systemd_quote(a) for a in argv),
        user_line="User=%s" % config["user"] if system else "",
        wanted_by="multi-user.target" if system else "default.target",
    )


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


MANAGERS = {"systemd": SystemdService, "process": ProcessService}


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


# ---------------------------------------------------------------- subcommands

def prune(layout: Layout, keep: int) -> list:
    """Keep the newest `keep` releases of the history (always including current); remove the rest."""
    history = layout.history_or_disk()[0][-keep:]
    current = layout.current_release()
    kept = [entry["release"] for entry in history]
    if current and current not in kept:
        kept.insert(0, current)
    layout.save_history(history)
    removed = []
    for path in sorted(layout.releases.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and path.name not in kept:
            shutil.rmtree(str(path))
            removed.append(path.name)
    verifications = read_json(layout.verifications_file, {})
    if any(release not in kept for release in verifications):
        write_json_atomic(layout.verifications_file, {k: v for k, v in verifications.items() if k in kept})
    return removed


def discard_unverified(layout: Layout, release_id: str, verification: dict) -> str:
    """A release that failed verification never runs: remove it unless it is current or in the history."""
    previous = layout.current_release()
    if release_id != previous and release_id not in [e["release"] for e in layout.history()]:
        shutil.rmtree(str(layout.release(release_id)), ignore_errors=True)
        verifications = read_json(layout.verifications_file, {})
        verifications.pop(release_id, None)
        write_json_atomic(layout.verifications_file, verifications)
        kept = "the release was discarded"
    else:
        kept = "the release stays on the device but was not switched to"
    raise AgentError("release %s failed verification on the device: %s; %s and current stays %s"
                     % (release_id, verification["reason"] or "see the checks", kept, previous or "unset"),
                     verification=verification, release=release_id, previous=previous)


def cmd_prepare(args, layout: Layout) -> dict:
    layout.releases.mkdir(parents=True, exist_ok=True)
    stale = [p for p in layout.releases.iterdir() if p.name.endswith(PARTIAL_SUFFIX)]
    for path in stale:
        shutil.rmtree(str(path), ignore_errors=True)
    have = layout.release(args.release).is_dir()
    if have:
        try:
            verify_release(layout.release(args.release), args.sha)
        except AgentError:  # damaged on the device: upload again; commit replaces it
            have = False
    return {
        "prefix": str(layout.root),
        "partial": str(layout.partial(args.release)),
        "release_dir": str(layout.release(args.release)),
        "have_release": have,
        "removed_partials": [p.name for p in stale],
        "current": layout.current_release(),
        "report": device_report(layout, edgepipe_python(layout, args.python)),
    }


def commit_upload(layout: Layout, release_id: str, sha: str) -> dict:
    """Verify an upload on the device and only then make it a release."""
    partial, release = layout.partial(release_id), layout.release(release_id)
    try:
        verify_release(partial, sha)
    except AgentError as exc:
        shutil.rmtree(str(partial), ignore_errors=True)
        raise AgentError("%s; the upload was discarded and the device keeps its current release" % exc)
    if release.is_dir():  # a damaged copy (prepare found it so): swap in the verified one
        damaged = layout.releases / (".%s.damaged" % release_id)
        shutil.rmtree(str(damaged), ignore_errors=True)
        os.rename(str(release), str(damaged))
        os.rename(str(partial), str(release))
        shutil.rmtree(str(damaged))
    else:
        os.rename(str(partial), str(release))
    return {"release": release_id, "release_dir": str(release), "verified": True}


def cmd_commit(args, layout: Layout) -> dict:
    return commit_upload(layout, args.release, args.sha)


def cmd_activate(args, layout: Layout) -> dict:
    if args.sha and layout.partial(args.release).is_dir():  # one round trip less for a fresh upload
        commit_upload(layout, args.release, args.sha)
    verification = None
    if args.verify:
        verification = verify_on_device(layout, args.release, args.verify, edgepipe_python(layout, args.python))
        if not verification["passed"]:
            discard_unverified(layout, args.release, verification)
    if args.template_text:
        layout.template.write_text(args.template_text)
    previous = layout.current_release()
    original = layout.history_or_disk()[0]  # a damaged state file is rewritten from what is on disk
    previous_entry = next((e for e in reversed(original) if e["release"] == previous), None)
    history = [e for e in original if e["release"] != args.release]
    layout.switch(args.release)
    result = {"release": args.release, "previous": previous, "health": None, "rolled_back": False,
              "verification": verification}
    if args.manager == "none":
        layout.save_history(history + [{"release": args.release, "service": read_json(layout.service_file, {}) or None}])
        result["removed"] = prune(layout, args.keep)
        return result
    config = {"manager": args.manager, "scope": args.scope, "source": args.source,
              "accelerator": args.accelerator, "collect": args.collect, "python": edgepipe_python(layout, args.python),
              "user": args.user or os.environ.get("USER", "")}
    if args.mqtt:
        config["mqtt"] = args.mqtt
    if args.serve:
        config["serve"] = args.serve
    if args.roi:
        config["roi"] = args.roi
    layout.save_history(history + [{"release": args.release, "service": config}])
    install_env_file(layout, args.env_upload)
    service = install_service(layout, config)
    result["health"] = health = wait_healthy(service, service.restart(), args.health_timeout)
    if health["healthy"]:
        result["removed"] = prune(layout, args.keep)
        return result
    layout.save_history(original)
    if previous_entry and layout.release(previous).is_dir():
        result["previous_health"] = restore(layout, previous_entry, args.health_timeout)
        if result["previous_health"] is None:  # it ran without a service: do not leave the failing one
            service.stop()
        back = ("restored %s with its previous service settings" if previous == args.release
                else "rolled back to %s") % previous
    else:
        service.stop()
        layout.current.unlink()
        back = "service stopped (no previous release to go back to)"
    result["rolled_back"] = True
    result["removed"] = prune(layout, args.keep)
    raise AgentError("release %s failed its health check (%s); %s" % (args.release, health["reason"], back),
                     **result)


def cmd_rollback(args, layout: Layout) -> dict:
    history = layout.history_or_disk()[0]
    current = layout.current_release()
    releases = [e["release"] for e in history]
    if current in releases:
        history = history[: releases.index(current)]
    history = [e for e in history if layout.release(e["release"]).is_dir()]
    if not history:
        raise AgentError("no previous release to roll back to under %s" % layout.root)
    target = history[-1]
    layout.save_history(history)
    result = {"release": target["release"], "previous": current,
              "health": restore(layout, target, args.health_timeout)}
    if result["health"] and not result["health"]["healthy"]:
        raise AgentError("rolled back to %s but it failed its health check: %s"
                         % (target["release"], result["health"]["reason"]), **result)
    return result


def cmd_status(args, layout: Layout) -> dict:
    service = open_service(layout)
    state = service.state() if service else None
    releases = sorted(p.name for p in layout.releases.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if layout.releases.is_dir() else []
    history, problem = layout.history_or_disk()
    return {
        "prefix": str(layout.root),
        "current": layout.current_release(),
        "state_error": problem and "%s; showing the releases on disk (the next deploy or rollback rewrites it)" % problem,
        "history": [entry["release"] for entry in history],
        "releases": releases,
        "service": state,
        "service_config": read_json(layout.service_file, {}) or None,
        "verification": read_json(layout.verifications_file, {}).get(layout.current_release() or ""),
        "last_result": last_result(service.output(None)) if service else None,
    }


def cmd_discard(args, layout: Layout) -> dict:
    """Remove the partial upload of a release (after a failed transfer): nothing half-copied stays."""
    partial = layout.partial(args.release)
    existed = partial.exists()
    shutil.rmtree(str(partial), ignore_errors=True)
    return {"discarded": existed, "disk_free": shutil.disk_usage(str(layout.root)).free}


def cmd_lock(args, layout: Layout) -> None:
    """Hold the prefix lock until stdin closes (the deploy ended, or its connection died)."""
    lock = PrefixLock(layout)
    print(json.dumps(lock.acquire()), flush=True)
    while sys.stdin.buffer.read(1 << 16):
        pass
    print(json.dumps({"released": True}), flush=True)


def cmd_report(args, layout: Layout) -> dict:
    """The device report alone, changing nothing (for `edgepipe deploy setup`)."""
    return {"prefix": str(layout.root), "report": device_report(layout, edgepipe_python(layout, args.python))}


def cmd_stop(args, layout: Layout) -> dict:
    service = open_service(layout)
    if service is not None:
        service.stop()
    return {"stopped": service is not None}


def collect_dir(args, layout: Layout) -> Path:
    return Path(os.path.expanduser(args.dir)).absolute() if args.dir else layout.root / COLLECT_DIR


def collected_sha(directory: Path, name: str) -> str | None:
    """The sha256 of a collected file: a plain name, a regular file, no symlink; None otherwise."""
    try:
        return sha256_member(directory, name)
    except AgentError:
        return None


def cmd_collect_list(args, layout: Layout) -> dict:
    """The complete pairs (a sidecar is written after its JPEG) with their hashes, oldest first."""
    directory = collect_dir(args, layout)
    pairs = []
    if directory.is_dir():
        for sidecar in sorted(directory.glob("*.json")):
            image = sidecar.with_suffix(".jpg")
            jpg_sha, json_sha = collected_sha(directory, image.name), collected_sha(directory, sidecar.name)
            if jpg_sha is None or json_sha is None:  # no JPEG yet, a hidden temp file, a symlink: not a pair
                continue
            pairs.append({"stem": sidecar.stem, "jpg": jpg_sha, "json": json_sha,
                          "bytes": image.stat().st_size + sidecar.stat().st_size})
    return {"dir": str(directory), "pairs": pairs}


def cmd_collect_delete(args, layout: Layout) -> dict:
    """Delete the pairs named as STEM:JPG_SHA:JSON_SHA, each only if both files still have those hashes."""
    directory = collect_dir(args, layout)
    deleted, kept = [], []
    for spec in args.pairs:
        stem, jpg_sha, json_sha = spec.rsplit(":", 2)
        image, sidecar = directory / (stem + ".jpg"), directory / (stem + ".json")
        if stem.startswith(".") or collected_sha(directory, image.name) != jpg_sha \
                or collected_sha(directory, sidecar.name) != json_sha:
            kept.append(stem)
            continue
        sidecar.unlink()  # first: a JPEG without a sidecar is never listed again
        image.unlink()
        deleted.append(stem)
    return {"dir": str(directory), "deleted": deleted, "kept": kept}


def cmd_edgepipe(args, layout: Layout) -> None:
    """Run `python -m edgepipe ARGS` in the device's edgepipe Python, passing its output and exit status."""
    python = edgepipe_python(layout, args.python)
    sys.stdout.flush()
    os.execv(python, [python, "-m", "edgepipe"] + args.edgepipe_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgepipe-agent")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--python", help="the Python that has edgepipe (default: PREFIX/venv, else this one)")
    parser.add_argument("--lock", metavar="TOKEN", help="run under the prefix lock held by `lock` with this token "
                                                        "(default: take the lock for this command)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("release")
    p.add_argument("sha")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("commit")
    p.add_argument("release")
    p.add_argument("sha")
    p.set_defaults(func=cmd_commit)
    p = sub.add_parser("activate")
    p.add_argument("release")
    p.add_argument("--sha", help="verify and commit the upload of this bundle first")
    p.add_argument("--template-text", help="the unit template, stored as PREFIX/%s first" % TEMPLATE_FILE)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--manager", choices=sorted(MANAGERS) + ["none"], default="systemd")
    p.add_argument("--scope", choices=("user", "system"), default="user")
    p.add_argument("--user", help="account the system unit runs as")
    p.add_argument("--source")
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--mqtt", help="run --mqtt URL (no password: that comes in the environment file)")
    p.add_argument("--serve", help="run --serve HOST:PORT")
    p.add_argument("--roi", action="append", help="run --roi NAME=x,y,w,h (repeatable)")
    p.add_argument("--env-upload", help="an uploaded environment file of secrets, moved to PREFIX/%s" % ENV_FILE)
    p.add_argument("--collect", action="store_true", help="the service keeps unsure frames in PREFIX/%s" % COLLECT_DIR)
    p.add_argument("--health-timeout", type=float, default=60.0)
    p.add_argument("--verify", choices=("cpu", "edgetpu", "all"),
                   help="run `edgepipe verify --accelerator X` on the release before switching; a failure discards it")
    p.set_defaults(func=cmd_activate)
    p = sub.add_parser("rollback")
    p.add_argument("--health-timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_rollback)
    sub.add_parser("status").set_defaults(func=cmd_status)
    sub.add_parser("stop").set_defaults(func=cmd_stop)
    p = sub.add_parser("discard")
    p.add_argument("release")
    p.set_defaults(func=cmd_discard)
    sub.add_parser("lock").set_defaults(func=cmd_lock)
    sub.add_parser("report").set_defaults(func=cmd_report)
    p = sub.add_parser("collect-list")
    p.add_argument("--dir", help="the collect folder (default PREFIX/%s)" % COLLECT_DIR)
    p.set_defaults(func=cmd_collect_list)
    p = sub.add_parser("collect-delete")
    p.add_argument("--dir", help="the collect folder (default PREFIX/%s)" % COLLECT_DIR)
    p.add_argument("pairs", nargs="*", metavar="STEM:JPG_SHA256:JSON_SHA256")
    p.set_defaults(func=cmd_collect_delete)
    p = sub.add_parser("edgepipe")
    p.add_argument("edgepipe_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_edgepipe)
    return parser


# The commands that change the device: they run under the prefix lock.
LOCKED_COMMANDS = ("prepare", "commit", "activate", "rollback", "discard", "stop")


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        layout = Layout(args.prefix)
        # ssh starts us in $HOME, where the default prefix ~/edgepipe would shadow the edgepipe package.
        os.chdir("/")
        lock = PrefixLock(layout)
        if args.command in LOCKED_COMMANDS:
            lock.check(args.lock) if args.lock else lock.acquire()
        print(json.dumps(args.func(args, layout)))
        return 0
    except AgentError as exc:
        print(json.dumps(dict(exc.details, error=str(exc))))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(json.dumps({"error": "the device's disk is full under %s (%s); free some space and try again"
                                       % (args.prefix, exc), "disk_full": True}))
        else:
            print(json.dumps({"error": "device-side error: %s: %s" % (type(exc).__name__, exc)}))
    except Exception as exc:  # noqa: BLE001 - the workstation must learn what failed here, in one line
        print(json.dumps({"error": "device-side error: %s: %s" % (type(exc).__name__, exc)}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
