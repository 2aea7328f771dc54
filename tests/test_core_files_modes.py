"""Atomic outputs end with the modes the umask gives any other file (not mkstemp's 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edgepipe.core.files import atomic_directory, atomic_write_bytes, atomic_write_text


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request: pytest.FixtureRequest):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_files_get_the_umask_modes(tmp_path: Path, umask: int):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    atomic_write_text(tmp_path / "stats.json", "{}\n")
    atomic_write_bytes(tmp_path / "plot.png", b"\x89PNG")
    assert mode(tmp_path / "stats.json") == mode(plain) == 0o666 & ~umask
    assert mode(tmp_path / "plot.png") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.json", "plot.png", "stats.json"]


def test_atomic_directory_gets_the_umask_mode(tmp_path: Path, umask: int):
    with atomic_directory(tmp_path / "bundle") as tmp:
        (tmp / "model.tflite").write_bytes(b"x")
    (tmp_path / "plain").mkdir()
    assert mode(tmp_path / "bundle") == mode(tmp_path / "plain") == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_failed_atomic_directory_leaves_nothing(tmp_path: Path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "bundle") as tmp:
            (tmp / "half").write_bytes(b"x")
            raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
