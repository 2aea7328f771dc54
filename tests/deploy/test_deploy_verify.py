"""deploy runs the golden set on the device before it switches `current`
(real OpenSSH server on 127.0.0.1, the device agent, the device's own
`edgepipe verify`): a bundle whose answers differ there never becomes current."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bundle_helpers import with_changed_answer

from edgepipe.cli import main
from edgepipe.device.model.bundle import MANIFEST, sha256_file


def _id(bundle: Path) -> str:
    return sha256_file(bundle / MANIFEST)[:16]


def _deploy(bundle: Path, sshd, deploy_argv, *extra: str) -> int:
    return main(["deploy", str(bundle), sshd.host, *deploy_argv("--no-service", *extra)])


def _status(sshd, deploy_argv, capsys) -> tuple[dict, str]:
    capsys.readouterr()
    assert main(["deploy", "status", sshd.host, *deploy_argv("--json")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert main(["deploy", "status", sshd.host, *deploy_argv()]) == 0
    return result, capsys.readouterr().out


def test_verified_release_is_switched_and_status_shows_the_check(golden_bundle, sshd, deploy_argv, prefix, capsys):
    assert _deploy(golden_bundle, sshd, deploy_argv) == 0
    out, err = capsys.readouterr()
    assert "running the golden set on the device (`edgepipe verify --accelerator all`) before switching" in err
    assert "verified on the device at" in out and "cpu passed top-1 agreement 100.0% (8/8, max score diff 0.000)" in out
    assert os.readlink(prefix / "current") == f"releases/{_id(golden_bundle)}"
    status, text = _status(sshd, deploy_argv, capsys)
    [cpu] = status["verification"]["checks"]
    assert status["verification"]["passed"] and (cpu["agreed"], cpu["n"], cpu["max_abs_diff"]) == (8, 8, 0.0)
    assert "  answers    verified on the device at" in text


def test_release_whose_answers_differ_is_discarded_and_current_stays(golden_bundle, sshd, deploy_argv, prefix,
                                                                     tmp_path, capsys):
    assert _deploy(golden_bundle, sshd, deploy_argv) == 0
    changed = with_changed_answer(golden_bundle, tmp_path / "changed")
    capsys.readouterr()
    assert _deploy(changed, sshd, deploy_argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"release {_id(changed)} failed verification on the device: cpu model top-1 agreement 87.5% (7/8) " \
           "< 100%, largest score difference" in err
    assert f"the release was discarded and current stays {_id(golden_bundle)}" in err
    assert os.readlink(prefix / "current") == f"releases/{_id(golden_bundle)}"
    assert sorted(p.name for p in (prefix / "releases").iterdir()) == [_id(golden_bundle)]
    status, _ = _status(sshd, deploy_argv, capsys)
    assert status["current"] == _id(golden_bundle) and status["verification"]["passed"]


def test_no_verify_skips_the_check_with_a_warning(golden_bundle, sshd, deploy_argv, prefix, tmp_path, capsys):
    changed = with_changed_answer(golden_bundle, tmp_path / "changed")
    assert _deploy(changed, sshd, deploy_argv, "--no-verify") == 0
    assert "warning: --no-verify: the bundle's answers are not checked on the device" in capsys.readouterr().err
    assert os.readlink(prefix / "current") == f"releases/{_id(changed)}"
    status, text = _status(sshd, deploy_argv, capsys)
    assert status["verification"] is None and "answers    not verified on the device" in text


def test_bundle_without_golden_set_deploys_with_a_warning(tiny_bundle, sshd, deploy_argv, prefix, capsys):
    assert _deploy(tiny_bundle, sshd, deploy_argv) == 0
    assert "has no golden set (converted with --no-golden): its answers are not checked" in capsys.readouterr().err


def test_a_detection_bundle_is_shipped_and_verified_as_a_classification_one(detect_golden_bundle, sshd, deploy_argv,
                                                                            prefix, capsys):
    assert _deploy(detect_golden_bundle, sshd, deploy_argv) == 0
    out, err = capsys.readouterr()
    assert "verified on the device at" in out and "cpu passed objects agree (class and IoU) on 100.0% (3/3" in out
    assert os.readlink(prefix / "current") == f"releases/{_id(detect_golden_bundle)}"
    manifest = json.loads((prefix / "current" / MANIFEST).read_text())
    assert manifest["task"] == "detect" and (prefix / "current" / "golden" / "000.jpg").is_file()
