"""MODEL_CARD.md: what a bundle is for and how far to trust it, written by convert.

Everything in it is read from the run (config.json) and from what convert
measured on the held-out split, so the card cannot claim more than was
measured; what was not measured says so.
"""

from __future__ import annotations

from typing import Any

from edgepipe.train.run_dir import TrainedRun

from .provenance import public_training_config

MODEL_CARD = "MODEL_CARD.md"


def _pct(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "not measured"


def _data_section(run: TrainedRun) -> list[str]:
    config = public_training_config(run.config)
    held_out = "a separate folder" if config.get("val_dir") else f"a stratified {config.get('val_split', '?')} split"
    folders = config.get("data_dirs") or [config.get("data_dir", "?")]
    lines = [
        f"- Training folders: {', '.join(f'`{f}`' for f in folders)}"
        + (f"; validation folder `{config['val_dir']}`" if config.get("val_dir") else ""),
        f"- Images: {config.get('num_train', '?')} for training, {config.get('num_val', '?')} held out "
        f"({held_out}), "
        f"{config.get('num_skipped', 0)} unreadable skipped",
        f"- Model: {config.get('architecture', '?')} alpha {config.get('alpha', '?')}, "
        f"{run.input_spec.width}x{run.input_spec.height} input, backbone weights `{config.get('weights', '?')}`",
    ]
    return lines


def _unknown_section(unknown: dict[str, Any]) -> list[str]:
    selection = unknown["selection"]
    aurocs = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in selection["auroc"].items())
    far = unknown.get("false_accept")
    features = unknown.get("features")
    lines = [
        f"- Score: `{unknown['score']}`"
        + (f" (temperature {unknown['temperature']:.3g})" if unknown["score"] == "temperature" else "")
        + (f" (distance in feature space: the model's {features['dim']} pooled features against those of "
           f"{features['fitted_on']} training images, fitted in `{features['file']}`)" if features else "")
        + f", threshold **{unknown['threshold']:.4f}**: below it `run` and `classify` answer \"unknown\".",
        (f"- Calibrated to accept {unknown['accept_target']:.0%} of the {unknown['n']} held-out in-class images; "
         if unknown.get("threshold_rule") != "fallback" else
         f"- Too few held-out images to calibrate ({unknown['n']} in-class): a fallback threshold that cannot reject "
         "most correct answers (see bundle.json warnings); ")
        + f"measured: {_pct(unknown['accepted'])} accepted.",
        f"- Score chosen by {selection['criterion']} ({selection['reason']}; {selection['misclassified']} "
        f"misclassified): {aurocs}.",
    ]
    if unknown.get("background_class"):
        lines.append(f"- Background class `{unknown['background_class']}` is reported as unknown.")
    if far:
        lines.append(f"- False-accept rate (images of none of the classes given a class anyway): "
                     f"**{_pct(far['false_accept_rate'])}** on {far['n']} images ({far['on']})"
                     + (f"; AUROC of held-out in-class images vs them {far['auroc']:.3f}." if far.get("auroc") is not None
                        else "."))
    else:
        lines.append("- False-accept rate: not measured (convert had no images of none of the classes); measure it "
                     "with `edgepipe evaluate BUNDLE --split val --run RUN_DIR --unknown-dir DIR`.")
    return lines


def _imx500_section(block: dict[str, Any]) -> list[str]:
    accuracy, memory = block["accuracy"], block["memory"]
    return [
        "",
        "## Raspberry Pi AI Camera (IMX500)",
        "",
        f"- `{block['package']}` (imxconv-tf {block['toolchain'].get('imx500-converter', '?')}, Model Compression "
        f"Toolkit {block['toolchain'].get('model-compression-toolkit', '?')}) uses "
        f"{memory['used_bytes'] / 2**20:.2f} MiB of the sensor's {memory['available_bytes'] / 2**20:.2f} MiB.",
        f"- Input contract: {block['input']['rule']}; RGB at the model's input size, scaled by the sensor's ISP.",
        f"- Simulated-sensor accuracy **{_pct(accuracy['simulated_sensor'])}** on {accuracy['n']} held-out images "
        f"(float {_pct(accuracy['float'])}; float on the sensor's input {_pct(accuracy['float_sensor_input'])}): "
        f"{accuracy['how']}. Not measured on a camera: `edgepipe verify --accelerator imx500` on the Pi runs the "
        "golden set on the sensor itself.",
    ]


def _heading(extra: dict[str, Any]) -> list[str]:
    return ["# Model card", "",
            f"Written by {extra['created_by']} on {extra['created']} from the training run `{extra['source']['run_dir']}`.",
            "", "## Intended use", ""]


def model_card(run: TrainedRun, accuracy: dict[str, Any], drift: dict[str, Any], extra: dict[str, Any]) -> str:
    """The card's markdown for the bundle being written."""
    quantization = extra["quantization"]
    labels = ", ".join(f"`{label}`" for label in run.labels)
    lines = [
        *_heading(extra),
        f"Classify camera frames or photos into one of {len(run.labels)} classes: {labels}; "
        "say \"unknown\" for images that look like none of them. It was trained only on the folders below: it "
        "knows nothing of the world outside them, and its numbers hold only for images like the held-out ones. "
        "Do not use it to identify people or for decisions about people.",
        "",
        "## Data",
        "",
        *_data_section(run),
        "",
        "## Held-out metrics",
        "",
        f"On {accuracy['n']} held-out images, through the device runtime: int8 ({quantization['method']}) top-1 "
        f"accuracy **{_pct(accuracy['int8'])}**, float {_pct(accuracy['float'])}, top-1 agreement "
        f"{_pct(accuracy['top1_agreement'])}.",
        "",
        "| class | int8 accuracy | float accuracy |",
        "| --- | --- | --- |",
        *(f"| {name} | {_pct(row[drift['quantized']])} | {_pct(row[drift['reference']])} |"
          for name, row in drift["per_class"].items()),
        "",
        "## Unknown",
        "",
        *_unknown_section(extra["unknown"]),
        "",
        "## Known limits",
        "",
        f"- {accuracy['n']} held-out images: each per-class number rests on few images, so a few points either "
        "way is noise.",
        "- The threshold trades answers for safety: a stricter one rejects more in-class images too. Re-calibrate "
        "(`edgepipe convert`) after retraining; `run --unknown P` overrides it.",
        "- Lighting, camera, distance and season unlike the training photos lower accuracy in ways these numbers "
        "do not show; collect field frames (`run --collect`) and retrain on them.",
    ]
    if extra.get("imx500"):
        lines += _imx500_section(extra["imx500"])
    if extra.get("warnings"):
        lines += ["", "## Conversion warnings", "", *(f"- {w}" for w in extra["warnings"])]
    return "\n".join(lines) + "\n"


def _map(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "not measured"


def detection_model_card(run: TrainedRun, accuracy: dict[str, Any], extra: dict[str, Any]) -> str:
    """The card of a detection bundle: what it finds, on what data, and its measured mAP."""
    config = public_training_config(run.config)
    quantization = extra["quantization"]
    labels = ", ".join(f"`{label}`" for label in run.labels)
    test, val = accuracy["test"], accuracy["validation"]
    rows = [f"| {name} | {_map(test[name]['map50'])} | {_map(test[name]['map50_95'])} | "
            f"{_map(val[name]['map50']) if name in val else '-'} |" for name in test]
    folders = ", ".join(f"`{f}`" for f in config.get("data_dirs", []))
    lines = [
        *_heading(extra),
        f"Find and box objects of {len(run.labels)} classes in camera frames or photos: {labels}. It was trained only "
        "on the photos below: it knows nothing of the world outside them, and its numbers hold only for images like "
        "the test photos. Do not use it to identify people or for decisions about people.",
        "",
        "## Data",
        "",
        f"- Folders: {folders}",
        f"- Photos: {config.get('num_train', '?')} for training, {config.get('num_val', '?')} for validation "
        f"(early stopping and the choice of the int8 model), {config.get('num_test', '?')} for test (never used "
        "in training or in any choice)",
        f"- Model: SSDLite on MobileNetV2 (backbone weights `{config.get('weights', '?')}`), "
        f"{run.input_spec.width}x{run.input_spec.height} input, {config.get('anchors', '?')} anchors; "
        f"postprocess `TFLite_Detection_PostProcess` (at most {config.get('postprocess', {}).get('max_detections', '?')} "
        "detections)",
        "",
        "## Measured mAP",
        "",
        f"COCO mAP (pycocotools) on {accuracy['n']} test photos through the device runtime; shipped: int8 "
        f"{quantization['method']} (**{_map(accuracy['int8'])}** mAP@0.5, float {_map(accuracy['float'])}); "
        f"chosen by {quantization['choice']['decided_by']} on {val['n']} validation photos.",
        "",
        "| model | test mAP@0.5 | test mAP@[.5:.95] | validation mAP@0.5 |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "Per class, shipped int8 on the test photos (a mean can hide one weak class):",
        "",
        "| class | AP@0.5 | AP@[.5:.95] | test boxes |",
        "| --- | --- | --- | --- |",
        *(f"| `{name}` | {_map(row['ap50'])} | {_map(row['ap50_95'])} | {row['boxes']} |"
          for name, row in test[quantization["method"]]["per_class"].items()),
        "",
        "## Known limits",
        "",
        f"- {accuracy['n']} test photos: mAP moves by a few hundredths with a few photos either way.",
        "- Objects much smaller than those in the training photos, unusual viewpoints, lighting or cameras lower "
        "the numbers in ways these do not show; collect field frames and retrain on them.",
    ]
    if extra.get("warnings"):
        lines += ["", "## Conversion warnings", "", *(f"- {w}" for w in extra["warnings"])]
    return "\n".join(lines) + "\n"
