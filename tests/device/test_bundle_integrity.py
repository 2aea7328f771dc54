"""The bundle is a trust boundary: only what the manifest lists, hashed from
the bytes that are loaded, inside the bundle, plain files (issue 11, class 1)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgepipe.cli import main
from edgepipe.device.model.bundle import CPU_MODEL, LABELS, MANIFEST, BundleError, load_bundle, sha256_file
from edgepipe.device.model.classifier import open_classifier


def _copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, root)
    return root


def _edit(root: Path, change) -> None:
    manifest = json.loads((root / MANIFEST).read_text())
    change(manifest)
    (root / MANIFEST).write_text(json.dumps(manifest))


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_model_not_listed_in_files_is_never_loaded(tiny_bundle, tmp_path, capsys):
    root = _copy(tiny_bundle, tmp_path)
    shutil.copy(root / CPU_MODEL, root / "unlisted.tflite")
    _edit(root, lambda m: m["models"].update(cpu="unlisted.tflite"))
    err = _one_line_error(capsys, ["classify", str(root), str(tmp_path)])
    assert "models.cpu 'unlisted.tflite' is not listed in `files`" in err


def test_labels_outside_the_bundle_are_refused_before_reading(tiny_bundle, tmp_path, capsys):
    root = _copy(tiny_bundle, tmp_path)
    evil = tmp_path / "evil_labels.txt"
    evil.write_text("a\nb\nc\n")
    _edit(root, lambda m: (m.update(labels_file="../evil_labels.txt"),
                           m["files"].update({"../evil_labels.txt": sha256_file(evil)})))
    before = os.stat(evil).st_atime_ns
    with pytest.raises(BundleError, match=r"'\.\./evil_labels\.txt', not a plain relative path"):
        load_bundle(root)
    assert os.stat(evil).st_atime_ns == before


@pytest.mark.parametrize("name", ["/etc/hostname", "./labels.txt", "a//b", "dir\\x", ""])
def test_absolute_or_unplain_names_with_a_right_hash_are_refused(tiny_bundle, tmp_path, name):
    root = _copy(tiny_bundle, tmp_path)
    digest = sha256_file(Path("/etc/hostname")) if name == "/etc/hostname" else "0" * 64
    _edit(root, lambda m: m["files"].update({name: digest}))
    with pytest.raises(BundleError, match="not a plain relative path inside the bundle"):
        load_bundle(root)


def test_a_listed_symlink_is_refused_even_with_the_right_hash(tiny_bundle, tmp_path):
    root = _copy(tiny_bundle, tmp_path)
    real = tmp_path / "labels-elsewhere.txt"
    shutil.move(root / LABELS, real)
    (root / LABELS).symlink_to(real)
    with pytest.raises(BundleError, match="labels.txt is a symlink or not a regular file"):
        load_bundle(root)


def test_the_loaded_model_bytes_are_the_hashed_bytes(tiny_bundle, tmp_path):
    root = _copy(tiny_bundle, tmp_path)
    bundle = load_bundle(root)
    with open(root / CPU_MODEL, "r+b") as f:  # changed after the whole-bundle check: the load itself re-checks
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(BundleError, match="model.tflite does not match its sha256"):
        bundle.read_model("cpu")


@pytest.mark.parametrize("manifest", ["[]", '"x"', '{"schema_version": 1, "files": []}',
                                      '{"schema_version": 1, "files": {"labels.txt": 5}}'])
def test_a_manifest_of_the_wrong_shape_is_one_line(tiny_bundle, tmp_path, capsys, manifest):
    root = _copy(tiny_bundle, tmp_path)
    (root / MANIFEST).write_text(manifest)
    err = _one_line_error(capsys, ["classify", str(root), str(tmp_path)])
    assert "error: " in err and "bundle.json" in err and "internal error" not in err


def test_a_huge_model_file_is_refused_by_its_header_without_reading_it(tmp_path):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros, no TFL3 identifier
    with pytest.raises(Exception, match="is not a TFLite model"):
        open_classifier(big)
