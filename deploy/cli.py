"""`edgepipe deploy`: ship a bundle to a device (or a fleet) as a service.

One subcommand with two positionals, so that both `deploy BUNDLE HOST` and
`deploy status|rollback HOST` parse: argparse sub-subcommands would swallow
the bundle path. Registration imports only argparse and light modules.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgepipe.core import progress
from edgepipe.core.args import add_command, add_word
from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text, refuse_overwrite
from edgepipe.core.safetext import redact, redact_obj
from edgepipe.core.options import add_options, argument_group, options_from
from edgepipe.core.ssh import Connection, SshOptions, add_connection_arguments
from edgepipe.device.sinks.endpoints import (PASSWORD_ENV, TOKEN_ENV, is_loopback, mqtt_url, serve_address,
                                             serve_token)
from edgepipe.device.run.regions import parse_region

from .options import COLLECT, SERVICE, CollectRequest, ReleaseOptions, ServiceSettings, SetupOptions

ACTIONS = ("status", "rollback", "setup", "collect")
# bench flags that name files on this machine, meaningless on a device.
BENCH_LOCAL_ONLY_FLAGS = ("image", "e2e", "csv", "plot", "labels")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "deploy",
        help="ship a bundle to a Raspberry Pi (or a fleet) over SSH as a service, with verify and rollback",
        description="""
            Deploy BUNDLE to HOST ([user@]host[:port]) over SSH: check the device (Python, edgepipe,
            camera, Edge TPU, disk), upload to PREFIX/releases/<id>/, verify every file's sha256 on
            the device, run the bundle's golden set there (`edgepipe verify`: a release whose answers
            differ is discarded and `current` stays), switch PREFIX/current atomically, install and restart the systemd unit that
            runs `edgepipe run PREFIX/current --json`, and wait for a result. If the new release
            fails its health check, `current` goes back to the previous release, which is restarted,
            and the command exits 1. The last --keep releases stay on the device.

            `deploy status HOST` shows the current release, the service state, the last verification and its
            last result;
            `deploy rollback HOST` goes back to the previous release. `deploy setup HOST` makes a
            fresh device ready: it builds a wheel of this edgepipe, copies it with pi-setup.sh to
            PREFIX/setup/ and runs pi-setup.sh there (apt packages where sudo needs no password,
            the venv PREFIX/venv with edgepipe[device] from that wheel, numpy/OpenCV pins on
            Bookworm), then prints the device report; safe to run again, --dry-run shows every step.
            `deploy collect HOST --to DIR` copies the frames the device kept (`run --collect`; deploy
            --collect makes the service keep them in PREFIX/collect) into DIR/<predicted label>/ and
            DIR/unknown/, each pair verified by sha256 and resumable; --move then deletes on the
            device what arrived intact. With --inventory, the
            Ansible playbook in deploy/ansible does the same steps for every host (needs
            pip install 'edgepipe[deploy]').""",
        examples="""
            edgepipe deploy bundle/ pi@raspberrypi.local
            edgepipe deploy bundle/ pi@10.0.0.7:2222 --identity ~/.ssh/pi_ed25519 --accelerator edgetpu
            edgepipe deploy bundle/ pi@cam1 --source /dev/video0 --keep 5 --health-timeout 120
            edgepipe deploy bundle/ pi@cam1 --mqtt mqtt://ha@homeassistant.local/edgepipe/cam1 --serve 0.0.0.0:8080 --serve-token-file t.txt
            edgepipe deploy bundle/ pi@cam1 --no-service          # copy, verify and switch only
            edgepipe deploy setup pi@cam1                          # once per device: venv + edgepipe[device]
            edgepipe deploy setup pi@cam1 --coral --dry-run
            edgepipe deploy status pi@cam1 --json
            edgepipe deploy rollback pi@cam1
            edgepipe deploy bundle/ pi@cam1 --collect               # the service keeps unsure frames
            edgepipe deploy collect pi@cam1 --to field/ --move
            edgepipe deploy bundle/ --inventory hosts.ini          # a fleet, through ansible-playbook
            edgepipe deploy ./status pi@cam1                       # a bundle directory named "status\"""",
    )
    p.add_argument("target", metavar="BUNDLE|status|rollback|setup|collect",
                   help="bundle directory to deploy, or the action `status` / `rollback` / `setup` / `collect`")
    _add_host(p)
    p.add_argument("--inventory", metavar="FILE", help="Ansible inventory: deploy to every host in it")
    add_connection_arguments(p)
    add_options(p, ServiceSettings)
    add_options(p, ReleaseOptions)
    svc = argument_group(p, SERVICE)
    svc.add_argument("--mqtt", type=mqtt_url, metavar="URL",
                     help="the service's `run --mqtt`; the password (from the URL or $EDGEPIPE_MQTT_PASSWORD "
                          "here) goes into a 0600 environment file on the device, never into the unit")
    svc.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT", help="the service's `run --serve`")
    svc.add_argument("--serve-token-file", type=Path, metavar="FILE",
                     help="token for --serve (or $EDGEPIPE_SERVE_TOKEN here), kept in the device's 0600 environment file")
    svc.add_argument("--serve-public", action="store_true",
                     help="the service's `run --serve-public`: --serve on a non-loopback address without a token, "
                          "for anyone who can reach the device")
    svc.add_argument("--roi", type=parse_region, action="append", metavar="NAME=x,y,w,h",
                     help="the service's `run --roi` (repeatable)")
    _add_setup(p)
    _add_collect(p)
    _add_json(p)
    _register_words(p)
    p.set_defaults(func=run_deploy)


def _add_host(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", nargs="?", help="[user@]host[:port] of the device")


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _add_setup(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SetupOptions)


def _add_collect(parser: argparse.ArgumentParser) -> None:
    argument_group(parser, COLLECT).add_argument("--to", type=Path, metavar="DIR",
                                                 help="where `deploy collect` puts the frames (required)")
    add_options(parser, CollectRequest)


def _register_words(parser: argparse.ArgumentParser) -> None:
    """`deploy setup --help` and `deploy collect --help`: the flags that apply to each."""
    setup = add_word(parser, "setup", description="""
        Make a fresh device ready for `edgepipe deploy`: build a wheel of this edgepipe (or take --wheel),
        copy it with pi-setup.sh to PREFIX/setup/ and run pi-setup.sh there (apt packages where sudo needs
        no password, the venv PREFIX/venv with edgepipe[device] from that wheel, numpy/OpenCV pins on
        Bookworm), then print the device report. Safe to run again; --dry-run shows every step.""",
        examples="""
            edgepipe deploy setup pi@cam1
            edgepipe deploy setup pi@cam1 --coral --dry-run""")
    collect = add_word(parser, "collect", description="""
        Copy the frames the device kept (`run --collect`; `deploy --collect` makes the service keep them in
        PREFIX/collect) into DIR/<predicted label>/ and DIR/unknown/, each image and its JSON sidecar verified
        by sha256, resumable; --move then deletes on the device what arrived intact.""",
        examples="""
            edgepipe deploy collect pi@cam1 --to field/
            edgepipe deploy collect pi@cam1 --to field/ --move""")
    for word, add_own in ((setup, _add_setup), (collect, _add_collect)):
        _add_host(word)
        add_connection_arguments(word)
        add_own(word)
        _add_json(word)


def bench_on_host(args: argparse.Namespace) -> int:
    """`edgepipe bench BUNDLE --host HOST`: measure on the device (uploaded like a deploy), compare with here."""
    from edgepipe.device.bench.cli import plan_from_args
    from edgepipe.device.bench.compare import compare_rows, format_comparison

    from .remote_bench import RemoteBench, bench_here, bench_on_device

    local_only = [f"--{flag}" for flag in BENCH_LOCAL_ONLY_FLAGS if getattr(args, flag)]
    if local_only:
        args.bench_parser.error(f"{local_only[0]} is not supported with --host (it names a file here); "
                                "save the device's result with --out and use `edgepipe bench compare`")
    if args.out:
        refuse_overwrite(args.out, args.force)
    request = RemoteBench(Path(args.target), plan_from_args(args), Connection.from_args(args, args.host))
    remote_report = bench_on_device(request)
    if args.out:
        atomic_write_text(args.out, json.dumps(remote_report, indent=2) + "\n")
    if args.json:
        print(json.dumps(remote_report, indent=2))
        return 0
    local_report = bench_here(request)
    print(format_comparison(compare_rows([local_report, remote_report] if local_report else [remote_report])))
    if "verification" in remote_report:
        from .release import describe_verification

        print(f"answers on {request.connection.target}: {describe_verification(remote_report['verification'])}")
    return 0


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _service_settings(args: argparse.Namespace, release: ReleaseOptions) -> ServiceSettings | None:
    if not release.service:
        return None
    secrets = {}
    if args.mqtt is not None and args.mqtt.password:
        secrets[PASSWORD_ENV] = args.mqtt.password
    token = serve_token(None, args.serve_token_file) if args.serve is not None else None
    if args.serve_public and args.serve is None:
        args.parser.error("--serve-public needs --serve [HOST:]PORT")
    if args.serve is not None and token is None and not is_loopback(args.serve[0]) and not args.serve_public:
        raise UserError(f"--serve {_host_port(*args.serve)} without a token would show the camera to anyone who "
                        "can reach the device; give --serve-token-file (or $EDGEPIPE_SERVE_TOKEN here), or add "
                        "--serve-public if that is meant")
    if token:
        secrets[TOKEN_ENV] = token
    return options_from(args, ServiceSettings, mqtt=args.mqtt.without_password() if args.mqtt else None,
                        serve=_host_port(*args.serve) if args.serve else None, serve_public=args.serve_public,
                        roi=tuple(f"{r.name}={r.spec()}" for r in args.roi or ()), secrets=secrets)


def _emit(args: argparse.Namespace, result: dict, lines: list[str]) -> None:
    """JSON stays JSON (control characters escaped by json.dumps); credentials are redacted either way."""
    print(json.dumps(redact_obj(result), indent=2) if args.json else "\n".join(redact(line) for line in lines))


def _collect(args: argparse.Namespace, remote) -> int:
    from .collect import collect, describe

    if args.to is None:
        args.parser.error("`edgepipe deploy collect HOST` needs --to DIR: where to put the frames")
    result = collect(remote, options_from(args, CollectRequest, to=args.to))
    _emit(args, result, [describe(result)])
    return 1 if result["failed"] else 0


def run_deploy(args: argparse.Namespace) -> int:
    from . import release
    from .remote import AgentFailure, remote_for

    if args.target in ACTIONS:
        if not args.host:
            args.parser.error(f"`edgepipe deploy {args.target}` needs a HOST: edgepipe deploy {args.target} user@host")
        remote = remote_for(Connection.from_args(args, args.host))
        if args.target == "collect":
            return _collect(args, remote)
        if args.target == "setup":
            from .setup import check_wheel, setup_device

            options = options_from(args, SetupOptions, wheel=check_wheel(args.wheel))
            result = setup_device(remote, options, progress.say)
            _emit(args, result, [f"{result['host']}: " + ("dry run, nothing changed" if options.dry_run else
                                                          f"ready; deploy with `edgepipe deploy BUNDLE {args.host}`")])
        elif args.target == "status":
            result = release.status(remote)
            _emit(args, result, release.describe_status(result))
        else:
            result = release.rollback(remote, args.health_timeout)
            _emit(args, result, [release.describe(result)])
        return 0
    bundle = Path(args.target)
    release_options = options_from(args, ReleaseOptions)
    if args.inventory:
        if args.host:
            args.parser.error("give either HOST or --inventory, not both")
        if args.mqtt or args.serve or args.roi:
            args.parser.error("--mqtt, --serve and --roi are not passed to a fleet yet: deploy them host by host")
        from .fleet import FleetDeploy, run_playbook

        return run_playbook(FleetDeploy(bundle, Path(args.inventory), options_from(args, SshOptions), args.prefix,
                                        args.remote_python, release_options.keep,
                                        _service_settings(args, release_options), release_options.verify))
    if not args.host:
        args.parser.error("no device given: edgepipe deploy BUNDLE user@host (or --inventory hosts.ini)")
    try:
        result = release.deploy(remote_for(Connection.from_args(args, args.host)), bundle,
                                _service_settings(args, release_options), release_options.keep,
                                verify=release_options.verify)
    except AgentFailure as exc:  # scripts get what happened on the device (rollback, health) as JSON too
        if args.json:
            print(json.dumps(redact_obj(exc.result), indent=2))
        raise
    _emit(args, result, [release.describe(result)])
    return 0
