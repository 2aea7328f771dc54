"""deploy/pi-setup.sh and the Edge TPU compiler image: static checks (bash -n,
shellcheck when installed) and the script's real --dry-run on fake os-release files."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

DEPLOY = resources.files("edgepipe.deploy")
SCRIPT = Path(str(DEPLOY.joinpath("pi-setup.sh")))


def _apt_sources(tmp_path: Path, raspberry_pi_os: bool) -> Path:
    """/etc/apt of Raspberry Pi OS (its own repository besides Debian's) or of plain Debian."""
    root = tmp_path / ("rpi-apt" if raspberry_pi_os else "debian-apt")
    (root / "sources.list.d").mkdir(parents=True, exist_ok=True)
    (root / "sources.list").write_text("deb http://debian-mirror.invalid/debian bookworm main\n")
    if raspberry_pi_os:
        (root / "sources.list.d" / "raspi.list").write_text("deb http://raspi-archive.invalid/debian/ bookworm main\n")
    return root


def _dry_run(tmp_path: Path, codename: str, *options: str, raspberry_pi_os: bool = True) -> tuple[str, str]:
    os_release = tmp_path / f"{codename}-os-release"
    os_release.write_text(f'PRETTY_NAME="Debian GNU/Linux"\nVERSION_CODENAME={codename}\n')
    env = dict(os.environ, PI_SETUP_OS_RELEASE=str(os_release),
               PI_SETUP_APT_SOURCES=str(_apt_sources(tmp_path, raspberry_pi_os)))
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "edgepipe"), *options],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, proc.stderr


def test_script_is_valid_bash_with_strict_mode():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    assert "set -euo pipefail" in SCRIPT.read_text()


def test_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_trixie_setup_makes_a_system_site_packages_venv_with_edgepipe_device(tmp_path):
    out, err = _dry_run(tmp_path, "trixie")
    venv = tmp_path / "edgepipe" / "venv"
    assert "apt-get install -y --no-install-recommends" in out and "python3-picamera2" in out
    assert f"+ python3 -m venv --system-site-packages {venv}\n" in out
    assert f"+ {venv}/bin/python -m pip install --upgrade edgepipe[device]\n" in out
    assert "numpy<2" not in out and "constraints" not in out  # Trixie's apt numpy is 2.x
    assert "libedgetpu" not in out
    assert not (tmp_path / "edgepipe").exists()  # a dry run changes nothing


def test_bookworm_holds_numpy_below_2_and_opencv_with_it_and_a_wheel_brings_the_device_extra(tmp_path):
    out, _ = _dry_run(tmp_path, "bookworm", "--from", "./edgepipe-0.1.0-py3-none-any.whl")
    assert f"+ write {tmp_path}/edgepipe/constraints.txt\n" in out
    assert f"-c {tmp_path}/edgepipe/constraints.txt --upgrade ./edgepipe-0.1.0-py3-none-any.whl[device]\n" in out
    # The same version rebuilt replaces the installed one (deps are left alone).
    assert "pip install --no-deps --force-reinstall ./edgepipe-0.1.0-py3-none-any.whl\n" in out
    assert "'numpy<2\\nopencv-python-headless<4.12\\n'" in SCRIPT.read_text()


def test_debian_without_the_raspberry_pi_repository_carries_on_without_picamera2(tmp_path):
    out, err = _dry_run(tmp_path, "bookworm", raspberry_pi_os=False)
    assert "python3-picamera2 is not in this system's apt sources" in err
    assert "USB cameras (/dev/video*), video files and streams work" in err
    assert "python3-picamera2" not in out  # not asked of apt
    assert "-m venv --system-site-packages" in out


def test_no_apt_skips_every_apt_step(tmp_path):
    out, err = _dry_run(tmp_path, "trixie", "--no-apt")
    assert "apt-get" not in out and "--no-apt: skipping apt packages" in err


def test_coral_adds_the_signed_repository_runtime_and_udev_rule(tmp_path):
    out, err = _dry_run(tmp_path, "bookworm", "--coral")
    assert "--dearmor -o /usr/share/keyrings/coral-edgetpu-archive-keyring.gpg" in out
    assert "+ write /etc/apt/sources.list.d/coral-edgetpu.list" in out
    assert "apt-get install -y libedgetpu1-std" in out
    assert "+ write /etc/udev/rules.d/99-edgepipe-edgetpu.rules" in out
    in_plugdev = "plugdev" in subprocess.run(["id", "-nG"], capture_output=True, text=True).stdout.split()
    assert in_plugdev or "would add" in err and "added" not in err  # a dry run adds no one
    text = SCRIPT.read_text()
    assert 'CORAL_REPO="deb [signed-by=${CORAL_KEYRING}] ${CORAL_APT} coral-edgetpu-stable main"' in text
    assert 'ATTRS{idVendor}=="1a6e"' in text and 'ATTRS{idVendor}=="18d1"' in text


def test_second_run_keeps_an_existing_venv(tmp_path):
    python = tmp_path / "edgepipe" / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    out, err = _dry_run(tmp_path, "trixie")
    assert "-m venv" not in out and f"{python.parent.parent} exists" in err


def test_unknown_option_is_one_line_and_exit_1(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT), "--colar"], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stderr == "pi-setup: error: unknown option --colar (see --help)\n"


def test_compiler_image_matches_what_convert_runs():
    """convert runs `docker run ... --entrypoint edgetpu_compiler edgepipe/edgetpu-compiler` with /work mounted."""
    text = Path(str(DEPLOY.joinpath("edgetpu-compiler", "Dockerfile"))).read_text()
    assert "FROM --platform=linux/amd64 debian:bookworm-slim" in text  # the compiler exists for x86-64 only
    assert "apt-get install -y --no-install-recommends edgetpu-compiler" in text
    assert 'ENTRYPOINT ["edgetpu_compiler"]' in text and "WORKDIR /work" in text


def test_imx500_installs_the_ai_cameras_packages_from_raspberry_pi_os(tmp_path):
    out, err = _dry_run(tmp_path, "bookworm", "--imx500")
    assert "apt-get install -y imx500-all imx500-tools" in out
    assert "reboot once so the IMX500 firmware loads" in err


def test_imx500_on_plain_debian_stops_with_one_line_saying_it_needs_raspberry_pi_os(tmp_path):
    os_release = tmp_path / "os-release"
    os_release.write_text("VERSION_CODENAME=bookworm\n")
    env = dict(os.environ, PI_SETUP_OS_RELEASE=str(os_release),
               PI_SETUP_APT_SOURCES=str(_apt_sources(tmp_path, raspberry_pi_os=False)))
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--prefix", str(tmp_path / "p"), "--imx500"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "the AI Camera needs Raspberry Pi OS" in proc.stderr
    assert "imx500-all" not in proc.stdout
