"""`deploy collect` against a device that lies (hostile_agent.py over the real sshd): about sizes,
hashes, names, labels and the listing's shape. Nothing it says may fill the disk, replace a file,
escape DIR, or stop the honest pairs from arriving."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import sha256_file

HERE = Path(__file__).parent
HONEST = "20260101T000000000Z-00000001"


@pytest.fixture
def device(prefix: Path) -> Path:
    folder = prefix / "collect"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def hostile(sshd, prefix: Path, tmp_path: Path):
    """CLI arguments for `deploy collect` whose agent answers `answer` (any JSON text)."""
    script = tmp_path / "hostile-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "hostile_agent.py"}" "$@"\n')
    script.chmod(0o755)

    def argv(answer: object, to: Path, raw: str | None = None) -> list[str]:
        (prefix / "hostile-answer.json").write_text(raw if raw is not None else json.dumps(answer))
        return ["deploy", "collect", sshd.host, "--to", str(to), "--json", "--ssh-config", str(sshd.client_config),
                "--prefix", str(prefix), "--remote-python", str(script)]

    return argv


def _pair(device: Path, stem: str, label: object = "daisy", image: bytes = b"\xff\xd8jpeg", **lies) -> dict:
    (device / f"{stem}.jpg").write_bytes(image)
    (device / f"{stem}.json").write_text(json.dumps({"label": label}) if not isinstance(label, bytes)
                                         else label.decode())
    entry = {"stem": stem, "jpg": sha256_file(device / f"{stem}.jpg"), "json": sha256_file(device / f"{stem}.json"),
             "jpg_bytes": len(image), "json_bytes": (device / f"{stem}.json").stat().st_size}
    return {**entry, **lies}


def _listing(device: Path, *entries) -> dict:
    return {"dir": str(device), "pairs": list(entries)}


def _files(to: Path) -> list[str]:
    return sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file())


def _run(argv, capsys) -> tuple[int, dict | None, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_more_bytes_than_listed_is_cut_at_the_listed_size_and_deleted(device, hostile, tmp_path, capsys):
    big = os.urandom(3 << 20)
    liar = _pair(device, "20260101T000001000Z-00000002", image=big, jpg_bytes=1000)  # right hash, small size
    honest = _pair(device, HONEST)
    to = tmp_path / "field"
    code, result, err = _run(hostile(_listing(device, liar, honest), to), capsys)
    assert code == 1 and result["copied"] == 1 and result["failed"] == [liar["stem"]], err
    assert _files(to) == [f"daisy/{HONEST}.jpg", f"daisy/{HONEST}.json"]  # nothing left in .incoming
    assert "not arrive intact" in err


def test_a_listed_size_past_the_maximum_or_of_the_wrong_type_is_refused(device, hostile, tmp_path, capsys):
    entries = [_pair(device, "20260101T000001000Z-00000002", jpg_bytes=1 << 40),
               _pair(device, "20260101T000002000Z-00000003", json_bytes=True),
               _pair(device, "20260101T000003000Z-00000004", jpg_bytes="12"),
               5, None, {"stem": "../../x"}, _pair(device, HONEST), _pair(device, HONEST)]
    code, result, err = _run(hostile(_listing(device, *entries), tmp_path / "f"), capsys)
    assert code == 0 and result["copied"] == 1 and result["malformed"] == 7
    assert "7 malformed entries in the device's listing were skipped" in err


def test_a_wrong_hash_is_deleted_and_the_others_arrive(device, hostile, tmp_path, capsys):
    liar = _pair(device, "20260101T000001000Z-00000002", jpg="0" * 64)
    to = tmp_path / "f"
    code, result, _ = _run(hostile(_listing(device, liar, _pair(device, HONEST)), to), capsys)
    assert code == 1 and result["failed"] == [liar["stem"]] and len(_files(to)) == 2


UNSAFE_LABELS = ["cat\n", "x" * 120, "€" * 99, ".incoming", "..", "a/b", "taken", "link", "del\x7f", 7, None]


def test_unsafe_labels_go_to_unknown_and_stop_nothing(device, hostile, tmp_path, capsys):
    to = tmp_path / "f"
    to.mkdir()
    (to / "taken").write_text("a user's file")
    (to / "link").symlink_to(tmp_path)
    entries = [_pair(device, f"20260101T00000{i}000Z-0000000{i}", label) for i, label in enumerate(UNSAFE_LABELS)]
    code, result, _ = _run(hostile(_listing(device, *entries, _pair(device, HONEST, "daisy")), to), capsys)
    assert code == 0 and result["labels"] == {"unknown": len(UNSAFE_LABELS), "daisy": 1}
    assert (to / "taken").read_text() == "a user's file" and (to / "link").is_symlink()
    assert sorted(p.name for p in to.iterdir()) == ["daisy", "link", "taken", "unknown"]


def test_a_sidecar_that_is_not_an_object_fails_its_pair_only(device, hostile, tmp_path, capsys):
    nested = _pair(device, "20260101T000001000Z-00000002", label=b"[" * 100000 + b"]" * 100000)
    listed = _pair(device, "20260101T000002000Z-00000003", label=b'["a list"]')
    code, result, err = _run(hostile(_listing(device, nested, listed, _pair(device, HONEST)), tmp_path / "f"), capsys)
    assert code == 1 and result["copied"] == 1 and sorted(result["failed"]) == [nested["stem"], listed["stem"]]
    assert "not a JSON object" in err and "Traceback" not in err


def test_a_different_pair_of_the_same_name_is_kept_beside_not_over(device, hostile, tmp_path, capsys):
    to = tmp_path / "f"
    (to / "daisy").mkdir(parents=True)
    (to / "daisy" / f"{HONEST}.jpg").write_bytes(b"the user's own photo")
    entry = _pair(device, HONEST)
    code, result, _ = _run(hostile(_listing(device, entry), to), capsys)
    assert code == 0 and result["renamed"] == 1
    assert (to / "daisy" / f"{HONEST}.jpg").read_bytes() == b"the user's own photo"
    kept = to / "daisy" / f"{HONEST}-{entry['jpg'][:12]}"
    assert sha256_file(kept.with_suffix(".jpg")) == entry["jpg"]
    code, result, _ = _run(hostile(_listing(device, entry), to), capsys)  # the next run knows it is here
    assert code == 0 and result["already_here"] == 1 and result["copied"] == 0


@pytest.mark.parametrize("raw", ['{"dir": "/x", "pairs": null}', '{"dir": 5, "pairs": []}', "[1, 2]",
                                 '{"pairs": {"a": 1}, "dir": "/x"}', '"text"'])
def test_a_listing_of_the_wrong_shape_is_one_line(device, hostile, tmp_path, capsys, raw):
    code = main(hostile(None, tmp_path / "f", raw=raw))
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_to_naming_a_file_is_one_line(device, hostile, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = main(hostile(_listing(device), tmp_path / "file"))
    err = capsys.readouterr().err
    assert code == 1 and "is a file" in err and len(err.strip().splitlines()) == 1
