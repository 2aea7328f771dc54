"""Issue 11 against the real sshd on 127.0.0.1: what ships is exactly the
manifest, one deploy at a time, only our own PID is signalled, nothing leaks.
Each test asserts the one-line error, the exit code, and that nothing outside
the bundle or prefix was read, written or killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from edgepipe.cli import main
from edgepipe.deploy import release
from edgepipe.deploy.agent import cli as agent_cli, layout as agent_layout, protocol, unit, verify
from edgepipe.core.errors import UserError
from edgepipe.core.ssh import SshOptions, Target
from edgepipe.deploy.remote import Remote
from edgepipe.device.model.bundle import MANIFEST, sha256_file


def _release_id(bundle: Path) -> str:
    return sha256_file(bundle / MANIFEST)[:16]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    return lines[0]


def test_only_the_manifest_files_ship_never_an_unlisted_file_or_symlink(tiny_bundle, sshd, deploy_argv, prefix,
                                                                       tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY\n")
    (bundle / "id_rsa").symlink_to(secret)  # an unlisted symlink to a secret
    (bundle / "notes.bin").write_bytes(os.urandom(4096))  # an unlisted file
    assert main(["deploy", str(bundle), sshd.host, *deploy_argv("--no-service")]) == 0
    shipped = prefix / "releases" / _release_id(bundle)
    assert sorted(p.name for p in shipped.iterdir()) == ["bundle.json", "labels.txt", "model.tflite"]
    assert not any(p.is_symlink() for p in shipped.iterdir())


def test_a_release_holding_an_unlisted_file_is_refused_on_the_device(tiny_bundle, tmp_path):
    partial = tmp_path / "r"
    shutil.copytree(tiny_bundle, partial)
    (partial / "extra.sh").write_text("echo hi\n")
    with pytest.raises(protocol.AgentError, match="extra.sh is not listed in bundle.json"):
        verify.verify_release(partial)


@pytest.fixture
def small_disk(tmp_path: Path, mount_tmpfs):
    """A real 24 MiB tmpfs holding the device prefix (the disk check wants bundle + 20 MB free)."""
    return mount_tmpfs(tmp_path / "disk", "size=24m")


def test_a_disk_that_fills_during_the_upload_is_one_line_and_leaves_no_partial(tiny_bundle, sshd, small_disk,
                                                                               tmp_path):
    prefix = small_disk / "edgepipe"
    remote = Remote(Target.parse(sshd.host), SshOptions(config=str(sshd.client_config)), prefix=str(prefix),
                    python=sys.executable)
    first = release.deploy(remote, tiny_bundle, None, keep=3, say=lambda _: None)
    second = tmp_path / "second"
    shutil.copytree(tiny_bundle, second)
    manifest = json.loads((second / MANIFEST).read_text())
    manifest["variant"] = "second"
    (second / MANIFEST).write_text(json.dumps(manifest))

    def upload_after_something_filled_the_disk(remote, local, remote_path):
        with open(small_disk / "filler", "wb") as f:  # another writer on the device takes the space
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        remote.upload(local, remote_path)

    with pytest.raises(UserError) as error:
        release.deploy(remote, second, None, keep=3, upload=upload_after_something_filled_the_disk,
                       say=lambda _: None)
    message = str(error.value)
    assert "\n" not in message and "disk under" in message and "filled up during the upload" in message
    assert "the partial upload was removed" in message
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == [first["release"]]
    assert os.readlink(prefix / "current") == f"releases/{first['release']}"


def test_a_second_deploy_while_one_holds_the_prefix_is_refused_and_touches_nothing(
        tiny_bundle, sshd, remote, deploy_argv, prefix, capsys):
    with remote.locked():
        before = sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*"))
        assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--no-service")]) == 1
        assert main(["deploy", "rollback", sshd.host, *deploy_argv()]) == 1
        assert sorted(str(p.relative_to(prefix)) for p in prefix.rglob("*")) == before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    for line in err:
        assert f"another deploy to {prefix} is in progress since 20" in line and line.endswith("; try again")
    assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--no-service")]) == 0  # released


def test_two_deploys_racing_for_one_prefix_one_wins_the_other_is_refused(tiny_bundle, sshd, remote, prefix,
                                                                       tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    manifest = json.loads((other / MANIFEST).read_text())
    manifest["variant"] = "other"
    (other / MANIFEST).write_text(json.dumps(manifest))
    outcome: dict[str, object] = {}

    def upload_while_a_racer_deploys(remote, local, remote_path):
        outcome["racer"] = _race()  # the first deploy holds the lock, mid-way between its check and its switch
        remote.upload(local, remote_path)

    def _race():
        racer = Remote(Target.parse(sshd.host), SshOptions(config=str(sshd.client_config)), prefix=str(prefix),
                       python=sys.executable)
        try:
            release.deploy(racer, other, None, keep=3, say=lambda _: None)
        except UserError as exc:
            return str(exc)
        return "won"

    result = release.deploy(remote, tiny_bundle, None, keep=3, upload=upload_while_a_racer_deploys,
                            say=lambda _: None)
    assert "is in progress since" in str(outcome["racer"])
    assert result["release"] == _release_id(tiny_bundle)
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == [_release_id(tiny_bundle)]


def test_a_stale_pid_file_never_kills_an_unrelated_process(tiny_bundle, sshd, deploy_argv, prefix, video):
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)  # someone else's process group
    try:
        assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", str(video))]) == 0
        ours = json.loads((prefix / "service.pid").read_text())
        # After a reboot the recorded PID belongs to someone else: same pid number, other start time/command.
        (prefix / "service.pid").write_text(json.dumps(dict(ours, pid=bystander.pid)))
        os.killpg(ours["pid"], signal.SIGKILL)
        assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", str(video))]) == 0
        os.killpg(json.loads((prefix / "service.pid").read_text())["pid"], signal.SIGKILL)
        (prefix / "service.pid").write_text(str(bystander.pid))  # the old plain-PID format proves nothing either
        assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", str(video))]) == 0
        assert bystander.poll() is None, "the unrelated process was killed"
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize("option", [
    "StrictHostKeyChecking=false", 'StrictHostKeyChecking="no"', "stricthostkeychecking accept-new",
    "STRICTHOSTKEYCHECKING = off", "UserKnownHostsFile=/dev/null", "userknownhostsfile /dev//null",
    "GlobalKnownHostsFile none", "KnownHostsCommand=/bin/echo", "CheckHostIP=no", '"StrictHostKeyChecking"=no',
])
def test_host_key_checking_cannot_be_weakened_by_spelling(tiny_bundle, sshd, deploy_argv, prefix, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--ssh-option", option)])
    assert exit_info.value.code == 2
    assert "never weakens host key checking" in capsys.readouterr().err
    assert not prefix.exists()


def test_an_option_smuggled_in_the_user_part_never_reaches_ssh(tiny_bundle, sshd, tmp_path, capsys):
    witness = tmp_path / "pwned"
    host = f"-oProxyCommand=touch {witness}@127.0.0.1:{sshd.port}"
    assert main(["bench", str(tiny_bundle), "--host", host]) == 1
    assert "is not a host" in _one_line(capsys)
    assert not witness.exists()


def _fake_device_python(tmp_path: Path, answer: str) -> str:
    """A 'device' whose python ignores the agent and answers `answer` (a compromised or foreign device)."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' {json.dumps(answer)}\n")
    script.chmod(0o755)
    return str(script)


def test_device_answers_of_the_wrong_shape_are_one_line(sshd, prefix, tmp_path, capsys):
    python = _fake_device_python(tmp_path, "[]")
    assert main(["deploy", "status", sshd.host, "--ssh-config", str(sshd.client_config), "--prefix", str(prefix),
                 "--remote-python", python]) == 1
    line = _one_line(capsys)
    assert "the deploy agent answered list, not an object" in line and "internal error" not in line


def test_escape_sequences_from_a_device_are_escaped_in_human_output(sshd, prefix, tmp_path, capsys):
    answer = json.dumps({"prefix": "/p", "current": "\x1b]0;owned\x07\x1b[2J", "history": [], "releases": ["r\x1b[31m"],
                         "service": None, "last_result": None})
    python = _fake_device_python(tmp_path, answer)
    assert main(["deploy", "status", sshd.host, "--ssh-config", str(sshd.client_config), "--prefix", str(prefix),
                 "--remote-python", python]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;owned\\x07\\x1b[2J" in out and "r\\x1b[31m" in out


def test_stream_credentials_never_leak_to_output_or_readable_device_files(tiny_bundle, sshd, deploy_argv, prefix,
                                                                         capsys):
    source = "rtsp://cam:s3cr3t-pw@127.0.0.1:9/stream"
    code = main(["deploy", str(tiny_bundle), sshd.host,
                 *deploy_argv("--source", source, "--health-timeout", "8", "--json")])
    assert code == 1  # nothing listens on port 9: the health check fails, and says so
    out, err = capsys.readouterr()
    assert "s3cr3t-pw" not in out + err
    log = (prefix / "service.log").read_text()
    assert "s3cr3t-pw" not in log and "rtsp://cam:***@127.0.0.1:9/stream" in log  # the service's own lines
    for name in ("service.json", "service.argv.json", "service.log", "deploy-state.json"):
        mode = stat.S_IMODE((prefix / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_a_newline_in_the_source_never_reaches_a_systemd_unit(tiny_bundle, sshd, deploy_argv, prefix, tmp_path,
                                                             capsys):
    witness = tmp_path / "pwned"
    source = f"/dev/video0\nExecStartPre=/bin/touch {witness}"
    assert main(["deploy", str(tiny_bundle), sshd.host, *deploy_argv("--source", source)]) == 1
    assert "contains a control character" in _one_line(capsys)
    assert not prefix.exists() and not witness.exists()
    layout = agent_layout.Layout(str(tmp_path / "p"))
    with pytest.raises(protocol.AgentError, match="control character"):  # the device refuses it too
        unit.render_unit("ExecStart=$exec_start\n$user_line\n$wanted_by\n$prefix", layout,
                         {"scope": "user"}, ["python", "--source", source])


def test_an_unexpected_failure_of_the_agent_is_a_device_side_error(tmp_path, capsys, monkeypatch):
    def broken(args, layout):
        raise KeyError("releases")

    parser = agent_cli.build_parser

    def patched():
        p = parser()
        p._subparsers._group_actions[0].choices["status"].set_defaults(func=broken)
        return p

    monkeypatch.setattr(agent_cli, "build_parser", patched)
    assert agent_cli.main(["--prefix", str(tmp_path), "status"]) == 1
    assert json.loads(capsys.readouterr().out) == {"error": "device-side error: KeyError: 'releases'"}


def test_a_damaged_deploy_state_is_reported_and_status_and_rollback_still_work(
        tiny_bundle, sshd, deploy_argv, prefix, tmp_path, capsys):
    first = tiny_bundle
    second = tmp_path / "second"
    shutil.copytree(tiny_bundle, second)
    manifest = json.loads((second / MANIFEST).read_text())
    manifest["variant"] = "second"
    (second / MANIFEST).write_text(json.dumps(manifest))
    for bundle in (first, second):
        assert main(["deploy", str(bundle), sshd.host, *deploy_argv("--no-service")]) == 0
    (prefix / "deploy-state.json").write_text('{"history": [{"release": 7}]')
    capsys.readouterr()
    assert main(["deploy", "status", sshd.host, *deploy_argv()]) == 0
    out = capsys.readouterr().out
    assert "deploy-state.json is damaged" in out and f"current release {_release_id(second)}" in out
    assert main(["deploy", "rollback", sshd.host, *deploy_argv()]) == 0
    assert os.readlink(prefix / "current") == f"releases/{_release_id(first)}"
    state = json.loads((prefix / "deploy-state.json").read_text())  # rewritten whole
    assert [e["release"] for e in state["history"]] == [_release_id(first)]
