"""`edgepipe deploy BUNDLE --inventory hosts.ini`: the same deploy on many devices, through Ansible.

Ansible already does inventories, parallelism, retries and per-host reports;
its role runs the same device-side agent as the single-host deploy, so this
module only translates edgepipe's flags into playbook variables.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from edgepipe.core.errors import MissingExtraError, UserError

from .release import ServiceSettings, read_local_bundle
from edgepipe.core.ssh import SshOptions


def playbook_path() -> Path:
    return Path(str(resources.files("edgepipe.deploy").joinpath("ansible", "deploy.yml")))


def playbook_vars(bundle_root: Path, bundle_bytes: int, args: argparse.Namespace,
                  service: ServiceSettings | None) -> dict:
    return {
        "edgepipe_bundle": str(bundle_root.resolve()),
        "edgepipe_bundle_bytes": bundle_bytes,
        "edgepipe_prefix": args.prefix,
        "edgepipe_python": args.remote_python or "",
        "edgepipe_source": (service.source if service else None) or "",
        "edgepipe_accelerator": service.accelerator if service else "auto",
        "edgepipe_service_manager": service.manager if service else "none",
        "edgepipe_unit_scope": service.scope if service else "user",
        "edgepipe_keep": args.keep,
        "edgepipe_health_timeout": service.health_timeout if service else 60,
    }


def playbook_argv(executable: str, inventory: Path, variables: dict, ssh: SshOptions) -> list[str]:
    # Ansible adds its own ssh options; ours (config file, key, BatchMode, -o) go in front of them.
    return [executable, "-i", str(inventory), str(playbook_path()), "-e", json.dumps(variables),
            "--ssh-common-args", shlex.join(ssh.common())]


def run_playbook(bundle_path: Path, inventory: Path, args: argparse.Namespace,
                 service: ServiceSettings | None) -> int:
    executable = shutil.which("ansible-playbook")
    if executable is None:
        raise MissingExtraError("ansible", "deploy")
    if not inventory.is_file():
        raise UserError(f"inventory {inventory} does not exist; write one host per line (see README, 'Deploy')")
    bundle = read_local_bundle(bundle_path)
    ssh = SshOptions(identity=args.identity, config=args.ssh_config, options=list(args.ssh_option),
                     connect_timeout=args.connect_timeout)
    argv = playbook_argv(executable, inventory, playbook_vars(bundle.root, bundle.size, args, service), ssh)
    if subprocess.run(argv).returncode != 0:
        raise UserError("ansible-playbook failed on at least one host (see its PLAY RECAP above); "
                        "each failed host keeps its previous release")
    return 0
