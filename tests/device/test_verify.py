"""`edgepipe verify` on real bundles with a golden set: a bundle that answers as
recorded passes with exact numbers, one whose answers changed fails with the
agreement and the images, and a damaged or foreign golden set is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import rehash, with_changed_answer

from edgepipe.cli import main
from edgepipe.device.model.bundle import BundleError, load_bundle
from edgepipe.device.model.golden import read_golden
from edgepipe.device.model.options import VerifyOptions
from edgepipe.device.model.verify import verify_bundle


def verify_json(capsys, *args: str) -> tuple[int, dict, str]:
    code = main(["verify", *args, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def expected_accuracy(bundle: Path) -> float:
    images = json.loads((bundle / "bundle.json").read_text())["golden"]["images"]
    return float(np.mean([np.argmax(e["expected"]) == e["label"] for e in images]))


def test_golden_bundle_verifies_on_the_cpu_with_identical_scores(golden_bundle, capsys):
    code, report, err = verify_json(capsys, str(golden_bundle))
    assert code == 0, err
    assert report["passed"] is True and report["golden_images"] == 8
    [cpu] = report["checks"]
    assert cpu["accelerator"] == "cpu" and cpu["status"] == "passed" and cpu["min_agreement"] == 1.0
    m = cpu["comparison"]
    assert (m["n"], m["agreed"], m["top1_agreement"]) == (8, 8, 1.0)
    assert m["max_abs_diff"] == 0.0 and m["mean_abs_diff"] == 0.0 and m["disagreements"] == []
    assert m["accuracy"] == expected_accuracy(golden_bundle)
    assert cpu["runtime"].startswith("ai_edge_litert ")


def test_golden_images_are_two_per_class_stored_byte_for_byte(golden_bundle, shapes_dataset):
    manifest = load_bundle(golden_bundle).manifest
    images = manifest["golden"]["images"]
    assert sorted(e["label"] for e in images) == [0, 0, 1, 1, 2, 2, 3, 3]
    originals = {p.read_bytes() for p in shapes_dataset.rglob("*.jpg")}
    for entry in images:
        assert entry["file"] in manifest["files"] and entry["file"].startswith("golden/")
        assert (golden_bundle / entry["file"]).read_bytes() in originals
    assert manifest["golden"]["min_agreement"] == {"cpu": 1.0, "edgetpu": 0.95}


@pytest.fixture
def changed_answers(tmp_path, golden_bundle) -> Path:
    return with_changed_answer(golden_bundle, tmp_path / "changed")


def test_changed_answers_fail_with_agreement_and_the_image(changed_answers, capsys):
    code, report, err = verify_json(capsys, str(changed_answers), "--accelerator", "cpu")
    assert code == 1 and report["passed"] is False
    [cpu] = report["checks"]
    assert cpu["status"] == "failed" and cpu["comparison"]["agreed"] == 7
    [wrong] = cpu["comparison"]["disagreements"]
    assert wrong["file"] == "golden/000.jpg"
    assert cpu["comparison"]["max_abs_diff"] > 1.0
    assert err.count("\n") == 1
    assert "edgepipe verify: error: cpu model top-1 agreement 87.5% (7/8) < 100%, largest score difference" in err


def test_min_agreement_overrides_the_bundle_threshold(changed_answers, capsys):
    assert main(["verify", str(changed_answers), "--min-agreement", "85"]) == 0
    out = capsys.readouterr().out
    assert "cpu      PASSED  top-1 agreement 87.5% (7/8) >= 85%" in out
    assert "disagrees: golden/000.jpg" in out


def test_bundle_without_golden_set_says_so(tiny_bundle, capsys):
    assert main(["verify", str(tiny_bundle)]) == 1
    assert "has no golden set (converted with --no-golden" in capsys.readouterr().err


def test_edited_golden_image_is_refused_by_its_hash(tmp_path, golden_bundle):
    root = Path(shutil.copytree(golden_bundle, tmp_path / "edited"))
    with open(root / "golden" / "003.jpg", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="golden/003.jpg does not match its sha256"):
        verify_bundle(VerifyOptions(root))


@pytest.mark.parametrize("name", ["../model.tflite", "/etc/passwd", "golden/../labels.txt", "labels.txt", "golden/x.txt"])
def test_golden_entries_outside_golden_dir_are_refused(tmp_path, golden_bundle, name):
    root = Path(shutil.copytree(golden_bundle, tmp_path / "escape"))
    golden = json.loads((root / "bundle.json").read_text())["golden"]
    golden["images"][0]["file"] = name
    rehash(root, golden=golden)
    with pytest.raises(BundleError, match="is not a plain image under golden/"):
        read_golden(load_bundle(root))


def test_golden_entry_with_wrong_score_count_is_refused(tmp_path, golden_bundle):
    root = Path(shutil.copytree(golden_bundle, tmp_path / "short"))
    golden = json.loads((root / "bundle.json").read_text())["golden"]
    golden["images"][2]["expected"] = [0.5, 0.5]
    rehash(root, golden=golden)
    with pytest.raises(BundleError, match="needs 4 finite expected scores"):
        read_golden(load_bundle(root))



def test_a_detection_bundles_golden_set_is_checked_by_class_and_overlap(detect_bundle, detect_golden_bundle,
                                                                         tmp_path, capsys):
    from raccoon_data import with_detect_golden

    root = detect_golden_bundle
    assert main(["verify", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["checks"][0]["comparison"]["agreed"] == 3

    moved = with_detect_golden(detect_bundle, tmp_path / "moved", shift=0.3)  # every box a third off
    assert main(["verify", str(moved)]) == 1
    out, err = capsys.readouterr()
    assert "objects agree (class and IoU) on 0.0% (0/3)" in err and len(err.strip().splitlines()) == 1
    assert "disagrees: golden/000.jpg" in out
