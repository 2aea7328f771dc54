"""`edgepipe deploy collect` against the real OpenSSH server on 127.0.0.1: pairs
copied, verified by sha256 and sorted by label, resumed, and deleted on the
device only when they arrived intact."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edgepipe.cli import main
from edgepipe.device.model.bundle import sha256_file


def _pair(folder: Path, stem: str, label: str, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(seed).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    (folder / f"{stem}.jpg").write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
    (folder / f"{stem}.json").write_text(json.dumps({"label": label, "frame": seed}))


def _device(prefix: Path) -> Path:
    device = prefix / "collect"
    _pair(device, "20260101T000000000Z-00000001", "daisy", 1)
    _pair(device, "20260101T000001000Z-00000002", "unknown", 2)
    _pair(device, "20260101T000002000Z-00000003", "../../etc", 3)  # a hostile label stays inside DIR
    (device / "20260101T000003000Z-00000004.jpg").write_bytes(b"half written")  # no sidecar yet: not listed
    return device


def test_collect_copies_verifies_sorts_then_move_deletes_what_arrived(sshd, deploy_argv, prefix, tmp_path, capsys):
    device, to = _device(prefix), tmp_path / "field"
    assert main(["deploy", "collect", sshd.host, "--to", str(to), "--json", *deploy_argv()]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["copied"] == 3 and result["labels"] == {"daisy": 1, "unknown": 2} and result["failed"] == []
    assert sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file()) == [
        "daisy/20260101T000000000Z-00000001.jpg", "daisy/20260101T000000000Z-00000001.json",
        "unknown/20260101T000001000Z-00000002.jpg", "unknown/20260101T000001000Z-00000002.json",
        "unknown/20260101T000002000Z-00000003.jpg", "unknown/20260101T000002000Z-00000003.json"]
    for path in to.rglob("*.jpg"):
        assert sha256_file(path) == sha256_file(device / path.name)
    assert len(list(device.iterdir())) == 7  # copy only: the device keeps everything

    daisy_sha = sha256_file(device / "20260101T000000000Z-00000001.jpg")
    (to / "daisy" / "20260101T000000000Z-00000001.jpg").write_bytes(b"changed here")  # fetched again, beside it
    assert main(["deploy", "collect", sshd.host, "--to", str(to), "--move", *deploy_argv()]) == 0
    out = capsys.readouterr().out
    assert "1 pairs copied" in out and "2 already there" in out and "3 deleted on the device" in out
    assert "1 took the name STEM-<sha256 prefix>" in out
    assert (to / "daisy" / "20260101T000000000Z-00000001.jpg").read_bytes() == b"changed here"  # never replaced
    assert (to / "daisy" / f"20260101T000000000Z-00000001-{daisy_sha[:12]}.jpg").is_file()
    assert [p.name for p in device.iterdir()] == ["20260101T000003000Z-00000004.jpg"]
    assert not (to / ".incoming").exists()


def test_device_deletes_only_pairs_whose_hashes_still_match(sshd, remote, prefix):
    device = _device(prefix)
    stem = "20260101T000000000Z-00000001"
    right = f"{stem}:{sha256_file(device / f'{stem}.jpg')}:{sha256_file(device / f'{stem}.json')}"
    wrong = f"20260101T000001000Z-00000002:{'0' * 64}:{'0' * 64}"
    result = remote.agent("collect-delete", right, wrong, f"../x:{'0' * 64}:{'0' * 64}")
    assert result["deleted"] == [stem] and result["kept"] == ["20260101T000001000Z-00000002", "../x"]
    assert not (device / f"{stem}.jpg").exists() and (device / "20260101T000001000Z-00000002.jpg").exists()


def test_collect_needs_to(sshd, deploy_argv, capsys):
    try:
        code = main(["deploy", "collect", sshd.host, *deploy_argv()])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "needs --to DIR" in capsys.readouterr().err
