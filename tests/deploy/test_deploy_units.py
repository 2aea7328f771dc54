"""The deploy stage's pure parts: host parsing, ssh error lines, the device verdict,
the systemd unit (checked by the real `systemd-analyze verify` where installed)
and the argument surface of `edgepipe deploy`."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from edgepipe.cli import main
from edgepipe.deploy.agent import layout as agent_layout, unit as agent_unit
from edgepipe.deploy.device_check import assess, uses_camera
from edgepipe.core.ssh import SshOptions, Target, explain_failure, ssh_option
from edgepipe.deploy.remote import Remote
from edgepipe.core.errors import UserError

GOOD_REPORT = {
    "python_path": "/home/pi/edgepipe/venv/bin/python",
    "edgepipe": {"python": "3.13.5", "version": "0.1.0",
                 "modules": {"numpy": True, "cv2": True, "ai_edge_litert": True, "picamera2": True}},
    "camera": {"video_devices": [], "picamera2": True},
    "edgetpu": {"usb": [], "pcie": False},
    "disk_free": 500_000_000,
    "systemd": True,
    "linger": True,
}


@pytest.mark.parametrize("text, host, user, port", [
    ("pi@raspberrypi.local", "raspberrypi.local", "pi", None),
    ("pi@10.0.0.7:2222", "10.0.0.7", "pi", 2222),
    ("cam1", "cam1", None, None),
    ("root@[::1]:22", "::1", "root", 22),
    ("fe80::1", "fe80::1", None, None),
])
def test_target_parses_user_host_and_port(text, host, user, port):
    target = Target.parse(text)
    assert (target.host, target.user, target.port) == (host, user, port)


@pytest.mark.parametrize("text", ["-oProxyCommand=touch /tmp/x", "pi@", "pi@host:99999", "pi@host:x", "a b"])
def test_target_refuses_option_injection_and_bad_ports(text):
    with pytest.raises(UserError):
        Target.parse(text)


def test_ipv6_target_is_bracketed_for_scp():
    assert Target.parse("root@[::1]:22").scp_destination("/x") == "root@[::1]:/x"


def test_ssh_option_never_disables_host_key_checking():
    assert ssh_option("ProxyJump = bastion") == "ProxyJump=bastion"
    for bad in ("StrictHostKeyChecking=no", "stricthostkeychecking=off", "novalue", "=x"):
        with pytest.raises(argparse.ArgumentTypeError):
            ssh_option(bad)


def test_ssh_command_is_an_argument_list_with_batch_mode_and_quoted_remote_args():
    remote = Remote(Target.parse("pi@cam:2200"), SshOptions(identity="k", options=["ProxyJump=b"]),
                    prefix="~/edge pipe".replace(" ", "_"), python="/opt/py thon")
    argv = remote.ssh_argv(remote.agent_command("status"))
    assert argv[:2] == ["ssh", "-i"] and "BatchMode=yes" in argv and "ConnectTimeout=10" in argv
    assert "StrictHostKeyChecking=no" not in " ".join(argv)
    assert argv[-3:-1] == ["--", "pi@cam"] and argv[argv.index("-p") + 1] == "2200"
    assert argv[-1].startswith("'/opt/py thon' -c 'exec(\"import importlib.abc, importlib.util, io, sys, zipfile\\n")
    assert "\n" not in argv[-1]  # one line: any login shell passes it intact
    assert argv[-1].endswith(" --prefix '~/edge_pipe' --python '/opt/py thon' status")


@pytest.mark.parametrize("prefix", ["~/a b", "/x;rm -rf /", "$(id)", "/a/~b", "a'b"])
def test_prefix_with_shell_characters_is_refused(prefix):
    with pytest.raises(UserError, match="--prefix"):
        Remote(Target.parse("pi@cam"), SshOptions(), prefix=prefix)


@pytest.mark.parametrize("stderr, expected", [
    ("No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\n"
     "Host key verification failed.\n", "ssh-keyscan"),
    ("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n", "ssh-keygen -R cam"),
    ("root@127.0.0.1: Permission denied (publickey).\n", "authentication failed"),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused\n", "cannot connect"),
    ("ssh: Could not resolve hostname nowhere: Name or service not known\n", "cannot connect"),
])
def test_ssh_failures_become_one_actionable_line(stderr, expected):
    message = str(explain_failure(Target.parse("pi@cam:2222"), stderr))
    assert expected in message and "\n" not in message


def test_device_without_edgepipe_or_space_is_refused_with_the_reason():
    broken = dict(GOOD_REPORT, edgepipe={"error": "ModuleNotFoundError: No module named 'edgepipe'"})
    verdict = assess(broken, 10_000_000, "cpu", False, needs_camera=False)
    assert len(verdict.errors) == 1 and "pi-setup.sh" in verdict.errors[0]
    full = dict(GOOD_REPORT, disk_free=5_000_000)
    verdict = assess(full, 10_000_000, "cpu", False, needs_camera=False)
    assert "not enough disk space: 5.0 MB free" in verdict.errors[0]
    assert assess(full, 10_000_000, "cpu", False, needs_camera=False, already_uploaded=True).errors == []


def test_device_verdict_on_python_runtime_edgetpu_and_camera():
    old = dict(GOOD_REPORT, edgepipe=dict(GOOD_REPORT["edgepipe"], python="3.9.2"))
    assert "needs 3.10" in assess(old, 1, "cpu", False, False).errors[0]
    no_runtime = dict(GOOD_REPORT, edgepipe=dict(GOOD_REPORT["edgepipe"], modules={"numpy": True, "cv2": True}))
    assert "ai_edge_litert (or tflite_runtime)" in assess(no_runtime, 1, "cpu", False, False).errors[0]
    errors = assess(GOOD_REPORT, 1, "edgetpu", False, False).errors
    assert any("no model_edgetpu.tflite" in e for e in errors) and any("no Edge TPU is attached" in e for e in errors)
    with_usb = dict(GOOD_REPORT, edgetpu={"usb": ["18d1:9302"], "pcie": False})
    assert assess(with_usb, 1, "edgetpu", True, False).errors == []
    assert "CPU model" in assess(GOOD_REPORT, 1, "auto", True, False).warnings[0]
    no_camera = dict(GOOD_REPORT, camera={"video_devices": [], "picamera2": False})
    assert assess(no_camera, 1, "cpu", False, needs_camera=True).warnings
    assert uses_camera(None) and uses_camera("/dev/video0") and not uses_camera("clip.mp4")


def test_systemd_service_needs_systemd_and_lingering_for_a_user_unit():
    assert assess(GOOD_REPORT, 1, "cpu", False, False, systemd_scope="user").errors == []
    no_linger = dict(GOOD_REPORT, linger=False)
    assert "loginctl enable-linger" in assess(no_linger, 1, "cpu", False, False, systemd_scope="user").errors[0]
    assert assess(no_linger, 1, "cpu", False, False, systemd_scope="system").errors == []
    container = dict(GOOD_REPORT, systemd=False, linger=None)
    assert "--service-manager process" in assess(container, 1, "cpu", False, False, systemd_scope="user").errors[0]
    assert assess(container, 1, "cpu", False, False, systemd_scope=None).errors == []


def test_systemd_quoting_of_specifiers_variables_and_spaces():
    assert agent_unit.systemd_quote("/usr/bin/python3") == "/usr/bin/python3"
    assert agent_unit.systemd_quote("50%") == "50%%"
    assert agent_unit.systemd_quote('my "clip" $HOME.mp4') == '"my \\"clip\\" $$HOME.mp4"'


def _rendered_unit(tmp_path: Path, scope: str) -> Path:
    template = resources.files("edgepipe.deploy").joinpath("templates", "edgepipe.service").read_text()
    layout = agent_layout.Layout(str(tmp_path / "edgepipe"))
    config = {"scope": scope, "source": "rtsp://cam/stream 1", "accelerator": "edgetpu", "user": "pi"}
    argv = agent_unit.service_argv(sys.executable, layout, config)
    unit = tmp_path / "edgepipe.service"
    unit.write_text(agent_unit.render_unit(template, layout, config, argv))
    return unit


@pytest.mark.parametrize("scope", ["user", "system"])
def test_unit_runs_edgepipe_on_current_with_restart_on_failure(tmp_path, scope):
    unit = _rendered_unit(tmp_path, scope)
    text = unit.read_text()
    assert (f"ExecStart={sys.executable} -m edgepipe run {tmp_path}/edgepipe/current --json "
            '--source "rtsp://cam/stream 1" --accelerator edgetpu') in text
    assert "Restart=on-failure" in text and "PYTHONUNBUFFERED=1" in text
    assert ("User=pi" in text) == (scope == "system")
    assert ("WantedBy=multi-user.target" if scope == "system" else "WantedBy=default.target") in text
    assert "${" not in text
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed: the unit's syntax is not verified by systemd here")
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr


def test_systemd_analyze_catches_a_broken_unit(tmp_path):
    """The check above is meaningful: systemd-analyze rejects a relative ExecStart."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    unit = _rendered_unit(tmp_path, "user")
    unit.write_text(unit.read_text().replace(f"ExecStart={sys.executable}", "ExecStart=python3 x\nExecStart=bad"))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode != 0


@pytest.mark.parametrize("argv, message", [
    (["deploy", "status"], "needs a HOST: edgepipe deploy status user@host"),
    (["deploy", "bundle/"], "no device given: edgepipe deploy BUNDLE user@host"),
    (["deploy", "bundle/", "pi@cam", "--inventory", "hosts.ini"], "give either HOST or --inventory, not both"),
])
def test_deploy_usage_errors_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_deploy_refuses_disabling_host_key_checking(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["deploy", str(tmp_path), "pi@cam", "--ssh-option", "StrictHostKeyChecking=no"])
    assert exit_info.value.code == 2
    assert "never weakens host key checking" in capsys.readouterr().err


def test_inventory_without_ansible_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no ansible-playbook on PATH
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("cam1\n")
    assert main(["deploy", str(tmp_path), "--inventory", str(inventory)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith("install it with: pip install 'edgepipe[deploy]'") and len(err.splitlines()) == 1


def test_service_with_collect_keeps_frames_in_the_prefix(tmp_path):
    layout = agent_layout.Layout(str(tmp_path / "edgepipe"))
    argv = agent_unit.service_argv(sys.executable, layout, {"collect": True, "accelerator": "cpu"})
    assert argv[argv.index("--collect") + 1] == str(tmp_path / "edgepipe" / "collect")
    assert "--collect" not in agent_unit.service_argv(sys.executable, layout, {"accelerator": "cpu"})
