"""The shared fixtures themselves: a real interpreter runs the tiny bundle."""

import numpy as np
import pytest

from edgepipe.device.model.bundle import load_bundle
from edgepipe.device.model.preprocess import load_image, to_model_input


def test_tiny_bundle_runs_in_litert(tiny_bundle, shapes_dataset):
    from ai_edge_litert.interpreter import Interpreter

    bundle = load_bundle(tiny_bundle)
    interpreter = Interpreter(model_path=str(bundle.model_path("cpu")))
    interpreter.allocate_tensors()
    image = load_image(next(shapes_dataset.rglob("*.jpg")))
    tensor = to_model_input(image, bundle.input_spec)
    assert tensor.shape == (1, 96, 96, 3) and tensor.dtype == np.uint8
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    scores = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert scores.shape == (1, 4) and scores.dtype == np.uint8
    # A softmax over 4 classes, quantised: the dequantised scores sum to one.
    out = interpreter.get_output_details()[0]
    scale, zero_point = out["quantization"]
    probabilities = (scores.astype(np.float32) - zero_point) * scale
    assert probabilities.sum() == pytest.approx(1.0, abs=0.05)
