"""`edgepipe deploy setup HOST`: make a device ready for `edgepipe deploy`.

Why a wheel of the running edgepipe: edgepipe is installed from a checkout,
not from PyPI, so the device gets exactly the version the workstation runs.
Why pi-setup.sh runs on the device: the same script a user can run by hand
there does the work (apt where allowed, the venv, constraints per release),
so there is one set-up path to test. Everything goes through the SSH layer
(BatchMode: no password prompts); pi-setup.sh itself never prompts without a
terminal and names the sudo command to run by hand instead.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Callable

from edgepipe import __version__
from edgepipe.core.errors import UserError
from edgepipe.core.ssh import explain_failure

from .agent import protocol
from .device_check import format_report
from .options import SetupOptions
from .remote import Remote

SETUP_DIR = "setup"
SCRIPT = "pi-setup.sh"


def project_root() -> Path:
    """The checkout the running edgepipe comes from (an editable or in-place install)."""
    import edgepipe

    root = Path(edgepipe.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or 'name = "edgepipe"' not in pyproject.read_text(encoding="utf-8"):
        raise UserError("this edgepipe is not running from a checkout, so no wheel can be built; "
                        "pass --wheel FILE (`pip wheel --no-deps .` in a checkout makes one)")
    return root


def wheel_command(root: Path, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out_dir), str(root)]


def build_wheel(out_dir: Path) -> Path:
    """A wheel of the running edgepipe's checkout in out_dir."""
    proc = subprocess.run(wheel_command(project_root(), out_dir), capture_output=True, text=True)
    wheels = sorted(out_dir.glob("edgepipe-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        last = (proc.stderr.strip().splitlines() or ["no wheel written"])[-1]
        raise UserError(f"building the edgepipe wheel failed ({last}); pip needs setuptools>=68 from PyPI")
    return wheels[0]


def wheel_name() -> str:
    return f"edgepipe-{__version__}-py3-none-any.whl"


def script_path() -> Path:
    return Path(str(resources.files("edgepipe.deploy").joinpath(SCRIPT)))


def script_argv(prefix: str, wheel: str, options: SetupOptions) -> list[str]:
    """pi-setup.sh's arguments: this prefix, edgepipe[device] from this wheel."""
    argv = ["--prefix", prefix, "--from", wheel]
    if options.coral:
        argv.append("--coral")
    if options.imx500:
        argv.append("--imx500")
    if not options.apt:
        argv.append("--no-apt")
    if options.dry_run:
        argv.append("--dry-run")
    return argv


def _ssh(remote: Remote, command: list[str], stdin: str | None = None, stream: bool = False) -> str:
    """One command on the device; its stdout. With stream=True its output goes live to our stderr."""
    proc = subprocess.run(remote.ssh_argv(command), input=stdin, text=True,
                          stdout=2 if stream else subprocess.PIPE, stderr=None if stream else subprocess.PIPE)
    if proc.returncode == 255:
        raise explain_failure(remote.target, proc.stderr or "connection lost")
    if proc.returncode != 0:
        detail = "see its messages above" if stream else (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{remote.target}: `{shlex.join(command[:2])}` failed on the device "
                        f"(exit {proc.returncode}; {detail})")
    return proc.stdout or ""


def setup_device(remote: Remote, options: SetupOptions, say: Callable[[str], None]) -> dict:
    """Copy a wheel and pi-setup.sh to the device, run it there; the device report afterwards.

    With dry_run nothing changes on either side: pi-setup.sh is piped to
    `bash -s -- --dry-run` on the device and prints what it would do there.
    """
    prefix = remote.agent(protocol.REPORT)["prefix"]  # absolute on the device; also proves ssh and python3 work
    setup_dir = f"{prefix}/{SETUP_DIR}"
    if options.dry_run:
        remote_wheel = f"{setup_dir}/{options.wheel.name if options.wheel else wheel_name()}"
        say(f"+ use {options.wheel}" if options.wheel
            else f"+ {shlex.join(wheel_command(project_root(), Path('WHEEL_DIR')))}")
        say(f"+ ssh {remote.target} mkdir -p {setup_dir}")
        say(f"+ scp {remote_wheel.rsplit('/', 1)[1]} {SCRIPT} {remote.target}:{setup_dir}/")
        real_argv = script_argv(prefix, remote_wheel, replace(options, dry_run=False))
        say(f"+ ssh {remote.target} bash {setup_dir}/{SCRIPT} {shlex.join(real_argv)}")
        _ssh(remote, ["bash", "-s", "--", *script_argv(prefix, remote_wheel, options)],
             stdin=script_path().read_text(encoding="utf-8"), stream=True)
    else:
        with tempfile.TemporaryDirectory(prefix="edgepipe-wheel-") as tmp:
            if options.wheel:
                wheel = options.wheel
            else:
                say(f"building a wheel of edgepipe {__version__} from {project_root()}")
                wheel = build_wheel(Path(tmp))
            remote_wheel = f"{setup_dir}/{wheel.name}"
            _ssh(remote, ["mkdir", "-p", setup_dir])
            say(f"copying {wheel.name} and {SCRIPT} to {remote.target}:{setup_dir}/")
            remote.upload(wheel, remote_wheel)
            remote.upload(script_path(), f"{setup_dir}/{SCRIPT}")
        say(f"running {SCRIPT} on {remote.target}")
        _ssh(remote, ["bash", f"{setup_dir}/{SCRIPT}", *script_argv(prefix, remote_wheel, options)], stream=True)
    result = remote.agent(protocol.REPORT)
    for line in format_report(str(remote.target), result["report"]):
        say(line)
    problem = result["report"].get("edgepipe", {}).get("error")
    if problem and not options.dry_run:
        raise UserError(f"{remote.target}: pi-setup.sh finished but edgepipe is not importable on the device "
                        f"({problem})")
    return {"host": str(remote.target), "dry_run": options.dry_run, **result}


def check_wheel(path: str | None) -> Path | None:
    """--wheel, validated before anything connects."""
    if path is None:
        return None
    wheel = Path(path).expanduser()
    if not wheel.is_file() or not wheel.name.startswith("edgepipe-") or wheel.suffix != ".whl":
        raise UserError(f"--wheel {path}: not an edgepipe wheel file (edgepipe-VERSION-py3-none-any.whl)")
    return wheel
