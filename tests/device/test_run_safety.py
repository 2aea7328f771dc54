"""`edgepipe run` says what happened and leaks nothing (issue 11, classes 7, 8 and 10):
outputs checked writable before the run, lost video frames counted and
reported, stream credentials redacted everywhere, labels escaped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import LABELS, MANIFEST, sha256_file


@pytest.fixture
def read_only_folder(tmp_path: Path, mount_tmpfs):
    """A real read-only filesystem (root ignores permission bits, not a read-only mount)."""
    return mount_tmpfs(tmp_path / "ro", "ro,size=1m")


@pytest.mark.parametrize("flag", ["--stats-json", "--record"])
def test_an_unwritable_output_fails_before_the_run(tiny_bundle, video, read_only_folder, capsys, flag):
    target = read_only_folder / ("stats.json" if flag == "--stats-json" else "out.mp4")
    assert main(["run", str(tiny_bundle), "--source", str(video.path), "--json", flag, str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == ""  # nothing ran
    assert f"cannot write {target}: {read_only_folder} is not a writable folder (Read-only file system)" in err
    assert "internal error" not in err and "codec" not in err


def _corrupt_mid_file(video, tmp_path: Path) -> Path:
    data = bytearray(video.path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 1500] = b"\xab" * 1500
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    return broken


def test_frames_lost_to_a_corrupt_video_are_counted_and_fail_the_run(tiny_bundle, video, tmp_path, capsys):
    broken = _corrupt_mid_file(video, tmp_path)
    stats = tmp_path / "stats.json"
    assert main(["run", str(tiny_bundle), "--source", str(broken), "--json", "--stats-json", str(stats)]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(stats.read_text())
    assert summary["lost_frames"] > 0 and summary["frames"] + summary["lost_frames"] == video.frames
    assert f"{summary['lost_frames']} of the video's frames could not be decoded" in err
    assert main(["run", str(tiny_bundle), "--source", str(broken), "--json", "--ignore-decode-errors"]) == 0


def test_a_whole_video_has_no_lost_frames(tiny_bundle, video, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    assert main(["run", str(tiny_bundle), "--source", str(video.path), "--json", "--stats-json", str(stats)]) == 0
    assert json.loads(stats.read_text())["lost_frames"] == 0


def test_stream_credentials_are_redacted_in_errors_retries_summary_and_stats(tiny_bundle, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    source = "rtsp://cam:s3cr3t-pw@127.0.0.1:9/stream"
    code = main(["run", str(tiny_bundle), "--source", source, "--max-retries", "1", "--stats-json", str(stats)])
    out, err = capsys.readouterr()
    assert code == 1
    written = stats.read_text()
    assert "s3cr3t-pw" not in out + err + written
    assert "rtsp://cam:***@127.0.0.1:9/stream" in err and json.loads(written)["source"] == "rtsp://cam:***@127.0.0.1:9/stream"
    assert "retry 1/1" in err


def test_labels_with_terminal_escapes_are_escaped_in_human_output(tiny_bundle, image_folder, tmp_path, capsys):
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    labels = (root / LABELS).read_text().splitlines()
    labels = [f"\x1b]0;owned\x07{label}\x1b[2J" for label in labels]
    (root / LABELS).write_text("\n".join(labels) + "\n")
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["files"][LABELS] = sha256_file(root / LABELS)
    (root / MANIFEST).write_text(json.dumps(manifest))
    assert main(["classify", str(root), str(image_folder["good"][0])]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07" in out
    assert main(["classify", str(root), str(image_folder["good"][0]), "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"][0]["label"]  # JSON stays JSON: the label itself, escaped by JSON
    assert top.startswith("\x1b]0;owned\x07")
