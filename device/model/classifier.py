"""Open a TFLite classifier or detector (a bundle or a bare .tflite) on the lightest
runtime installed, on the CPU or a Coral Edge TPU, and run frames through it.

A detector is a model ending in the `TFLite_Detection_PostProcess` op (ours,
Coral's SSDs, Frigate's): the same class, interpreter, delegate probing and
preprocessing; only what invoke() returns and how it is decoded (tasks.py) differ.

Everything that runs a model on the device goes through `open_classifier`:
`classify`, `run`, `bench` and the workstation's evaluation of int8 models, so
a model is checked, preprocessed and dequantised the same way everywhere.

Which runtime (backends) and which model file and delegate (edgetpu_policy) are
chosen elsewhere; this module builds the interpreter and checks the model is what
its task expects.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgepipe.core.accelerators import ACCELERATORS
from edgepipe.core.errors import UserError
from edgepipe.core.tfenv import native_info_dropped

from ..host import default_threads
from . import postprocess
from .backends import Backend, find_backend, threads_text
from .bundle import MAX_MODEL_BYTES, TFLITE_IDENTIFIER, Bundle, features_dim, is_bundle, load_bundle
from .detect_postprocess import (DetectionLayout, DetectionOutputError, DetectOptions, check_labels,
                                 decode_detections, find_detection_outputs, graph_facts)
from .edgetpu_policy import choose_bundle_model, choose_file_delegate, is_edgetpu_model
from .labels import read_labels
from .metadata import embedded_info
from .postprocess import Detection, Prediction
from .preprocess import InputSpec, normalize, quantize, resize_to_input
from .safefile import FileRefused, open_regular, read_fd
from .tasks import CLASSIFY, DETECT, Task, runnable_task

# What invoke() returns: a classifier's scores (num_classes,), or a detector's four outputs in its output order.
ModelOutput = np.ndarray | list[np.ndarray]


class ModelError(UserError):
    """A model file that is missing, not TFLite, damaged, or not an image classifier."""


def read_model_bytes(path: Path) -> bytes:
    """The model file, checked to be a TFLite flatbuffer (size, identifier) before it is read whole."""
    if path.is_dir():
        raise ModelError(f"{path} is a directory but not a bundle (no bundle.json); pass a bundle or a .tflite file")
    try:
        return read_fd(open_regular(path), str(path), max_bytes=MAX_MODEL_BYTES, identifier=TFLITE_IDENTIFIER,
                       identifier_at=4, what="TFLite model")
    except FileRefused as exc:
        raise ModelError(f"{exc}; pass a .tflite file or a bundle made by `edgepipe convert`") from None


def _spec_from_tensor(detail: dict[str, Any], base: InputSpec | None, path: Path) -> InputSpec:
    shape = [int(v) for v in detail["shape"]]
    dtype = np.dtype(detail["dtype"]).name
    if len(shape) != 4 or shape[0] not in (1, -1) or shape[3] != 3 or min(shape[1:3]) <= 0:
        raise ModelError(
            f"{path} is not an image classifier: its input is {dtype}{shape}, "
            "expected one 1xHxWx3 image tensor"
        )
    if dtype not in ("float32", "uint8", "int8"):
        raise ModelError(f"{path} is not an image classifier: its input dtype is {dtype}, expected float32, uint8 or int8")
    height, width = shape[1:3]
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if dtype != "float32" and not scale > 0:
        raise ModelError(f"{path}: its {dtype} input has no quantization scale, so pixels cannot be mapped to it")
    spec = base or InputSpec(height=height, width=width)
    if (spec.height, spec.width) != (height, width):
        raise ModelError(
            f"{path} takes {height}x{width} images but its bundle says {spec.height}x{spec.width}; "
            "re-create the bundle with `edgepipe convert`"
        )
    return spec.with_tensor(dtype, scale if dtype != "float32" else 0.0, zero_point if dtype != "float32" else 0)


def _num_classes(detail: dict[str, Any], path: Path) -> int:
    shape = [int(v) for v in detail["shape"]]
    big = [v for v in shape if v != 1]
    if len(big) > 1 or not shape:
        raise ModelError(
            f"{path} is not an image classifier: its output has shape {shape}, expected one score per class (1xN)"
        )
    return big[0] if big else 1


def _split_outputs(outputs: list[dict[str, Any]], n_inputs: int, expected: int, bundle: Bundle | None,
                   path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(scores, features or None): a classifier has one output; a bundle made by convert may add the
    pooled features as a second (bundle.json says how many: the converter orders outputs its own way)."""
    dim = features_dim(bundle.manifest, bundle.root) if bundle is not None else None
    if n_inputs == 1 and len(outputs) == expected:
        return outputs[0], None
    if n_inputs == 1 and expected == 1 and len(outputs) == 2 and dim is not None:
        sizes = [int(np.prod(o["shape"])) for o in outputs]
        if sizes.count(dim) == 1:
            features = sizes.index(dim)
            return outputs[1 - features], outputs[features]
    also = f" (or 2, one of {dim} features)" if dim and expected == 1 else ""
    raise ModelError(f"{path} is not an image classifier: it has {n_inputs} inputs and {len(outputs)} outputs, "
                     f"expected 1 and {expected}{also}")


class _Output:
    """One output tensor, read and dequantised to float32."""

    def __init__(self, detail: dict[str, Any]) -> None:
        self.index = detail["index"]
        scale, zero_point = detail.get("quantization", (0.0, 0))
        self.quantized = np.dtype(detail["dtype"]).kind in "iu" and scale > 0
        self.scale, self.zero_point = np.float32(scale), np.float32(zero_point)

    def read(self, interpreter: Any) -> np.ndarray:
        raw = interpreter.get_tensor(self.index).reshape(-1)
        if self.quantized:
            return (raw.astype(np.float32) - self.zero_point) * self.scale
        return raw.astype(np.float32, copy=False)


def pixel_table(spec: InputSpec) -> np.ndarray:
    """The input-tensor value of each of the 256 pixel values.

    normalize and quantize are elementwise on uint8 pixels, so indexing this
    table gives exactly preprocess.to_model_input's result at a tenth of its
    cost, which matters when every frame must keep up with the camera.
    """
    return quantize(normalize(np.arange(256, dtype=np.uint8), spec), spec)


class Classifier:
    """One loaded model with its labels and the preprocessing it needs.

    `preprocess` is thread-safe (it only reads the spec); `invoke` and
    `classify` are not: one interpreter serves one thread, and `replica`
    makes another interpreter of the same model for another thread.
    """

    def __init__(
        self,
        interpreter: Any,
        *,
        labels: list[str] | None,
        input_spec: InputSpec | None,
        accelerator: str,
        backend: Backend,
        model_path: Path,
        threads: int,
        load_ms: float,
        accelerator_note: str = "",
        bundle: Bundle | None = None,
        model_data: bytes = b"",
        task: Task = CLASSIFY,
        detect: DetectOptions | None = None,
    ) -> None:
        self.interpreter = interpreter
        self._backend_spec = backend
        self._model_data = model_data
        self._given_spec = input_spec
        self.accelerator = accelerator
        self.accelerator_note = accelerator_note
        self.backend = backend.name
        self.backend_version = backend.version
        self.model_path = model_path
        self.threads = threads
        self.load_ms = load_ms
        self.bundle = bundle
        self.task = task
        inputs = interpreter.get_input_details()
        outputs = interpreter.get_output_details()
        self.layout: DetectionLayout | None = None
        self._output_indices = [o["index"] for o in outputs]
        if task is DETECT and (len(inputs) != 1 or len(outputs) != len(task.outputs)):
            raise ModelError(f"{model_path} is not a detector ending in TFLite_Detection_PostProcess: it has "
                             f"{len(inputs)} inputs and {len(outputs)} outputs, expected 1 and {len(task.outputs)}")
        self._input_index = inputs[0]["index"]
        self.input_spec = _spec_from_tensor(inputs[0], input_spec, model_path)
        self._pixel_table = pixel_table(self.input_spec)
        self._pixels = np.empty((self.input_spec.height, self.input_spec.width, 3), np.uint8)  # load_frame's buffer
        # Boxes are mapped back to the frame by undoing the model's own resize, whatever was asked.
        self.detect_options = replace(detect or DetectOptions(), resize=self.input_spec.resize)
        self._features = None
        if task is DETECT:
            self.layout = find_detection_outputs(model_data, str(model_path))
            labels = _detector_labels(self.layout, labels, bundle is not None)
            check_labels(self.layout, labels, self.detect_options)
            self.labels = list(labels)
            self.num_classes = len(labels)
            return
        scores_output, features_output = _split_outputs(outputs, len(inputs), len(task.outputs), bundle, model_path)
        self.num_classes = _num_classes(scores_output, model_path)
        self._scores = _Output(scores_output)
        self._features = _Output(features_output) if features_output is not None else None
        if bundle is not None and bundle.unknown is not None and bundle.unknown.features and self._features is None:
            raise ModelError(f"{model_path} has no features output, but the bundle's unknown score "
                             f"{bundle.unknown.score} needs one; re-create the bundle with `edgepipe convert`")
        if labels is None:
            labels = [f"class_{i}" for i in range(self.num_classes)]
        elif len(labels) != self.num_classes:
            raise ModelError(
                f"the labels have {len(labels)} entries but {model_path} outputs {self.num_classes} scores; "
                "pass the labels file that belongs to this model"
            )
        self.labels = list(labels)

    @property
    def model_sha256(self) -> str:
        """The hash of the model file: what a measurement of this model on this machine is keyed by."""
        return hashlib.sha256(self._model_data).hexdigest()

    def replica(self, threads: int) -> "Classifier":
        """Another interpreter of the same model with `threads` CPU threads, for another thread.

        CPU only: an Edge TPU serves one interpreter, so more need more TPUs.
        """
        if self.accelerator != "cpu":
            raise UserError(f"one interpreter per Edge TPU: {self.model_path} cannot get a second one on this TPU")
        started = time.perf_counter()
        interpreter = _make_interpreter(self._backend_spec, self._model_data, self.model_path, threads, None)
        return Classifier(
            interpreter,
            labels=self.labels,
            input_spec=self._given_spec,
            accelerator=self.accelerator,
            backend=self._backend_spec,
            model_path=self.model_path,
            threads=threads,
            load_ms=(time.perf_counter() - started) * 1000.0,
            accelerator_note=self.accelerator_note,
            bundle=self.bundle,
            model_data=self._model_data,
            task=self.task,
            detect=self.detect_options,
        )

    @property
    def is_detector(self) -> bool:
        return self.task is DETECT

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """The 1xHxWx3 input tensor for a BGR frame, equal to preprocess.to_model_input.

        cv2.LUT looks the table up three times faster than numpy's indexing (0.08 vs
        0.24 ms at 224x224), which counts when capture shares the cores with inference.
        """
        return cv2.LUT(resize_to_input(bgr, self.input_spec), self._pixel_table)[np.newaxis]

    def load_frame(self, bgr: np.ndarray) -> None:
        """Preprocess a BGR frame straight into the interpreter's input tensor (then `invoke_loaded`).

        The same pixels as `preprocess`, without its allocations and the copy set_tensor
        makes: resize and colour order into one reused buffer, then the pixel table into
        the tensor itself. The tensor view is dropped before returning, since the
        interpreter refuses to run while one is held.
        """
        pixels = resize_to_input(bgr, self.input_spec, out=self._pixels)
        cv2.LUT(pixels, self._pixel_table, dst=self.interpreter.tensor(self._input_index)()[0])

    def invoke(self, tensor: np.ndarray) -> ModelOutput:
        """Scores for one preprocessed tensor, dequantised to float32, shape (num_classes,); for a
        detector, its four outputs (float, from the postprocess op) in its output order."""
        self.interpreter.set_tensor(self._input_index, tensor)
        return self.invoke_loaded()

    def invoke_loaded(self) -> ModelOutput:
        """Scores for the input already in the tensor (`load_frame`), dequantised to float32 (a detector:
        its four outputs)."""
        self.interpreter.invoke()
        if self.layout is not None:
            return [self.interpreter.get_tensor(i) for i in self._output_indices]
        return self._scores.read(self.interpreter)

    def features(self) -> np.ndarray | None:
        """The pooled features of the last `invoke` (dequantised, shape (dim,)), None when the model has
        no features output. Read before this interpreter invokes again (regions do)."""
        return self._features.read(self.interpreter) if self._features is not None else None

    def classify(self, bgr: np.ndarray, top_k: int = 5) -> list[Prediction]:
        return postprocess.top_k(self.invoke(self.preprocess(bgr)), self.labels, top_k)

    def detections(self, outputs: ModelOutput, frame_size: tuple[int, int]) -> list[Detection]:
        """A detector's outputs as the objects in a frame of `frame_size` (width, height), best first:
        the score threshold, class filter and top N of `detect_options`, boxes in the frame's pixels."""
        if self.layout is None:
            raise ValueError(f"{self.model_path} is not a detector")
        return decode_detections(outputs, self.layout, self.labels, frame_size,
                                 (self.input_spec.width, self.input_spec.height), self.detect_options)

    def detect(self, bgr: np.ndarray) -> list[Detection]:
        return self.detections(self.invoke(self.preprocess(bgr)), (bgr.shape[1], bgr.shape[0]))

    def describe(self, interpreters: int = 1) -> str:
        """One line for logs: which model, where it runs and on what (`interpreters` of it, --workers)."""
        note = f" ({self.accelerator_note})" if self.accelerator_note else ""
        return (
            f"{self.model_path} on {self.accelerator}{note}, {self.backend} {self.backend_version}, "
            f"{threads_text(self.threads, interpreters)}, loaded in {self.load_ms:.0f} ms"
        )


def _detector_labels(layout: DetectionLayout, labels: list[str] | None, from_bundle: bool) -> list[str]:
    """The labels a detector reports: given, else class_0.. for each class its postprocess op names.
    A bundle's labels must name exactly its op's classes: one more or fewer is a bundle made wrong."""
    if labels is None:
        if layout.num_classes is None:
            raise ModelError(f"{layout.source} does not say how many classes it detects; pass --labels FILE")
        return [f"class_{i}" for i in range(layout.num_classes)]
    if from_bundle and layout.num_classes not in (None, len(labels)):
        raise DetectionOutputError(f"{layout.source} detects {layout.num_classes} classes but its bundle's labels "
                                   f"name {len(labels)}; re-create the bundle with `edgepipe convert`")
    return labels


def _file_task(data: bytes, path: Path) -> Task:
    """A bare .tflite is a detector when its graph ends in the postprocess op, else a classifier."""
    try:
        return DETECT if graph_facts(data, str(path)).op_outputs is not None else CLASSIFY
    except UserError:  # unreadable: the interpreter says why, in its own words
        return CLASSIFY


def _make_interpreter(backend: Backend, data: bytes, path: Path, threads: int, delegate: Any) -> Any:
    try:
        with native_info_dropped():  # the runtime's "Created TensorFlow Lite XNNPACK delegate" line
            interpreter = backend.interpreter_class(
                model_content=data,
                num_threads=threads,
                experimental_delegates=[delegate] if delegate is not None else None,
            )
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path} cannot be loaded (truncated, corrupt or unsupported ops): {detail}") from None
    return interpreter


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning on stderr, once per process (bench opens a model once per thread count)."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)


def open_classifier(
    model: str | Path,
    labels: str | Path | None = None,
    accelerator: str = "cpu",
    threads: int | None = None,
    edgetpu_device: str | None = None,
    probe: bool = True,
    detect: DetectOptions | None = None,
) -> Classifier:
    """Load a bundle directory or a .tflite file, ready to classify BGR frames.

    A bundle's hashes are verified and its labels and preprocessing used
    (`labels` overrides its labels file). A bare .tflite uses the labels and
    preprocessing edgepipe embedded in it when present (`labels` still wins),
    else its input tensor (float input assumed MobileNet-style [-1, 1]); with
    no labels at all a warning says the classes will be class_0, class_1, ...
    Before the Edge TPU delegate is loaded here, `probe` tries it in a child
    process (edgetpu_probe), so a libedgetpu that crashes costs a fallback or
    one error line, not this process.
    """
    if accelerator not in ACCELERATORS:
        raise UserError(f"accelerator {accelerator!r} is not one of {', '.join(ACCELERATORS)}")
    if accelerator == "imx500":
        raise UserError("the IMX500 runs the network on the AI Camera's sensor, not on image files: use `edgepipe "
                        "run BUNDLE --accelerator imx500`, `bench` or `verify` with it, or --accelerator cpu here")
    path = Path(model)
    threads = threads or default_threads()
    backend = find_backend()
    started = time.perf_counter()
    bundle = None
    base_spec = None
    task = CLASSIFY
    label_list = read_labels(labels) if labels is not None else None
    if is_bundle(path):
        bundle = load_bundle(path, verify=True)
        task = runnable_task(bundle.task, str(path))
        base_spec = bundle.input_spec
        label_list = label_list or bundle.labels
        model_path, chosen, delegate, note = choose_bundle_model(bundle, accelerator, backend, edgetpu_device, probe)
        data = bundle.read_model(chosen)
        if chosen == "cpu" and is_edgetpu_model(data):
            raise ModelError(f"{model_path} is listed as the bundle's CPU model but is compiled for the Edge TPU")
    else:
        model_path = path
        data = read_model_bytes(path)
        task = _file_task(data, path)
        embedded = embedded_info(data)
        base_spec = embedded.input_spec
        label_list = label_list or embedded.labels
        chosen, delegate, note = choose_file_delegate(path, data, accelerator, backend, edgetpu_device, probe)
    interpreter = _make_interpreter(backend, data, model_path, threads, delegate)
    load_ms = (time.perf_counter() - started) * 1000.0
    if label_list is None:
        _warn_once(f"{path} has no labels (no --labels and none embedded in the model): "
                   "classes are reported as class_0, class_1, ...; pass --labels FILE")
    return Classifier(
        interpreter,
        labels=label_list,
        input_spec=base_spec,
        accelerator=chosen,
        backend=backend,
        model_path=model_path,
        threads=threads,
        load_ms=load_ms,
        accelerator_note=note,
        bundle=bundle,
        model_data=data,
        task=task,
        detect=detect,
    )


def open_model_data(data: bytes, name: str, labels: list[str] | None = None, input_spec: InputSpec | None = None,
                    threads: int | None = None) -> Classifier:
    """A .tflite still in memory (convert's candidates, measured before one is written) on the CPU,
    checked, preprocessed and read as `open_classifier` does a file; `name` names it in messages.
    `input_spec` (else the one embedded in the model, else its input tensor's) must match its input."""
    path = Path(name)
    threads = threads or default_threads()
    backend = find_backend()
    started = time.perf_counter()
    embedded = embedded_info(data)
    interpreter = _make_interpreter(backend, data, path, threads, None)
    return Classifier(interpreter, labels=labels or embedded.labels, input_spec=input_spec or embedded.input_spec,
                      accelerator="cpu", backend=backend, model_path=path, threads=threads,
                      load_ms=(time.perf_counter() - started) * 1000.0, model_data=data, task=_file_task(data, path))
