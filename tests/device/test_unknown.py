"""Saying "unknown": the confidence scores, the rule, the bundle's validated block,
and `classify`/`run` with a real bundle and the real interpreter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.core.errors import UserError
from edgepipe.device.model.bundle import MANIFEST, load_bundle
from edgepipe.device.model.unknown import UnknownRule, confidence, resolve, rule_from_manifest, soften

LABELS = ["circle", "square", "triangle", "cross"]


def test_confidence_kinds_on_known_vectors():
    p = np.array([[0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]])
    assert confidence(p, "max_softmax").tolist() == [0.5, 0.25]
    assert confidence(p, "margin") == pytest.approx([0.2, 0.0])
    assert confidence(p, "temperature", 1.0) == pytest.approx([0.5, 0.25], abs=1e-5)
    sharper = confidence(p, "temperature", 0.5)  # p**2 renormalised: 0.25 / 0.38
    assert sharper[0] == pytest.approx(0.25 / 0.38, abs=1e-5) and sharper[1] == pytest.approx(0.25)
    assert soften(p, 2.0).sum(axis=1) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="unknown score kind"):
        confidence(p, "entropy")


def test_rule_judges_threshold_and_background():
    rule = UnknownRule("max_softmax", 0.6, background=3)
    assert rule.judge(np.array([0.7, 0.1, 0.1, 0.1])).unknown is False
    low = rule.judge(np.array([0.5, 0.3, 0.1, 0.1]))
    assert low.unknown and low.reason == "below threshold" and low.confidence == pytest.approx(0.5)
    background = rule.judge(np.array([0.0, 0.0, 0.1, 0.9]))
    assert background.unknown and background.reason == "background class"
    rows = np.array([[0.7, 0.1, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1], [0.0, 0.0, 0.1, 0.9]])
    assert rule.judge_all(rows).tolist() == [False, True, True]


@pytest.mark.parametrize("block, message", [
    ({"score": "max_softmax", "threshold": 1.5}, "unknown.threshold is 1.5"),
    ({"score": "max_softmax", "threshold": "0.5"}, "unknown.threshold is '0.5'"),
    ({"score": "max_softmax", "threshold": float("nan")}, "unknown.threshold is nan"),
    ({"score": "entropy", "threshold": 0.5}, "unknown.score is 'entropy'"),
    ({"score": "temperature", "threshold": 0.5, "temperature": 0}, "unknown.temperature is 0"),
    ({"score": "margin", "threshold": 0.5, "background_class": "dog"}, "'dog' is not one of"),
    ("0.5", "`unknown` is not an object"),
])
def test_bundle_block_is_validated(block, message):
    with pytest.raises(UserError, match=message):
        rule_from_manifest({"unknown": block}, LABELS, "bundle.json")


def test_bundle_block_read_and_modes_resolved():
    assert rule_from_manifest({}, LABELS, "x") is None
    rule = rule_from_manifest({"unknown": {"score": "temperature", "threshold": 0.4, "temperature": 2.0,
                                           "background_class": "cross"}}, LABELS, "x")
    assert rule == UnknownRule("temperature", 0.4, 2.0, 3)
    assert resolve("auto", rule) is rule and resolve("off", rule) is None and resolve("auto", None) is None
    assert resolve(0.9, rule) == UnknownRule("temperature", 0.9, 2.0, 3)
    assert resolve(0.3, None) == UnknownRule("max_softmax", 0.3)


def calibrated_copy(tiny_bundle: Path, tmp_path: Path, **block) -> Path:
    """`tiny_bundle` with an "unknown" block (bundle.json hashes the other files, not itself)."""
    root = Path(shutil.copytree(tiny_bundle, tmp_path / "calibrated"))
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["unknown"] = {"score": "max_softmax", "threshold": 0.5, "temperature": 1.0, **block}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


def test_classify_says_unknown_below_the_bundles_threshold_and_keeps_the_best_class(
        tiny_bundle, shapes_dataset, tmp_path, capsys):
    images = sorted(shapes_dataset.rglob("*.jpg"))[:4]
    plain = main(["classify", str(tiny_bundle), *map(str, images), "--json", "--top-k", "2"])
    baseline = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert plain == 0 and all(r["label"] == r["top"][0]["label"] and "confidence" not in r for r in baseline)
    strict = calibrated_copy(tiny_bundle, tmp_path, threshold=1.0)  # nothing reaches 1.0 in uint8 softmax
    assert load_bundle(strict).unknown == UnknownRule("max_softmax", 1.0)
    assert main(["classify", str(strict), *map(str, images), "--json", "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert "unknown: max_softmax below 1" in err
    for row, base in zip(rows, baseline):
        assert row["label"] == "unknown" and row["top"] == base["top"]
        assert row["confidence"] == pytest.approx(base["top"][0]["score"])
    assert main(["classify", str(strict), str(images[0]), "--unknown", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == baseline[0]["label"]
    assert main(["classify", str(strict), str(images[0]), "--unknown", "0"]) == 0
    assert "unknown" not in capsys.readouterr().out


def test_run_reports_unknown_per_frame_with_a_threshold_given_on_the_command_line(tiny_bundle, video, capsys,
                                                                                     tmp_path):
    stats = tmp_path / "stats.json"
    assert main(["run", str(tiny_bundle), "--source", str(video.path), "--json", "--max-frames", "6",
                 "--unknown", "0.999", "--stats-json", str(stats)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6
    # the summary says which score decided, and how often
    assert json.loads(stats.read_text())["unknown"] == {"score": "max_softmax", "rule": "max_softmax below 0.999",
                                                        "frames": 6}
    for row in rows:
        assert row["label"] == "unknown" and row["top"][0]["label"] != "unknown"
        assert row["confidence"] == pytest.approx(row["top"][0]["score"]) and row["confidence"] < 0.999


def test_bad_unknown_option_and_bad_bundle_block_are_one_line_errors(tiny_bundle, shapes_dataset, tmp_path, capsys):
    image = str(sorted(shapes_dataset.rglob("*.jpg"))[0])
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", str(tiny_bundle), image, "--unknown", "sometimes"])
    assert exit_info.value.code == 2 and "not auto, off or a threshold" in capsys.readouterr().err
    broken = calibrated_copy(tiny_bundle, tmp_path, threshold=2)
    assert main(["classify", str(broken), image]) != 0
    assert "unknown.threshold is 2" in capsys.readouterr().err


def test_an_unknown_frame_is_drawn_as_unknown_and_its_line_keeps_the_best_class():
    from edgepipe.device.model.postprocess import Prediction
    from edgepipe.device.run.results import FrameResult
    from edgepipe.device.model.unknown import Verdict

    image = np.zeros((240, 320, 3), np.uint8)
    top = [Prediction(1, "square", 0.41)]

    def frame(verdict):
        return FrameResult(3, 0.0, top, {"inference": 1.0}, 5.0, None, image, verdict)

    sure, unsure = frame(Verdict(False, 0.41)), frame(Verdict(True, 0.41, "below threshold"))
    assert unsure.label == "unknown" and sure.label == "square" and frame(None).label == "square"
    assert unsure.human_line().startswith("frame 3: unknown (best: square 0.410)")
    assert unsure.to_json()["label"] == "unknown" and unsure.to_json()["top"][0]["label"] == "square"
    assert "confidence" not in frame(None).to_json()
    drawn_sure, drawn_unsure = sure.annotated, unsure.annotated
    assert np.count_nonzero(drawn_unsure) > np.count_nonzero(drawn_sure) > 0  # the longer "unknown (best ...)" text


def test_a_feature_rule_needs_its_listed_file_and_a_features_output(tiny_bundle, shapes_dataset, tmp_path, capsys):
    import hashlib

    from edgepipe.device.model.feature_score import FeatureScore

    image = str(sorted(shapes_dataset.rglob("*.jpg"))[0])
    root = calibrated_copy(tiny_bundle, tmp_path, score="knn_cosine")
    assert main(["classify", str(root), image]) != 0
    assert "needs the model's features output and unknown.npz" in capsys.readouterr().err
    data = FeatureScore("knn_cosine", {"bank": np.eye(2, 8, dtype=np.float32)}).to_bytes()
    (root / "unknown.npz").write_bytes(data)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["files"]["unknown.npz"] = hashlib.sha256(data).hexdigest()
    manifest["output"]["features_dim"] = 8
    (root / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(root).unknown.features.dim == 8  # listed, hashed and valid: it loads
    assert main(["classify", str(root), image]) != 0  # but this model gives scores only
    assert "has no features output, but the bundle's unknown score knn_cosine needs one" in capsys.readouterr().err
