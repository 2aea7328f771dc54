"""The small-data trap of issue 25, as a new user meets it: 3 classes of 30 real photos,
trained and converted with defaults. The held-out split (18 images) cannot place a
threshold at the 1% tail, so convert must fall back to a rule that cannot reject most
correct answers, say so in its output and in bundle.json's warnings, and `classify`
must then not answer "unknown" for photos of the classes it knows. Photos of a fourth class
given to convert (--unknown-dir) choose the score and measure its false-accept rate, which
MODEL_CARD.md reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgepipe.cli import main

CLASSES, PER_CLASS = ("daisy", "iris", "pansy"), 30


@pytest.mark.e2e
def test_three_classes_of_thirty_photos_fall_back_and_keep_their_answers(flowers12: Path, mobilenet_v2_weights: Path,
                                                                          tmp_path: Path, capsys) -> None:
    photos = tmp_path / "photos"
    for cls in CLASSES:
        (photos / cls).mkdir(parents=True)
        for photo in sorted((flowers12 / cls).iterdir())[:PER_CLASS]:
            shutil.copy(photo, photos / cls / photo.name)
    other = tmp_path / "not_these" / "sunflower"  # photos of none of the 3 classes, for --unknown-dir
    other.mkdir(parents=True)
    for photo in sorted((flowers12 / "sunflower").iterdir())[:20]:
        shutil.copy(photo, other / photo.name)
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    assert main(["train", str(photos), "--out", str(run), "--weights", str(mobilenet_v2_weights)]) == 0
    capsys.readouterr()
    assert main(["convert", str(run), "--out", str(bundle), "--method", "ptq", "--unknown-dir", str(other.parent)]) == 0
    out = capsys.readouterr().out
    manifest = json.loads((bundle / "bundle.json").read_text())
    unknown = manifest["unknown"]
    assert unknown["n"] == 18 and unknown["threshold_rule"] == "fallback" and "(fallback)" in out
    [warning] = [w for w in manifest["warnings"] if w.startswith("unknown:")]
    assert "only 18 held-out in-class images" in warning and f"warning: {warning}" in out
    assert unknown["selection"]["criterion"] == "AUROC of held-out in-class images vs the --unknown-dir images"
    far = unknown["false_accept"]
    assert far["n"] == 20 and far["on"] == "20 images of --unknown-dir" and 0.0 <= far["auroc"] <= 1.0
    card = (bundle / "MODEL_CARD.md").read_text()
    assert f"**{far['false_accept_rate'] * 100:.1f}%** on 20 images" in card and "Too few held-out images" in card
    images = sorted(photos.rglob("*.jpg"))
    assert main(["classify", str(bundle), *map(str, images), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    rejected = [r for r in rows if r["label"] == "unknown"]
    assert len(rows) == 90 and len(rejected) <= 1  # the trap rejected 18 of 300 in-class frames
