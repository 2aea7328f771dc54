"""The agent's command line: one command per call, one JSON answer on stdout (protocol.py).

An answer that does not fit its protocol shape is a bug of the agent, reported
as an error rather than sent; an unexpected failure is reported as
"device-side error: TYPE: message", a full disk as such, with exit status 1.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from . import protocol
from .collect import cmd_collect_delete, cmd_collect_list
from .files import read_json
from .layout import COLLECT_DIR, TEMPLATE_FILE, Layout
from .lock import PrefixLock
from .protocol import ENV_FILE, AgentError
from .releases import cmd_activate, cmd_commit, cmd_discard, cmd_prepare, cmd_rollback
from .report import device_report, edgepipe_python
from .services import MANAGERS, last_result, open_service


def cmd_status(args, layout: Layout) -> dict:
    service = open_service(layout)
    history, problem = layout.history_or_disk()
    return {
        "prefix": str(layout.root),
        "current": layout.current_release(),
        "state_error": problem and "%s; showing the releases on disk (the next deploy or rollback rewrites it)" % problem,
        "history": [entry["release"] for entry in history],
        "releases": [path.name for path in layout.release_dirs()],
        "service": service.state() if service else None,
        "service_config": read_json(layout.service_file, {}) or None,
        "verification": read_json(layout.verifications_file, {}).get(layout.current_release() or ""),
        "last_result": last_result(service.output(None)) if service else None,
    }


def cmd_stop(args, layout: Layout) -> dict:
    service = open_service(layout)
    if service is not None:
        service.stop()
    return {"stopped": service is not None}


def cmd_lock(args, layout: Layout) -> None:
    """Hold the prefix lock until stdin closes (the deploy ended, or its connection died)."""
    print(json.dumps(PrefixLock(layout).acquire()), flush=True)
    while sys.stdin.buffer.read(1 << 16):
        pass
    print(json.dumps({"released": True}), flush=True)


def cmd_report(args, layout: Layout) -> dict:
    """The device report alone, changing nothing (for `edgepipe deploy setup`)."""
    return {"prefix": str(layout.root), "report": device_report(layout, edgepipe_python(layout, args.python))}


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
    for name, func in ((protocol.PREPARE, cmd_prepare), (protocol.COMMIT, cmd_commit)):
        p = sub.add_parser(name)
        p.add_argument("release")
        p.add_argument("sha")
        p.set_defaults(func=func)
    p = sub.add_parser(protocol.ACTIVATE)
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
    p.add_argument("--serve-public", action="store_true", help="run --serve-public")
    p.add_argument("--roi", action="append", help="run --roi NAME=x,y,w,h (repeatable)")
    p.add_argument("--env-upload", help="an uploaded environment file of secrets, moved to PREFIX/%s" % ENV_FILE)
    p.add_argument("--collect", action="store_true", help="the service keeps unsure frames in PREFIX/%s" % COLLECT_DIR)
    p.add_argument("--health-timeout", type=float, default=60.0)
    p.add_argument("--verify", choices=("cpu", "edgetpu", "all"),
                   help="run `edgepipe verify --accelerator X` on the release before switching; a failure discards it")
    p.set_defaults(func=cmd_activate)
    p = sub.add_parser(protocol.ROLLBACK)
    p.add_argument("--health-timeout", type=float, default=60.0)
    p.set_defaults(func=cmd_rollback)
    sub.add_parser(protocol.STATUS).set_defaults(func=cmd_status)
    sub.add_parser(protocol.STOP).set_defaults(func=cmd_stop)
    p = sub.add_parser(protocol.DISCARD)
    p.add_argument("release")
    p.set_defaults(func=cmd_discard)
    sub.add_parser(protocol.LOCK).set_defaults(func=cmd_lock)
    sub.add_parser(protocol.REPORT).set_defaults(func=cmd_report)
    for name, func in ((protocol.COLLECT_LIST, cmd_collect_list), (protocol.COLLECT_DELETE, cmd_collect_delete)):
        p = sub.add_parser(name)
        p.add_argument("--dir", help="the collect folder (default PREFIX/%s)" % COLLECT_DIR)
        p.set_defaults(func=func)
    p.add_argument("pairs", nargs="*", metavar="STEM:JPG_SHA256:JSON_SHA256")  # collect-delete's
    p = sub.add_parser(protocol.EDGEPIPE)
    p.add_argument("edgepipe_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_edgepipe)
    return parser


def checked(command: str, answer: dict) -> dict:
    """The answer, when it fits the protocol's shape for `command` (the workstation refuses it otherwise)."""
    wrong = protocol.wrong_field(answer, protocol.ANSWERS[command])
    if wrong:
        raise AgentError("device-side error: the %s answer has %s = %r, not the protocol's shape"
                         % (command, wrong[0], wrong[1]))
    return answer


def main(argv: list | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        layout = Layout(args.prefix)
        # ssh starts us in $HOME, where the default prefix ~/edgepipe would shadow the edgepipe package.
        os.chdir("/")
        lock = PrefixLock(layout)
        if args.command in protocol.LOCKED_COMMANDS:
            lock.check(args.lock) if args.lock else lock.acquire()
        answer = args.func(args, layout)
        if answer is not None:  # `lock` and `edgepipe` print for themselves
            print(json.dumps(checked(args.command, answer)))
        return 0
    except AgentError as exc:
        print(json.dumps(exc.answer()))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(json.dumps({"error": "the device's disk is full under %s (%s); free some space and try again"
                                       % (args.prefix, exc), "disk_full": True}))
        else:
            print(json.dumps({"error": "device-side error: %s: %s" % (type(exc).__name__, exc)}))
    except Exception as exc:  # noqa: BLE001 - the workstation must learn what failed here, in one line
        print(json.dumps({"error": "device-side error: %s: %s" % (type(exc).__name__, exc)}))
    return 1
