"""From a detector's four outputs to boxes in the frame's own pixels.

A detector that ends in TFLite's `TFLite_Detection_PostProcess` op gives
boxes (ymin, xmin, ymax, xmax, fractions of the model input), classes,
scores and a count. Which output is which differs between exporters, so the
op is found in the model's graph and its outputs taken from there; a model
without the op in its graph is read by pycoral's rules (its
`adapters/detect.py`, what most Coral code does): a signature's `output_0..3`
are count, scores, classes, boxes; else, when output 3 holds one value, the
order is boxes, classes, scores, count; else scores, boxes, count, classes.

The outputs are untrusted numbers: a NaN, a box far outside the frame or a
class the labels do not have is one clear error, not a wrong box drawn.
numpy and model/modelinfo (the one .tflite reader) only: this runs on the Pi.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from edgepipe.core.errors import UserError

from .modelinfo import model_info
from .postprocess import Detection
from .preprocess import crop_window

POSTPROCESS_OP = "TFLite_Detection_PostProcess"
OUTPUTS = ("boxes", "classes", "scores", "count")
PYCORAL_SIGNATURE = {"output_0": "count", "output_1": "scores", "output_2": "classes", "output_3": "boxes"}
PYCORAL_ORDER_COUNT_LAST = ("boxes", "classes", "scores", "count")  # output 3 holds one value (TF1 SSDs)
PYCORAL_ORDER_OTHERWISE = ("scores", "boxes", "count", "classes")  # TF2 exports
DEFAULT_SCORE_THRESHOLD = 0.5  # what the device shows, and what evaluation's precision/recall count
BOX_RESIZE_MODES = ("stretch", "letterbox", "center_crop")
# SSD decoding does not clip: a box of an object cut by the frame's edge reaches past it (the trained
# raccoon SSDLite gives ymin -0.27 on test video frames). A whole frame further out is not a box: misread outputs.
BOX_RANGE_SLACK = 1.0


class DetectionOutputError(UserError):
    """A detector's outputs that cannot be boxes: a broken model, or not a detector at all."""


@dataclass(frozen=True)
class DetectionLayout:
    """Where a model's four detection outputs are, by position in its output list, and how that was found."""

    boxes: int
    classes: int
    scores: int
    count: int
    found_by: str  # "the TFLite_Detection_PostProcess op", "the signature (pycoral)", "the output order (pycoral)"
    source: str  # the model, named in messages
    num_classes: int | None = None  # the op's own option, when the op is in the graph
    max_detections: int | None = None


@dataclass(frozen=True)
class GraphFacts:
    """What a .tflite says about its outputs (read by `graph_facts`)."""

    outputs: tuple[int, ...]  # tensor indices, in output order
    shapes: tuple[tuple[int, ...], ...]  # each output's shape
    op_outputs: tuple[int, ...] | None  # the postprocess op's output tensors, when the graph has the op
    op_options: dict[str, Any]
    signature_outputs: dict[str, int]  # name -> tensor index, of the only signature (empty without one)


@dataclass(frozen=True)
class DetectOptions:
    score_threshold: float = DEFAULT_SCORE_THRESHOLD
    max_results: int = 20
    classes: frozenset[str] | None = None  # only these labels (None: every label)
    resize: str = "stretch"  # how the frame became the model input; see BOX_RESIZE_MODES

    def __post_init__(self) -> None:
        if self.resize not in BOX_RESIZE_MODES:
            raise UserError(f"resize mode {self.resize!r} is not one of {BOX_RESIZE_MODES}")
        if self.max_results < 1:
            raise UserError(f"max results {self.max_results} must be at least 1")


def graph_facts(model: bytes, source: str) -> GraphFacts:
    """The outputs, the postprocess op and the signature of a .tflite, from its bytes."""
    from flatbuffers import flexbuffers

    info = model_info(model, source)
    op = next((op for op in info.ops if op.custom_code == POSTPROCESS_OP), None)
    options: Any = {}
    if op is not None and op.custom_options:
        try:
            options = flexbuffers.GetRoot(op.custom_options).Value
        except Exception:  # noqa: BLE001 - options only add checks; the op's outputs are what matter
            options = {}
    return GraphFacts(outputs=tuple(info.outputs), shapes=tuple(tuple(info.tensors[i].shape) for i in info.outputs),
                      op_outputs=tuple(op.outputs) if op is not None else None,
                      op_options=options if isinstance(options, dict) else {},
                      signature_outputs=info.signature_outputs)


def _positions(facts: GraphFacts, tensors: dict[str, int]) -> dict[str, int] | None:
    if sorted(tensors) != sorted(OUTPUTS) or not set(tensors.values()) <= set(facts.outputs):
        return None
    return {name: facts.outputs.index(tensor) for name, tensor in tensors.items()}


def _whole_option(options: dict[str, Any], key: str) -> int | None:
    value = options.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def find_detection_outputs(model: bytes, source: str) -> DetectionLayout:
    """Where a .tflite detector's boxes, classes, scores and count are (`source` names it in messages)."""
    return detection_layout(graph_facts(model, source), source)


def pycoral_layout(model: bytes, source: str) -> DetectionLayout:
    """What pycoral's detect adapter reads from this model (it never looks at the op): an exporter's
    check that pycoral users get the boxes the op makes."""
    return detection_layout(replace(graph_facts(model, source), op_outputs=None), source)


def detection_layout(facts: GraphFacts, source: str) -> DetectionLayout:
    """Which output is boxes, classes, scores and count: from the op, else by pycoral's rules."""
    found = None
    if facts.op_outputs is not None and len(facts.op_outputs) == 4:
        found = _positions(facts, dict(zip(OUTPUTS, facts.op_outputs))), f"the {POSTPROCESS_OP} op"
    if (found is None or found[0] is None) and set(facts.signature_outputs) == set(PYCORAL_SIGNATURE):
        named = {PYCORAL_SIGNATURE[name]: tensor for name, tensor in facts.signature_outputs.items()}
        found = _positions(facts, named), "the signature (pycoral's rule)"
    if found is None or found[0] is None:
        if len(facts.outputs) != 4:
            raise DetectionOutputError(f"{source} has {len(facts.outputs)} outputs; a detector ending in "
                                       f"{POSTPROCESS_OP} has 4 (boxes, classes, scores, count)")
        count_last = int(np.prod(facts.shapes[3])) == 1
        order = PYCORAL_ORDER_COUNT_LAST if count_last else PYCORAL_ORDER_OTHERWISE
        found = {name: i for i, name in enumerate(order)}, "the output order (pycoral's rule)"
    positions, how = found
    return DetectionLayout(**positions, found_by=how, source=source,
                           num_classes=_whole_option(facts.op_options, "num_classes"),
                           max_detections=_whole_option(facts.op_options, "max_detections"))


def check_labels(layout: DetectionLayout, labels: Sequence[str], options: DetectOptions) -> None:
    """Refuse, when the model is opened, labels that cannot name every class the op can output,
    and a class filter naming a label the model does not have."""
    if layout.num_classes is not None and layout.num_classes > len(labels):
        raise DetectionOutputError(f"{layout.source} detects {layout.num_classes} classes but the labels name "
                                   f"{len(labels)}; use the labels file made with the model")
    unknown = sorted((options.classes or frozenset()) - set(labels))
    if unknown:
        raise UserError(f"{', '.join(unknown)}: not a label of {layout.source}; its labels are "
                        f"{', '.join(labels[:10])}{' ...' if len(labels) > 10 else ''}")


def _output(outputs: Sequence[np.ndarray], position: int, name: str, layout: DetectionLayout,
            rows: int | None) -> np.ndarray:
    """One output as float64 without its batch dimension (boxes [N, 4], classes and scores [N], count [1])."""
    value = np.asarray(outputs[position], dtype=np.float64)
    if name == "count":
        value = value.reshape(-1)
        ok = value.size == 1
    else:
        rank = 2 if name == "boxes" else 1
        if value.ndim == rank + 1 and value.shape[0] == 1:
            value = value[0]
        ok = value.ndim == rank and (name != "boxes" or value.shape[1] == 4) and (rows is None or len(value) == rows)
    if not ok:
        raise DetectionOutputError(f"{layout.source}: output {position} ({name}, found by {layout.found_by}) has "
                                   f"shape {np.shape(outputs[position])}; not a {POSTPROCESS_OP} detector's output")
    return value


def _finite(values: np.ndarray, name: str, layout: DetectionLayout) -> None:
    if not np.all(np.isfinite(values)):
        raise DetectionOutputError(f"{layout.source}: the model output NaN or infinite {name}; the model is broken "
                                   "(re-export it) or the outputs are misread")


def raw_detections(outputs: Sequence[np.ndarray], layout: DetectionLayout, labels: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `count` (boxes [N, 4] ymin, xmin, ymax, xmax as fractions; class ids; scores), checked."""
    boxes = _output(outputs, layout.boxes, "boxes", layout, None)
    classes = _output(outputs, layout.classes, "classes", layout, len(boxes))
    scores = _output(outputs, layout.scores, "scores", layout, len(boxes))
    count = _output(outputs, layout.count, "count", layout, None)
    _finite(count, "count", layout)
    n = float(count[0])
    if not (n.is_integer() and 0 <= n <= len(boxes)):
        raise DetectionOutputError(f"{layout.source}: the model says it found {n:g} objects but outputs room for "
                                   f"{len(boxes)}; the outputs are misread or the model is broken")
    n = int(n)
    boxes, classes, scores = boxes[:n], classes[:n], scores[:n]
    for values, name in ((boxes, "boxes"), (classes, "class ids"), (scores, "scores")):
        _finite(values, name, layout)
    if np.any((scores < 0) | (scores > 1)):
        raise DetectionOutputError(f"{layout.source}: a score of {scores[(scores < 0) | (scores > 1)][0]:g} is "
                                   "outside 0..1; the outputs are misread or the model is broken")
    bad_class = (classes != np.round(classes)) | (classes < 0) | (classes >= len(labels))
    if np.any(bad_class):
        raise DetectionOutputError(f"{layout.source}: class id {classes[bad_class][0]:g} is not in the label map "
                                   f"(0..{len(labels) - 1}); use the labels file made with the model")
    out_of_range = (boxes < -BOX_RANGE_SLACK) | (boxes > 1 + BOX_RANGE_SLACK)
    inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if np.any(out_of_range) or np.any(inverted):
        row = boxes[np.any(out_of_range, axis=1) | inverted][0]
        raise DetectionOutputError(f"{layout.source}: box ({', '.join(f'{v:.3g}' for v in row)}) is not "
                                   "ymin, xmin, ymax, xmax within the image; the outputs are misread or the model "
                                   "is broken")
    return boxes, classes.astype(np.int64), scores


def to_frame(boxes: np.ndarray, frame_size: tuple[int, int], input_size: tuple[int, int], resize: str) -> np.ndarray:
    """Boxes (ymin, xmin, ymax, xmax as fractions of the model input) to x0, y0, x1, y1 in frame pixels, clipped.

    Undoes the preprocessing: `stretch` scaled each axis on its own;
    `letterbox` scaled both by one factor and padded the rest evenly on both
    sides; `center_crop` cut the frame's middle (as device/preprocess does).
    Sizes are (width, height).
    """
    (frame_w, frame_h), (input_w, input_h) = frame_size, input_size
    y0, x0, y1, x1 = (boxes[:, i] for i in range(4))
    if resize == "stretch":
        xs, ys = np.stack([x0, x1]) * frame_w, np.stack([y0, y1]) * frame_h
    elif resize == "letterbox":
        scale = min(input_w / frame_w, input_h / frame_h)
        pad_x, pad_y = (input_w - frame_w * scale) / 2, (input_h - frame_h * scale) / 2
        xs = (np.stack([x0, x1]) * input_w - pad_x) / scale
        ys = (np.stack([y0, y1]) * input_h - pad_y) / scale
    elif resize == "center_crop":
        left, top, width, height = crop_window(frame_w, frame_h, input_w / input_h)
        xs, ys = left + np.stack([x0, x1]) * width, top + np.stack([y0, y1]) * height
    else:
        raise ValueError(f"resize mode {resize!r}")
    xs, ys = np.clip(xs, 0, frame_w), np.clip(ys, 0, frame_h)
    return np.stack([xs[0], ys[0], xs[1], ys[1]], axis=1)


def decode_detections(outputs: Sequence[np.ndarray], layout: DetectionLayout, labels: Sequence[str],
                      frame_size: tuple[int, int], input_size: tuple[int, int],
                      options: DetectOptions = DetectOptions()) -> list[Detection]:
    """The detections a frame shows, best first: checked, scaled to the frame (rounded to whole pixels),
    thresholded, filtered, top N.

    `outputs` are the model's outputs in its output order (the interpreter's
    get_output_details order); sizes are (width, height).
    """
    boxes, classes, scores = raw_detections(outputs, layout, labels)
    keep = scores >= options.score_threshold
    if options.classes is not None:
        keep &= np.isin(classes, [i for i, label in enumerate(labels) if label in options.classes])
    order = np.argsort(-scores[keep], kind="stable")[:options.max_results]
    pixels = np.round(to_frame(boxes[keep][order], frame_size, input_size, options.resize)).astype(np.int64)
    visible = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])  # not a sliver, not wholly in padding
    return [Detection(int(c), labels[int(c)], float(s), tuple(int(v) for v in box))
            for c, s, box, shown in zip(classes[keep][order], scores[keep][order], pixels, visible) if shown]
