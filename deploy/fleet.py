"""`edgepipe deploy BUNDLE --inventory hosts.ini`: the same deploy on many devices, through Ansible.

Ansible already does inventories, parallelism, retries and per-host reports;
its role runs the same device-side agent as the single-host deploy (the zipapp
of deploy/agent_archive.py, written next to the staged bundle), so this module
only translates edgepipe's flags into playbook variables.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from dataclasses import dataclass

from edgepipe.core.errors import MissingExtraError, UserError
from edgepipe.core.ssh import SshOptions

from edgepipe.core import progress

from .agent_archive import write_archive
from .options import ServiceSettings
from .release import read_local_bundle, staged_bundle, verify_accelerator


@dataclass(frozen=True)
class FleetDeploy:
    """One bundle to every host of an Ansible inventory, with deploy's settings."""

    bundle: Path
    inventory: Path
    ssh: SshOptions
    prefix: str
    python: str | None
    keep: int
    service: ServiceSettings | None
    verify: bool = True


def playbook_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("ansible", "deploy.yml")))


def playbook_vars(fleet: FleetDeploy, bundle_root: Path, bundle_bytes: int, verify: str | None = None,
                  agent: Path | None = None) -> dict:
    service = fleet.service
    return {
        "edgepipe_agent": str(agent) if agent else "",
        "edgepipe_verify": verify or "",
        "edgepipe_bundle": str(bundle_root.resolve()),
        "edgepipe_bundle_bytes": bundle_bytes,
        "edgepipe_prefix": fleet.prefix,
        "edgepipe_python": fleet.python or "",
        "edgepipe_source": (service.source if service else None) or "",
        "edgepipe_accelerator": service.accelerator if service else "auto",
        "edgepipe_service_manager": service.manager if service else "none",
        "edgepipe_unit_scope": service.scope if service else "user",
        "edgepipe_keep": fleet.keep,
        "edgepipe_health_timeout": service.health_timeout if service else 60,
    }


def playbook_argv(executable: str, inventory: Path, variables: dict, ssh: SshOptions) -> list[str]:
    # Ansible adds its own ssh options; ours (config file, key, BatchMode, -o) go in front of them.
    return [executable, "-i", str(inventory), str(playbook_path()), "-e", json.dumps(variables),
            "--ssh-common-args", shlex.join(ssh.common())]


def run_playbook(fleet: FleetDeploy) -> int:
    executable = shutil.which("ansible-playbook")
    if executable is None:
        raise MissingExtraError("ansible", "deploy")
    if not fleet.inventory.is_file():
        raise UserError(f"inventory {fleet.inventory} does not exist; write one host per line (see docs/commands/deploy.md, 'Fleets')")
    bundle = read_local_bundle(fleet.bundle)
    verify = verify_accelerator(bundle, fleet.service.accelerator if fleet.service else "auto", fleet.verify,
                                progress.say)
    with staged_bundle(bundle) as staged:  # Ansible copies a folder: give it exactly the manifest's files
        agent = write_archive(staged.parent / "edgepipe-agent.pyz")
        argv = playbook_argv(executable, fleet.inventory, playbook_vars(fleet, staged, bundle.size, verify, agent),
                             fleet.ssh)
        code = subprocess.run(argv).returncode
    if code != 0:
        raise UserError("ansible-playbook failed on at least one host (see its PLAY RECAP above); "
                        "each failed host keeps its previous release")
    return 0
