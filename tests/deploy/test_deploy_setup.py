"""`edgepipe deploy setup HOST` against a real OpenSSH server on 127.0.0.1.

The 'device' is this machine: the setup builds a real wheel of this checkout,
copies it with pi-setup.sh over scp, and pi-setup.sh makes a real venv with
edgepipe[device] from that wheel (pip reaches the package index). apt is
skipped with --no-apt because the device here is the CI machine itself, as
root; pi-setup.sh's apt steps are covered by its dry runs (test_pi_setup.py)
and, for real, inside the arm64 root filesystems of .ci/arm64-check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from edgepipe import __version__
from edgepipe.cli import main

WHEEL = f"edgepipe-{__version__}-py3-none-any.whl"


def _setup(sshd, prefix: Path, *extra: str) -> int:
    return main(["deploy", "setup", sshd.host, "--ssh-config", str(sshd.client_config), "--prefix", str(prefix),
                 *extra])


def test_dry_run_shows_every_step_and_changes_nothing_on_either_side(sshd, prefix, capfd):
    assert _setup(sshd, prefix, "--dry-run", "--coral") == 0
    out, err = capfd.readouterr()
    setup_dir = f"{prefix}/setup"
    assert "-m pip wheel --no-deps" in err  # the local build, only printed
    assert f"+ scp {WHEEL} pi-setup.sh {sshd.host}:{setup_dir}/" in err
    assert (f"bash {setup_dir}/pi-setup.sh --prefix {prefix} --from {setup_dir}/{WHEEL} --coral\n") in err
    # pi-setup.sh's own dry run, on the device:
    assert f"+ python3 -m venv --system-site-packages {prefix}/venv" in out + err
    assert re.search(rf"pip install (-c {prefix}/constraints.txt )?--upgrade {setup_dir}/{WHEEL}\[device\]\n", err)
    assert "apt-get install -y libedgetpu1-std" in out + err
    in_plugdev = "plugdev" in subprocess.run(["id", "-nG"], capture_output=True, text=True).stdout.split()
    assert in_plugdev or f"would add {sshd.user} to plugdev" in err
    # ... and the device report, which names no venv under PREFIX: none was made.
    assert f"device {sshd.host}" in err and "  python     " in err and f"{prefix}/venv" not in err.split("device ")[-1]
    assert "dry run, nothing changed" in out
    assert not prefix.exists()


def test_setup_installs_this_edgepipe_with_the_device_extra_and_a_second_run_changes_nothing(
        sshd, prefix, capfd):
    assert _setup(sshd, prefix, "--no-apt", "--json") == 0
    out, err = capfd.readouterr()
    result = json.loads(out)
    report = result["report"]
    venv_python = prefix / "venv" / "bin" / "python"
    assert report["python_path"] == str(venv_python)
    assert report["edgepipe"]["version"] == __version__
    assert report["edgepipe"]["modules"]["ai_edge_litert"] and report["edgepipe"]["modules"]["cv2"]
    assert (prefix / "setup" / WHEEL).is_file() and (prefix / "setup" / "pi-setup.sh").is_file()
    assert "--no-apt: skipping apt packages" in err
    # Installed from the wheel (not this checkout), with inspect's reader and without TensorFlow.
    probe = subprocess.run([str(venv_python), "-c",
                            "import importlib.util as u, edgepipe, tflite; "
                            "print(edgepipe.__file__); print(u.find_spec('tensorflow') is None)"],
                           capture_output=True, text=True, cwd="/")
    assert probe.returncode == 0, probe.stderr
    location, no_tensorflow = probe.stdout.split()
    assert location.startswith(str(prefix / "venv")) and no_tensorflow == "True"
    before = os.stat(venv_python, follow_symlinks=False).st_ino

    assert _setup(sshd, prefix, "--no-apt") == 0
    out, err = capfd.readouterr()
    assert f"{prefix}/venv exists" in err and "-m venv" not in err
    assert os.stat(venv_python, follow_symlinks=False).st_ino == before
    assert f"edgepipe {__version__}" in err and "runtime ai_edge_litert" in err
    assert "ready; deploy with `edgepipe deploy BUNDLE" in out


def test_a_file_that_is_not_an_edgepipe_wheel_is_refused_before_connecting(tmp_path, closed_port, capsys):
    bogus = tmp_path / "other-1.0-py3-none-any.whl"
    bogus.write_bytes(b"PK")
    code = main(["deploy", "setup", f"pi@127.0.0.1:{closed_port}", "--wheel", str(bogus)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        f"edgepipe deploy: error: --wheel {bogus}: not an edgepipe wheel file (edgepipe-VERSION-py3-none-any.whl)"
    ]
