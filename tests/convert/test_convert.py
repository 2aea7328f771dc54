"""`edgepipe convert` end to end on a real RUN_DIR (a small flat Keras classifier
trained on the synthetic shapes): candidates measured through the device
runtime, the bundle contract, Edge TPU compilation paths, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgepipe.cli import main
from edgepipe.convert import converter
from edgepipe.convert.metadata import METADATA_NAME, read_metadata
from edgepipe.device.model.bundle import load_bundle
from edgepipe.device.model.classifier import open_classifier
from edgepipe.device.model.modelinfo import read_model_info
from edgepipe.device.model.preprocess import load_image
from edgepipe.train.device_eval import run_files
from edgepipe.train.metrics import classification_report
from edgepipe.convert.provenance import public_training_config
from edgepipe.train.run_dir import load_run


def convert(run: Path, out: Path, *extra: str) -> int:
    return main(["convert", str(run), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def auto_bundle(small_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default conversion (PTQ and QAT both measured), run once for the tests below."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("bundles") / "auto"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = convert(small_run, out, "--qat-epochs", "1", "--float32", "--json")
    return {"rc": rc, "out": out, "summary": json.loads(stdout.getvalue())}


def test_convert_writes_a_bundle_that_loads_and_runs(auto_bundle: dict, small_run: Path) -> None:
    assert auto_bundle["rc"] == 0
    bundle = load_bundle(auto_bundle["out"], verify=True)
    assert bundle.models == {"cpu": "model.tflite"}
    assert bundle.labels == load_run(small_run).labels
    assert bundle.input_spec.dtype == "uint8" and bundle.input_spec.scale > 0
    assert (bundle.input_spec.height, bundle.input_spec.width) == (32, 32)
    classifier = open_classifier(auto_bundle["out"])
    assert classifier.input_spec == bundle.input_spec and classifier.num_classes == 4
    assert {"model.tflite", "model_float32.tflite", "labels.txt", "drift.json", "drift.md"} <= set(bundle.manifest["files"])


def test_bundle_json_records_both_methods_and_ships_the_better(auto_bundle: dict, small_run: Path) -> None:
    manifest = load_bundle(auto_bundle["out"]).manifest
    acc = manifest["accuracy"]
    assert acc["split"] == "held-out validation of RUN_DIR" and acc["n"] == 24
    assert 0 <= acc["ptq"] <= 1 and 0 <= acc["qat"] <= 1 and acc["edgetpu"] is None
    shipped = manifest["quantization"]["method"]
    assert acc["int8"] == acc[shipped] == max(acc["ptq"], acc["qat"])
    assert manifest["quantization"]["requested"] == "auto"
    config = json.loads((small_run / "config.json").read_text())
    paths = {"data_dir", "data_dirs", "val_dir", "weights", "images_per_folder"}
    assert {k: v for k, v in manifest["training"].items() if k not in paths} == {k: v for k, v in config.items() if k not in paths}
    assert manifest["training"]["data_dir"] == Path(config["data_dir"]).name != config["data_dir"]
    assert manifest["output"]["dtype"] == "uint8" and manifest["output"]["num_classes"] == 4
    assert manifest["output"]["activation"] == "softmax"
    assert manifest["edgetpu"]["compiled"] is False and manifest["edgetpu"]["compiler"] is None
    assert manifest["edgetpu"]["prediction"]["mapped_fraction"] == 1.0
    assert manifest["extra_models"] == {"float32": "model_float32.tflite"}
    summary = auto_bundle["summary"]
    assert summary["status"] == "ok" and summary["accuracy"] == acc


def test_no_file_of_the_bundle_names_a_workstation_path(auto_bundle: dict, small_run: Path) -> None:
    """A bundle goes to every device and its model card to every user: no absolute path, no user name."""
    leaks = [str(small_run.parent), str(small_run.resolve().parent), str(Path.home())]
    for path in auto_bundle["out"].rglob("*"):
        if path.is_file() and path.suffix in {".json", ".md", ".txt"}:
            text = path.read_text()
            assert not [leak for leak in leaks if leak in text], path.name
    assert load_bundle(auto_bundle["out"]).manifest["source"]["run_dir"] == small_run.name


def test_recorded_int8_accuracy_is_what_the_device_runtime_measures(auto_bundle: dict, small_run: Path) -> None:
    run = load_run(small_run)
    files = run.split_files("val")
    outputs = run_files(auto_bundle["out"], [p for p, _ in files])
    scores, unreadable = outputs.scores, outputs.unreadable
    measured = float(np.mean(scores.argmax(axis=1) == np.array([label for _, label in files])))
    assert unreadable == [] and measured == load_bundle(auto_bundle["out"]).manifest["accuracy"]["int8"]


def test_drift_report_compares_int8_with_float(auto_bundle: dict) -> None:
    drift = json.loads((auto_bundle["out"] / "drift.json").read_text())
    acc = load_bundle(auto_bundle["out"]).manifest["accuracy"]
    assert drift["n"] == 24 and drift["accuracy"] == {"float": acc["float"], "int8": acc["int8"]}
    assert drift["drop_points"] == pytest.approx((acc["float"] - acc["int8"]) * 100, abs=0.01)
    assert len(drift["changed"]) == round((1 - drift["top1_agreement"]) * 24)
    assert np.asarray(drift["confusion_difference"]).sum() == 0  # same images, moved between cells
    assert set(drift["per_class"]) == {"circle", "square", "triangle", "cross"}
    text = (auto_bundle["out"] / "drift.md").read_text()
    assert "## Per-class accuracy" in text and "top-1 agreement" in text


def test_golden_set_holds_every_class_with_the_shipped_models_device_scores(auto_bundle: dict, small_run: Path, capsys) -> None:
    manifest = load_bundle(auto_bundle["out"]).manifest
    images = manifest["golden"]["images"]
    run = load_run(small_run)
    held_out = run.split_files("val")
    assert len(images) == len(held_out) == 24  # default 48: the whole small split
    assert sorted(e["label"] for e in images) == sorted(label for _, label in held_out)
    assert all(e["file"] in manifest["files"] for e in images) and manifest["golden"]["min_agreement"]["cpu"] == 1.0
    by_bytes = {p.read_bytes(): label for p, label in held_out}
    files = [auto_bundle["out"] / e["file"] for e in images]
    assert [by_bytes[f.read_bytes()] for f in files] == [e["label"] for e in images]  # copied byte for byte
    scores = run_files(auto_bundle["out"], files).scores
    np.testing.assert_array_equal(scores, np.asarray([e["expected"] for e in images], dtype=np.float32))
    assert main(["verify", str(auto_bundle["out"]), "--json"]) == 0
    [cpu] = json.loads(capsys.readouterr().out)["checks"]
    assert cpu["comparison"]["top1_agreement"] == 1.0 and cpu["comparison"]["max_abs_diff"] == 0.0


def test_ptq_qat_choice_records_accuracy_and_closeness_to_float(auto_bundle: dict) -> None:
    manifest = load_bundle(auto_bundle["out"]).manifest
    choice = manifest["quantization"]["choice"]
    drift = json.loads((auto_bundle["out"] / "drift.json").read_text())
    assert set(drift["closeness_to_float"]) == {"ptq", "qat"}
    for name in ("ptq", "qat"):
        numbers = choice["candidates"][name]
        assert numbers["accuracy"] == manifest["accuracy"][name]
        assert numbers["mean_kl"] == drift["closeness_to_float"][name]["mean_kl"] >= 0
        assert 0 <= numbers["mean_abs_diff"] == drift["closeness_to_float"][name]["mean_abs_diff"] < 1
    ptq, qat = choice["candidates"]["ptq"], choice["candidates"]["qat"]
    expected = "accuracy" if ptq["accuracy"] != qat["accuracy"] else "closeness to float"
    assert choice["decided_by"] == expected
    assert "Closeness to the float model" in (auto_bundle["out"] / "drift.md").read_text()


def _candidate(name: str, accuracy: float) -> converter.Candidate:
    report = {"accuracy": accuracy}
    return converter.Candidate(name, Path(name), converter.Evaluation(name, np.zeros((1, 2), np.float32), report))


@pytest.mark.parametrize("ptq_acc, qat_acc, ptq_kl, qat_kl, shipped, decided_by", [
    (0.95, 0.95, 0.020, 0.010, "qat", "closeness to float"),
    (0.95, 0.95, 0.010, 0.020, "ptq", "closeness to float"),
    (0.96, 0.95, 0.090, 0.010, "ptq", "accuracy"),
    (0.95, 0.95, 0.010, 0.010, "ptq", "tie: PTQ"),
])
def test_accuracy_tie_goes_to_the_model_closer_to_float(ptq_acc, qat_acc, ptq_kl, qat_kl, shipped, decided_by) -> None:
    candidates = {"ptq": _candidate("ptq", ptq_acc), "qat": _candidate("qat", qat_acc)}
    closeness = {"ptq": {"mean_kl": ptq_kl, "mean_abs_diff": 0.01}, "qat": {"mean_kl": qat_kl, "mean_abs_diff": 0.01}}
    name, choice = converter._choose("auto", candidates, closeness)
    assert (name, choice["decided_by"]) == (shipped, decided_by)
    assert choice["candidates"]["qat"] == {"accuracy": qat_acc, "mean_kl": qat_kl, "mean_abs_diff": 0.01}
    assert converter._choose("ptq", candidates, closeness)[1]["decided_by"] == "forced"


def test_model_file_carries_labels_and_input_spec(auto_bundle: dict) -> None:
    meta = json.loads(read_metadata((auto_bundle["out"] / "model.tflite").read_bytes())[METADATA_NAME])
    assert meta["labels"] == ["circle", "square", "triangle", "cross"] and meta["input"]["height"] == 32


def test_forced_qat_with_edgetpu_with_stand_in_compiler(small_run: Path, tmp_path: Path, stand_in_compiler) -> None:
    stand_in_compiler("success")
    out = tmp_path / "qat"
    assert convert(small_run, out, "--method", "qat", "--qat-epochs", "0", "--edgetpu", "--min-runtime", "13",
                   "--max-drop", "100") == 0  # fmt: skip
    bundle = load_bundle(out)
    manifest = bundle.manifest
    assert manifest["quantization"]["method"] == "qat" and manifest["accuracy"]["ptq"] is not None
    assert bundle.models == {"cpu": "model.tflite", "edgetpu": "model_edgetpu.tflite"}
    assert manifest["edgetpu"]["compiled"] is True
    compiler = manifest["edgetpu"]["compiler"]
    assert compiler["where"] == "local" and "-m" in compiler["command"]
    assert [op["edgetpu"] for op in compiler["ops"]] == ["mapped"] * compiler["total"]
    # the stand-in drops metadata like the real compiler; convert puts it back
    assert METADATA_NAME in read_metadata((out / "model_edgetpu.tflite").read_bytes())
    # calibrated QAT (no fine-tune) starts where PTQ is, not at chance
    assert abs(manifest["accuracy"]["qat"] - manifest["accuracy"]["ptq"]) <= 0.1


def test_no_compiler_keeps_going_with_the_cpu_bundle(small_run: Path, tmp_path: Path, no_compiler, capsys) -> None:
    out = tmp_path / "b"
    assert convert(small_run, out, "--method", "ptq", "--edgetpu", "--max-drop", "100", "--no-golden") == 0
    err = capsys.readouterr().err
    assert "golden" not in load_bundle(out).manifest and not (out / "golden").exists()  # --no-golden
    assert "no Edge TPU compiler" in err and "deploy/edgetpu-compiler/Dockerfile" in err and "--compiler-host" in err
    edgetpu = load_bundle(out).manifest["edgetpu"]
    assert edgetpu["compiled"] is False and edgetpu["compiler"]["available"] is False
    assert edgetpu["prediction"]["mapped"] == edgetpu["prediction"]["total"] > 5


@pytest.mark.parametrize("mode", ["crash", "hang"])
def test_compiler_failure_leaves_no_bundle_with_stand_in_compiler(small_run: Path, tmp_path: Path, stand_in_compiler, mode, capsys) -> None:
    stand_in_compiler(mode)
    out = tmp_path / "b"
    assert convert(small_run, out, "--method", "ptq", "--edgetpu", "--compiler-timeout", "3", "--max-drop", "100") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgepipe convert: error: ") and ("crashed" in err[-1] or "timed out" in err[-1])
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["stand_in_bin"]


def test_max_drop_exceeded_fails_and_keeps_outputs_for_inspection(small_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    real = converter.evaluate_on_device

    def every_label_wrong(name, model, held_out, class_names):
        real(name, model, held_out, class_names)  # the real measurement still runs
        wrong = np.eye(len(class_names), dtype=np.float32)[(held_out.labels + 1) % len(class_names)]
        return converter.Evaluation(name, wrong, classification_report(held_out.labels, None, class_names, scores=wrong))

    monkeypatch.setattr(converter, "evaluate_on_device", every_label_wrong)
    out = tmp_path / "b"
    assert convert(small_run, out, "--method", "ptq", "--max-drop", "2") == 1
    err = capsys.readouterr().err
    rejected = tmp_path / "b.rejected"
    assert not out.exists() and (rejected / "drift.md").is_file() and (rejected / "model.tflite").is_file()
    assert "--max-drop 2" in err and str(rejected) in err
    assert json.loads((rejected / "bundle.json").read_text())["accuracy"]["int8"] == 0.0


def _broken_runs(small_run: Path, root: Path) -> dict[str, Path]:
    import tf_keras as keras

    runs = {}
    for name in ("no_model", "no_labels", "not_classifier", "unreadable"):
        runs[name] = root / name
        shutil.copytree(small_run, runs[name])
    (runs["no_model"] / "model.keras").unlink()
    (runs["no_labels"] / "labels.txt").unlink()
    inputs = keras.Input((32, 32, 3))
    keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)).save(runs["not_classifier"] / "model.keras")
    junk = root / "junk"
    junk.mkdir()
    split = json.loads((small_run / "split.json").read_text())
    for i, entry in enumerate(split["train"]):
        (junk / f"{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        entry[0] = str(junk / f"{i}.jpg")
    (runs["unreadable"] / "split.json").write_text(json.dumps(split))
    return runs


def test_bad_input_is_one_clear_line_and_no_bundle(small_run: Path, tmp_path: Path, capsys) -> None:
    runs = _broken_runs(small_run, tmp_path / "runs")
    expected = {
        "no_model": "has no model.keras",
        "no_labels": "has no labels.txt",
        "not_classifier": "is not a classifier",
        "unreadable": "representative set has no readable images",
    }
    for name, message in expected.items():
        out = tmp_path / f"out_{name}"
        assert convert(runs[name], out, "--method", "ptq") == 1, name
        err = capsys.readouterr().err.strip().splitlines()
        assert message in err[-1] and err[-1].startswith("edgepipe convert: error:"), (name, err)
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_existing_bundle_is_not_overwritten_without_force(small_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "b"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert convert(small_run, out, "--method", "ptq") == 1
    assert "--force" in capsys.readouterr().err and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as bad_argument:
        convert(small_run, out, "--edgetpu", "--segments", "0")
    assert bad_argument.value.code == 2


@pytest.mark.e2e
def test_mobilenet_v2_run_converts_fully_mapped_and_ships_the_better_int8(tmp_path: Path, tiny_int8_model: dict, shapes_dataset: Path) -> None:
    """The real architecture end to end: conftest's MobileNetV2 (alpha 0.35, 96x96), trained briefly."""
    import tf_keras as keras
    from convert_helpers import fitted, write_run_dir

    model = keras.models.clone_model(tiny_int8_model["float_model"])
    model.set_weights(tiny_int8_model["float_model"].get_weights())
    run = write_run_dir(tmp_path / "run", fitted(model, shapes_dataset, 96, epochs=3), shapes_dataset, 96)
    out = tmp_path / "bundle"
    assert convert(run, out, "--qat-epochs", "1", "--max-drop", "100") == 0
    manifest = load_bundle(out).manifest
    assert manifest["edgetpu"]["prediction"]["mapped_fraction"] == 1.0
    assert manifest["accuracy"]["qat"] is not None and manifest["accuracy"]["ptq"] is not None
    assert manifest["accuracy"]["int8"] == max(manifest["accuracy"]["qat"], manifest["accuracy"]["ptq"])


@pytest.mark.parametrize("flag", [("--segments", "2"), ("--min-runtime", "14"), ("--compiler-host", "pi@box")])
def test_compiler_flags_without_edgetpu_are_a_usage_error(cli, small_run: Path, tmp_path: Path, flag) -> None:
    code, _, err = cli("convert", small_run, "--out", tmp_path / "b", *flag)
    assert code == 2 and "need --edgetpu" in err
    assert not (tmp_path / "b").exists()


def test_bundle_carries_the_calibrated_unknown_rule_and_a_model_card(auto_bundle: dict, small_run: Path) -> None:
    from edgepipe.convert.calibrate import FeatureSets, calibrate
    from edgepipe.train.device_eval import run_files

    bundle = load_bundle(auto_bundle["out"])
    block = bundle.manifest["unknown"]
    run = load_run(small_run)
    held_out = run_files(auto_bundle["out"], [p for p, _ in run.split_files("val")])
    train = run_files(auto_bundle["out"], [p for p, _ in run.split_files("train")])
    y = np.array([i for _, i in run.split_files("val")])
    features = FeatureSets(train.features, np.array([i for _, i in run.split_files("train")]), held_out.features)
    expected = calibrate(held_out.scores, y, run.labels, accept=0.99, features=features).block
    # calibrated on the shipped int8 model's held-out scores and its training and held-out features
    assert {k: block[k] for k in expected} == expected
    assert block["n"] == 24 and block["false_accept"] is None and block["threshold_rule"] == "fallback"
    assert any(w.startswith("unknown: only 24 held-out in-class images") for w in bundle.manifest["warnings"])
    assert bundle.unknown is not None and bundle.unknown.threshold == block["threshold"]
    assert auto_bundle["summary"]["unknown"]["threshold"] == block["threshold"]
    card = (auto_bundle["out"] / "MODEL_CARD.md").read_text()
    assert "MODEL_CARD.md" in bundle.manifest["files"]
    assert f"threshold **{block['threshold']:.4f}**" in card and "False-accept rate: not measured" in card
    assert "Too few held-out images to calibrate (24 in-class)" in card
    assert all(f"| {label} |" in card for label in run.labels)
    assert f"top-1 accuracy **{bundle.manifest['accuracy']['int8'] * 100:.1f}%**" in card


def test_provenance_keeps_names_and_tells_same_named_folders_apart() -> None:
    config = {"data_dir": "/home/alice/photos/train", "data_dirs": ["/home/alice/a/train", "/srv/b/train", "/x/field"],
              "images_per_folder": {"/home/alice/a/train": 3, "/srv/b/train": 4, "/x/field": 5},
              "val_dir": None, "weights": "imagenet", "epochs": 5}
    public = public_training_config(config)
    assert public == {"data_dir": "train", "data_dirs": ["train (1)", "train (2)", "field"],
                      "images_per_folder": {"train (1)": 3, "train (2)": 4, "field": 5},
                      "val_dir": None, "weights": "imagenet", "epochs": 5}
    assert public_training_config({"weights": "/home/alice/w/backbone.h5"})["weights"] == "backbone.h5"


def test_the_int8_model_gives_its_pooled_features_and_the_bundle_the_fitted_score(auto_bundle: dict, tmp_path: Path,
                                                                                   capsys) -> None:
    bundle = load_bundle(auto_bundle["out"])
    manifest, rule = bundle.manifest, bundle.unknown
    assert manifest["output"]["features_dim"] == 16 and len(read_model_info(auto_bundle["out"] / "model.tflite").outputs) == 2
    assert manifest["edgetpu"]["prediction"]["mapped_fraction"] == 1.0  # the second output maps too
    by_auroc = manifest["unknown"]["selection"]["auroc"]
    assert set(by_auroc) == {"max_softmax", "temperature", "margin", "mahalanobis", "knn_cosine"}
    assert rule.features is not None  # without --unknown-dir, convert picks a distance score
    assert "unknown.npz" in manifest["files"] and manifest["unknown"]["features"]["dim"] == 16
    images = manifest["golden"]["images"]
    files = [auto_bundle["out"] / e["file"] for e in images]
    classifier = open_classifier(auto_bundle["out"])
    for entry, path in zip(images, files):  # the golden set records the score of the second output
        scores = classifier.invoke(classifier.preprocess(load_image(path)))
        assert entry["expected_unknown"] == pytest.approx(float(rule.values(scores, classifier.features())), abs=1e-6)
    assert main(["classify", str(auto_bundle["out"]), str(files[0]), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["confidence"] == pytest.approx(images[0]["expected_unknown"], abs=1e-6)
    assert f"unknown: {rule.score} below" in err
    flipped = Path(shutil.copytree(auto_bundle["out"], tmp_path / "flipped"))  # the features output "changed"
    changed = json.loads((flipped / "bundle.json").read_text())
    entry = changed["golden"]["images"][0]
    entry["expected_unknown"] = 0.0 if entry["expected_unknown"] >= rule.threshold else 1.0
    (flipped / "bundle.json").write_text(json.dumps(changed))
    assert main(["verify", str(flipped), "--json"]) == 1
    [cpu] = json.loads(capsys.readouterr().out)["checks"]
    assert cpu["status"] == "failed" and cpu["comparison"]["agreed"] == len(images) - 1
    assert cpu["comparison"]["disagreements"][0]["expected_unknown"] == entry["expected_unknown"]
    tampered = Path(shutil.copytree(auto_bundle["out"], tmp_path / "tampered"))
    (tampered / "unknown.npz").write_bytes(b"PK" + (tampered / "unknown.npz").read_bytes()[2:-1])
    assert main(["classify", str(tampered), str(files[0])]) != 0
    assert "unknown.npz does not match its sha256" in capsys.readouterr().err
