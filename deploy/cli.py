"""`edgepipe deploy`: ship a bundle to a device (or a fleet) as a service.

One subcommand with two positionals, so that both `deploy BUNDLE HOST` and
`deploy status|rollback HOST` parse: argparse sub-subcommands would swallow
the bundle path. Registration imports only argparse and light modules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgepipe.device.cliutil import add_command, positive_float, positive_int
from edgepipe.device.errors import UserError

from .ssh import DEFAULT_CONNECT_TIMEOUT, AgentFailure, Remote, SshOptions, Target, ssh_option

ACTIONS = ("status", "rollback")
ACCELERATORS = ("cpu", "edgetpu", "auto")


def add_ssh_arguments(parser: argparse.ArgumentParser) -> None:
    """Connection flags, shared with `edgepipe bench --host` through remote_bench."""
    group = parser.add_argument_group("connection (OpenSSH: ~/.ssh/config, agents and known_hosts apply)")
    group.add_argument("--identity", "-i", metavar="KEY", help="private key file (ssh -i)")
    group.add_argument("--ssh-config", metavar="FILE", help="ssh client config file instead of ~/.ssh/config (ssh -F)")
    group.add_argument("--ssh-option", metavar="K=V", action="append", default=[], type=ssh_option,
                       help="extra ssh -o option, repeatable (e.g. ProxyJump=bastion); host key checking stays on")
    group.add_argument("--connect-timeout", metavar="S", type=positive_int, default=DEFAULT_CONNECT_TIMEOUT,
                       help="seconds to wait for the TCP connection (default: %(default)s)")
    group.add_argument("--prefix", default="~/edgepipe",
                       help="install directory on the device (default: %(default)s)")
    group.add_argument("--remote-python", metavar="PATH",
                       help="Python with edgepipe on the device (default: PREFIX/venv/bin/python, made by "
                            "pi-setup.sh, else python3)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "deploy",
        help="ship a bundle to a Raspberry Pi (or a fleet) over SSH as a service, with verify and rollback",
        description="""
            Deploy BUNDLE to HOST ([user@]host[:port]) over SSH: check the device (Python, edgepipe,
            camera, Edge TPU, disk), upload to PREFIX/releases/<id>/, verify every file's sha256 on
            the device, switch PREFIX/current atomically, install and restart the systemd unit that
            runs `edgepipe run PREFIX/current --json`, and wait for a result. If the new release
            fails its health check, `current` goes back to the previous release, which is restarted,
            and the command exits 1. The last --keep releases stay on the device.

            `deploy status HOST` shows the current release, the service state and its last result;
            `deploy rollback HOST` goes back to the previous release. With --inventory, the
            Ansible playbook in deploy/ansible does the same steps for every host (needs
            pip install 'edgepipe[deploy]').""",
        examples="""
            edgepipe deploy bundle/ pi@raspberrypi.local
            edgepipe deploy bundle/ pi@10.0.0.7:2222 --identity ~/.ssh/pi_ed25519 --accelerator edgetpu
            edgepipe deploy bundle/ pi@cam1 --source /dev/video0 --keep 5 --health-timeout 120
            edgepipe deploy bundle/ pi@cam1 --no-service          # copy, verify and switch only
            edgepipe deploy status pi@cam1 --json
            edgepipe deploy rollback pi@cam1
            edgepipe deploy bundle/ --inventory hosts.ini          # a fleet, through ansible-playbook
            edgepipe deploy ./status pi@cam1                       # a bundle directory named "status\"""",
    )
    p.add_argument("target", metavar="BUNDLE|status|rollback",
                   help="bundle directory to deploy, or the action `status` / `rollback`")
    p.add_argument("host", metavar="HOST", nargs="?", help="[user@]host[:port] of the device")
    p.add_argument("--inventory", metavar="FILE", help="Ansible inventory: deploy to every host in it")
    add_ssh_arguments(p)
    svc = p.add_argument_group("service")
    svc.add_argument("--source", help="`edgepipe run --source` for the service (default: run's own: picamera2 "
                                      "when present, else /dev/video0)")
    svc.add_argument("--accelerator", choices=ACCELERATORS, default="auto", help="default: %(default)s")
    svc.add_argument("--service", action=argparse.BooleanOptionalAction, default=True,
                     help="install/restart the service and health-check it (default: on; --no-service only "
                          "uploads, verifies and switches `current`)")
    svc.add_argument("--service-manager", choices=("systemd", "process"), default="systemd",
                     help="systemd (default), or `process`: a detached process with a pid file for devices "
                          "without systemd (containers) and for tests")
    svc.add_argument("--unit-scope", choices=("user", "system"), default="user",
                     help="systemd user unit (default, ~/.config/systemd/user) or system unit "
                          "(/etc/systemd/system, needs root or passwordless sudo)")
    svc.add_argument("--keep", type=positive_int, default=3, help="releases to keep on the device (default: 3)")
    svc.add_argument("--health-timeout", metavar="S", type=positive_float, default=60.0,
                     help="seconds the service has to print its first result (default: %(default)g)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run_deploy)


def remote_from_args(args: argparse.Namespace, host: str) -> Remote:
    """The device, from deploy's flags or from `bench --host` (whose parser may lack some of them)."""
    options = SshOptions(identity=getattr(args, "identity", None), config=getattr(args, "ssh_config", None),
                         options=list(getattr(args, "ssh_option", None) or []),
                         connect_timeout=getattr(args, "connect_timeout", None) or DEFAULT_CONNECT_TIMEOUT)
    return Remote(Target.parse(host), options, prefix=getattr(args, "prefix", None) or "~/edgepipe",
                  python=getattr(args, "remote_python", None))


def _service_settings(args: argparse.Namespace):
    from .release import ServiceSettings

    if not args.service:
        return None
    return ServiceSettings(manager=args.service_manager, scope=args.unit_scope, source=args.source,
                           accelerator=args.accelerator, health_timeout=args.health_timeout)


def _emit(args: argparse.Namespace, result: dict, lines: list[str]) -> None:
    print(json.dumps(result, indent=2) if args.json else "\n".join(lines))


def run_deploy(args: argparse.Namespace) -> int:
    from . import release

    if args.target in ACTIONS:
        if not args.host:
            raise UserError(f"`edgepipe deploy {args.target}` needs a HOST: edgepipe deploy {args.target} user@host")
        remote = remote_from_args(args, args.host)
        if args.target == "status":
            result = release.status(remote)
            _emit(args, result, release.describe_status(result))
        else:
            result = release.rollback(remote, args.health_timeout)
            _emit(args, result, [release.describe(result)])
        return 0
    bundle = Path(args.target)
    if args.inventory:
        if args.host:
            raise UserError("give either HOST or --inventory, not both")
        from .fleet import run_playbook

        return run_playbook(bundle, Path(args.inventory), args, _service_settings(args))
    if not args.host:
        raise UserError("no device given: edgepipe deploy BUNDLE user@host (or --inventory hosts.ini)")
    try:
        result = release.deploy(remote_from_args(args, args.host), bundle, _service_settings(args), args.keep)
    except AgentFailure as exc:  # scripts get what happened on the device (rollback, health) as JSON too
        if args.json:
            print(json.dumps(exc.result, indent=2))
        raise
    _emit(args, result, [release.describe(result)])
    return 0
