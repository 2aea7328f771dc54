"""`edgepipe deploy` against a real OpenSSH server on 127.0.0.1 (see conftest.py).

The service runs through the device agent's `process` manager (no service
manager runs in CI): a real `edgepipe run` process on the 'device' (this
machine) classifying a real video with the real tiny int8 bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgepipe import __version__
from edgepipe.cli import main
from edgepipe.deploy import release
from edgepipe.core.ssh import SshError
from edgepipe.device.model.bundle import MANIFEST, sha256_file
from edgepipe.core.errors import UserError


def _variant(tiny_bundle: Path, tmp_path: Path, name: str) -> Path:
    """The tiny bundle with a different manifest, hence a different release id."""
    root = tmp_path / name
    shutil.copytree(tiny_bundle, root)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["variant"] = name
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return root


def _release_id(bundle: Path) -> str:
    return sha256_file(bundle / MANIFEST)[:16]


def _deploy(bundle: Path, sshd, deploy_argv, *extra: str) -> int:
    return main(["deploy", str(bundle), sshd.host, *deploy_argv(*extra)])


def _history(prefix: Path) -> list[str]:
    return [entry["release"] for entry in json.loads((prefix / "deploy-state.json").read_text())["history"]]


def _releases(prefix: Path) -> list[str]:
    return sorted(p.name for p in (prefix / "releases").iterdir())


def _service_pid(prefix: Path) -> int:
    return int(json.loads((prefix / "service.pid").read_text())["pid"])


def test_deploy_uploads_verifies_switches_and_starts_a_healthy_service(
        tiny_bundle, sshd, deploy_argv, prefix, video, capsys):
    assert _deploy(tiny_bundle, sshd, deploy_argv, "--source", str(video), "--json") == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    release_id = _release_id(tiny_bundle)
    assert result["release"] == release_id and result["previous"] is None
    assert result["health"]["healthy"] and result["health"]["result"]["top"][0]["label"]
    assert "python" in err and f"edgepipe {__version__}" in err  # the device report
    # Files and hashes on the 'device', the current link and the unit template.
    release_dir = prefix / "releases" / release_id
    manifest = json.loads((release_dir / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["labels.txt", "model.tflite"]
    for name, digest in manifest["files"].items():
        assert sha256_file(release_dir / name) == digest
    assert os.readlink(prefix / "current") == f"releases/{release_id}"
    assert (prefix / "edgepipe.service.in").read_text() == (
        Path(release.__file__).parent / "templates" / "edgepipe.service").read_text()
    argv = json.loads((prefix / "service.argv.json").read_text())["argv"]
    assert argv == [sys.executable, "-m", "edgepipe", "run", str(prefix / "current"), "--json",
                    "--source", str(video), "--accelerator", "auto"]
    assert _history(prefix) == [release_id]


def test_keep_prunes_old_releases_and_redeploy_reuses_a_verified_release(
        tiny_bundle, sshd, deploy_argv, prefix, tmp_path, capsys):
    bundles = [_variant(tiny_bundle, tmp_path, f"v{i}") for i in range(3)]
    for bundle in bundles:
        assert _deploy(bundle, sshd, deploy_argv, "--no-service", "--keep", "2") == 0
    ids = [_release_id(b) for b in bundles]
    assert _releases(prefix) == sorted(ids[1:])
    assert _history(prefix) == ids[1:]
    capsys.readouterr()
    assert _deploy(bundles[1], sshd, deploy_argv, "--no-service", "--keep", "2") == 0
    assert "already on the device (verified)" in capsys.readouterr().err
    assert os.readlink(prefix / "current") == f"releases/{ids[1]}"
    assert _history(prefix) == [ids[2], ids[1]]


def test_unknown_host_key_is_one_clear_line_and_changes_nothing(tiny_bundle, sshd, deploy_argv, prefix, capsys):
    config = sshd.write_client_config("unknown", known_hosts="")
    argv = deploy_argv("--no-service")
    argv[argv.index("--ssh-config") + 1] = str(config)
    assert main(["deploy", str(tiny_bundle), sshd.host, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "host key not known" in err and f"ssh-keyscan -p {sshd.port} 127.0.0.1" in err
    assert not prefix.exists()


def test_auth_failure_names_ssh_copy_id(tiny_bundle, sshd, deploy_argv, prefix, tmp_path, capsys):
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    config = sshd.write_client_config("stranger", known_hosts=sshd.known_hosts_line, identity=stranger)
    argv = deploy_argv("--no-service")
    argv[argv.index("--ssh-config") + 1] = str(config)
    assert main(["deploy", str(tiny_bundle), sshd.host, *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert "authentication failed" in err and "ssh-copy-id" in err and len(err.splitlines()) == 1
    assert not prefix.exists()


def test_unreachable_host_fails_fast_with_one_line(tiny_bundle, sshd, deploy_argv, closed_port, capsys):
    argv = ["deploy", str(tiny_bundle), f"{sshd.user}@127.0.0.1:{closed_port}", *deploy_argv("--no-service")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "cannot connect" in err and "Connection refused" in err and len(err.splitlines()) == 1


def test_device_without_edgepipe_is_refused_before_upload(tiny_bundle, sshd, deploy_argv, prefix, capsys):
    python = "/usr/bin/python3"
    probe = subprocess.run([python, "-c", "import edgepipe"], capture_output=True, cwd="/")
    if probe.returncode == 0 or not os.path.exists(python):
        pytest.skip(f"needs a python3 without edgepipe at {python}")
    argv = deploy_argv("--no-service")
    argv[argv.index("--remote-python") + 1] = python
    assert main(["deploy", str(tiny_bundle), sshd.host, *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"edgepipe is not importable by {python}" in err and "pi-setup.sh" in err
    assert _releases(prefix) == [] and not (prefix / "current").exists()


def _cut_upload(remote, local: Path, remote_path: str) -> None:
    """A transfer that dies half-way: half of the model really arrives, then the link drops."""
    half = Path(remote_path)
    half.mkdir(parents=True)
    data = (local / "model.tflite").read_bytes()
    (half / "model.tflite").write_bytes(data[: len(data) // 2])
    raise SshError(f"{remote.target}: cannot connect (Connection reset by peer); upload of {local.name} did not complete")


def test_cut_transfer_keeps_the_previous_release_running_and_leaves_no_release(
        tiny_bundle, sshd, remote, prefix, video, tmp_path):
    service = release.ServiceSettings(manager="process", source=str(video), health_timeout=60)
    first = release.deploy(remote, tiny_bundle, service, keep=3, say=lambda _: None)
    pid = _service_pid(prefix)
    second = _variant(tiny_bundle, tmp_path, "v2")
    with pytest.raises(SshError, match="did not complete"):
        release.deploy(remote, second, service, keep=3, upload=_cut_upload, say=lambda _: None)
    assert os.readlink(prefix / "current") == f"releases/{first['release']}"
    assert _service_pid(prefix) == pid  # never restarted
    assert _releases(prefix) == [first["release"]]  # the failed upload's partial was discarded
    # An upload cut with the link (nothing could discard it) is removed by the next deploy before anything else.
    (prefix / "releases" / f".{_release_id(second)}.partial").mkdir()
    messages: list[str] = []
    release.deploy(remote, tiny_bundle, None, keep=3, say=messages.append)
    assert _releases(prefix) == [first["release"]]
    assert f"removed interrupted uploads: .{_release_id(second)}.partial" in messages


def _corrupting_upload(remote, local: Path, remote_path: str) -> None:
    """A real scp whose copy is then damaged on the device (bad SD card, flaky link)."""
    remote.upload(local, remote_path)
    model = Path(remote_path) / "model.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))


def test_hash_mismatch_on_the_device_discards_the_upload(tiny_bundle, sshd, remote, prefix, tmp_path):
    first = release.deploy(remote, tiny_bundle, None, keep=3, say=lambda _: None)
    second = _variant(tiny_bundle, tmp_path, "v2")
    with pytest.raises(UserError, match="model.tflite does not match its sha256 on the device"):
        release.deploy(remote, second, None, keep=3, upload=_corrupting_upload, say=lambda _: None)
    assert _releases(prefix) == [first["release"]]
    assert os.readlink(prefix / "current") == f"releases/{first['release']}"


def test_failed_health_check_rolls_back_then_status_and_manual_rollback(
        tiny_bundle, sshd, deploy_argv, prefix, video, tmp_path, capsys):
    good, bad = tiny_bundle, _variant(tiny_bundle, tmp_path, "v2")
    good_id, bad_id = _release_id(good), _release_id(bad)
    assert _deploy(good, sshd, deploy_argv, "--source", str(video)) == 0
    capsys.readouterr()
    # The new release's service cannot open its source: no result -> back to the good one.
    assert _deploy(bad, sshd, deploy_argv, "--source", str(tmp_path / "missing.mp4"),
                   "--health-timeout", "60", "--json") == 1
    out, err = capsys.readouterr()
    err = err.strip().splitlines()[-1]
    assert f"release {bad_id} failed its health check" in err and f"rolled back to {good_id}" in err
    assert "missing.mp4 does not exist" in err  # the service's own last error line
    outcome = json.loads(out)
    assert outcome["rolled_back"] and not outcome["health"]["healthy"] and outcome["previous_health"]["healthy"]
    assert os.readlink(prefix / "current") == f"releases/{good_id}"
    assert _releases(prefix) == [good_id] and _history(prefix) == [good_id]
    assert main(["deploy", "status", sshd.host, *deploy_argv("--json")]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["current"] == good_id and status["service"]["state"] in ("active", "exited")
    assert status["last_result"]["top"]

    # A manual rollback goes back along the history, and refuses past its start.
    assert _deploy(bad, sshd, deploy_argv, "--source", str(video)) == 0
    assert main(["deploy", "rollback", sshd.host, *deploy_argv()]) == 0
    assert f"running release {good_id} (previous {bad_id})" in capsys.readouterr().out
    assert os.readlink(prefix / "current") == f"releases/{good_id}"
    assert main(["deploy", "rollback", sshd.host, *deploy_argv()]) == 1
    assert "no previous release to roll back to" in capsys.readouterr().err

    # The running release redeployed with a broken setting keeps its release and its old settings.
    assert _deploy(good, sshd, deploy_argv, "--source", str(tmp_path / "missing.mp4")) == 1
    assert f"restored {good_id} with its previous service settings" in capsys.readouterr().err
    assert _history(prefix) == [good_id] and _releases(prefix) == [good_id]
    assert str(video) in json.loads((prefix / "service.argv.json").read_text())["argv"]


def test_release_damaged_on_the_device_is_uploaded_again(tiny_bundle, sshd, remote, prefix):
    first = release.deploy(remote, tiny_bundle, None, keep=3, say=lambda _: None)
    model = prefix / "releases" / first["release"] / "model.tflite"
    model.write_bytes(model.read_bytes()[:100])  # a bad SD card
    messages: list[str] = []
    release.deploy(remote, tiny_bundle, None, keep=3, say=messages.append)
    assert any(m.startswith("uploading") for m in messages)
    assert sha256_file(model) == sha256_file(tiny_bundle / "model.tflite")
    assert _releases(prefix) == [first["release"]]
    assert os.readlink(prefix / "current") == f"releases/{first['release']}"
