"""`edgepipe bench BUNDLE --host`: a real `edgepipe bench` on the 'device' over the test sshd."""

from __future__ import annotations

import json
import sys

import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import MANIFEST, sha256_file


def _bench_args(sshd, prefix, *extra: str) -> list[str]:
    """`edgepipe bench ... --host` with the test sshd's connection flags (shared with deploy)."""
    return ["bench", *extra, "--host", sshd.host, "--ssh-config", str(sshd.client_config),
            "--prefix", str(prefix), "--remote-python", sys.executable]


def test_bench_on_the_device_copies_the_bundle_and_brings_its_json_back(tiny_bundle, sshd, prefix, tmp_path, capsys):
    out_file = tmp_path / "device.json"
    args = _bench_args(sshd, prefix, str(tiny_bundle), "--runs", "20", "--warmup", "2", "--threads", "1",
                       "--out", str(out_file))
    assert main(args) == 0
    table = capsys.readouterr().out
    report = json.loads(out_file.read_text())
    assert report["schema"] == "edgepipe.bench/1"
    assert report["environment"]["ssh_host"] == sshd.host
    (result,) = report["results"]
    assert result["runs"] == 20 and result["threads"] == 1 and result["accelerator"] == "cpu"
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    # The bundle went through the verified upload, but the device's `current` is untouched.
    release_id = sha256_file(tiny_bundle / MANIFEST)[:16]
    assert (prefix / "releases" / release_id / "model.tflite").is_file()
    assert not (prefix / "current").exists()
    # Printed beside the same plan measured here: two rows, the device's as a ratio to this machine's.
    rows = [line for line in table.splitlines() if " cpu " in line]
    assert len(rows) == 2 and "1.00x" in rows[0]


def test_bench_host_is_dispatched_to_the_deploy_stage(tiny_bundle, closed_port, capsys):
    assert main(["bench", str(tiny_bundle), "--host", f"root@127.0.0.1:{closed_port}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgepipe bench: error: root@127.0.0.1:") and "cannot connect" in err


def test_bench_host_refuses_flags_naming_local_files(tiny_bundle, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", str(tiny_bundle), "--host", "pi@cam", "--image", str(tmp_path / "cat.jpg")])
    assert exit_info.value.code == 2
    assert "--image is not supported with --host" in capsys.readouterr().err


def test_bench_host_reports_the_golden_set_check_beside_the_latency(golden_bundle, sshd, prefix, tmp_path, capsys):
    out_file = tmp_path / "device.json"
    args = _bench_args(sshd, prefix, str(golden_bundle), "--runs", "5", "--warmup", "1", "--threads", "1",
                       "--out", str(out_file))
    assert main(args) == 0
    printed = capsys.readouterr().out
    verification = json.loads(out_file.read_text())["verification"]
    [cpu] = verification["checks"]
    assert verification["passed"] and (cpu["accelerator"], cpu["agreed"], cpu["n"]) == ("cpu", 8, 8)
    assert f"answers on {sshd.host}: verified on the device at" in printed
    assert "cpu passed top-1 agreement 100.0% (8/8, max score diff 0.000)" in printed
