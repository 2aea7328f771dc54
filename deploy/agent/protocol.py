"""What the workstation and the device agent say to each other, written once for both sides.

The agent (this package, on the device) and the workstation (edgepipe.deploy)
import this module: the command names, the shape of each command's answer
(field -> allowed types), the error answer, the collected-pair spec and the
summary of an `edgepipe verify` run. The agent checks its own answer against
the shape before printing it; the workstation checks every answer again before
using it, because it is data from another machine.
"""

from __future__ import annotations

import json
import time

PREPARE = "prepare"
COMMIT = "commit"
ACTIVATE = "activate"
ROLLBACK = "rollback"
STATUS = "status"
STOP = "stop"
DISCARD = "discard"
LOCK = "lock"
REPORT = "report"
COLLECT_LIST = "collect-list"
COLLECT_DELETE = "collect-delete"
EDGEPIPE = "edgepipe"  # `python -m edgepipe ARGS` on the device: its own output, no JSON answer

# The commands that change the device: they run under the prefix lock.
LOCKED_COMMANDS = (PREPARE, COMMIT, ACTIVATE, ROLLBACK, DISCARD, STOP)

ENV_FILE = "service.env"  # under PREFIX: the service's secrets, mode 0600
SECRET_NAMES = ("EDGEPIPE_MQTT_PASSWORD", "EDGEPIPE_SERVE_TOKEN")  # the only names it may hold

NONE = type(None)
# `edgepipe verify` on the device, summarised (verify.py records it; status and bench show it).
VERIFICATION = {"passed": bool, "accelerator": str, "checked_at": str, "checks": list, "reason": str}
# The device report (report.py): what the workstation judges before anything changes.
DEVICE_REPORT = {"hostname": str, "os": str, "machine": str, "agent_python": str, "python_path": str,
                 "edgepipe": dict, "camera": dict, "edgetpu": dict, "disk_free": int, "systemd": bool,
                 "linger": (bool, NONE)}
_ROLLBACK = {"release": str, "previous": (str, NONE), "health": (dict, NONE)}
# Each command's answer on success: field -> allowed types, or a nested shape (a dict).
ANSWERS: dict = {
    PREPARE: {"prefix": str, "partial": str, "release_dir": str, "have_release": bool, "removed_partials": list,
              "current": (str, NONE), "report": DEVICE_REPORT},
    COMMIT: {"release": str, "release_dir": str, "verified": bool},
    ACTIVATE: dict(_ROLLBACK, rolled_back=bool, verification=(dict, NONE), removed=list,
                   imx500={"packaged": bool, "reason": str}),
    ROLLBACK: _ROLLBACK,
    STATUS: {"prefix": str, "current": (str, NONE), "state_error": (str, NONE), "history": list, "releases": list,
             "service": (dict, NONE), "service_config": (dict, NONE), "verification": (dict, NONE),
             "last_result": (dict, NONE)},
    STOP: {"stopped": bool},
    DISCARD: {"discarded": bool, "disk_free": int},
    LOCK: {"token": str, "since": str, "pid": int},
    REPORT: {"prefix": str, "report": DEVICE_REPORT},
    COLLECT_LIST: {"dir": str, "pairs": list},
    COLLECT_DELETE: {"dir": str, "deleted": list, "kept": list},
}
COMMANDS = tuple(ANSWERS) + (EDGEPIPE,)
# One entry of COLLECT_LIST's "pairs": a stem, each file's sha256 and size in bytes.
COLLECTED_PAIR = {"stem": str, "jpg": str, "json": str, "jpg_bytes": int, "json_bytes": int}


def wrong_field(answer: dict, shape: dict, path: str = "") -> tuple | None:
    """(dotted field name, its value) of the first field of `answer` that does not fit `shape`; None if all fit.

    A bool is not an int here (JSON's true is no size), and an answer that is not an object is wrong whole."""
    if not isinstance(answer, dict):
        return path.rstrip(".") or "(answer)", answer
    for key, kind in shape.items():
        value = answer.get(key)
        if kind is int and isinstance(value, bool):
            return path + key, value
        if isinstance(kind, dict):
            if not isinstance(value, dict):
                return path + key, value
            inner = wrong_field(value, kind, path + key + ".")
            if inner:
                return inner
        elif not isinstance(value, kind):
            return path + key, value
    return None


class AgentError(Exception):
    """A failure the agent reports as one line: {"error": message, **details} (details: what it did)."""

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.details = details

    def answer(self) -> dict:
        return dict(self.details, error=str(self))


def pair_spec(stem: str, jpg_sha: str, json_sha: str) -> str:
    """A collected pair as `collect-delete` takes it: deleted only if both files still have these hashes."""
    return "%s:%s:%s" % (stem, jpg_sha, json_sha)


def parse_pair_spec(spec: str) -> tuple:
    """(stem, jpg_sha, json_sha) of a pair_spec; AgentError for anything else."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3:
        raise AgentError("%r is not STEM:JPG_SHA256:JSON_SHA256" % spec)
    return tuple(parts)


def verification_summary(report: dict, accelerator: str, reason: str) -> dict:
    """What status shows of an `edgepipe verify --json` report: per model, the numbers that decide."""
    checks = []
    for check in report.get("checks") or []:
        numbers = check.get("comparison") or {}
        checks.append({"accelerator": check.get("accelerator"), "status": check.get("status"),
                       "top1_agreement": numbers.get("top1_agreement"), "measure": numbers.get("measure"),
                       "agreed": numbers.get("agreed"),
                       "n": numbers.get("n"), "max_abs_diff": numbers.get("max_abs_diff"),
                       "min_agreement": check.get("min_agreement"), "reason": check.get("reason") or ""})
    return {"passed": bool(report.get("passed")) and not reason, "accelerator": accelerator,
            "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "checks": checks, "reason": reason}


def summarise_verify_run(returncode: int, stdout: str, stderr: str, accelerator: str) -> dict:
    """The verification summary of one finished `edgepipe verify --json` process on the device."""
    try:
        report = json.loads(stdout)
    except ValueError:
        report = {}
    last = (stderr.strip().splitlines() or ["exit status %d" % returncode])[-1]
    reason = "" if returncode == 0 else last.split(": error: ", 1)[-1]
    if returncode == 2 and "invalid choice: 'verify'" in stderr:
        reason = "edgepipe on the device has no `verify` command (it is older): upgrade it there, or use --no-verify"
    return verification_summary(report if isinstance(report, dict) else {}, accelerator, reason)
