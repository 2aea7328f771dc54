"""The measurement itself on a real interpreter: what is timed, on what input."""

import numpy as np
import pytest

from edgepipe.device.bench.measure import bench_input, configurations, measure_configuration, random_input, run_bench
from edgepipe.device.bench.options import BenchPlan
from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import InputSpec, load_image
from edgepipe.device.model.classifier import open_classifier

SPECS = {
    "uint8": InputSpec(height=32, width=24).with_tensor("uint8", 1 / 128, 128),
    "int8": InputSpec(height=32, width=24).with_tensor("int8", 1 / 128, 0),
    "float32": InputSpec(height=32, width=24),
}


@pytest.mark.parametrize("dtype", sorted(SPECS))
def test_random_input_is_never_zeros_and_spans_the_input_range(dtype):
    spec = SPECS[dtype]
    tensor = random_input(spec, np.random.default_rng(0))
    assert tensor.shape == (1, 32, 24, 3) and tensor.dtype == np.dtype(dtype)
    assert np.count_nonzero(tensor) > 0.95 * tensor.size
    values = tensor.astype(np.float64)
    if dtype == "float32":  # MobileNet's x / 127.5 - 1
        assert -1.0 <= values.min() < -0.95 and 0.95 < values.max() <= 1.0
    else:  # pixels 0..255 quantized with scale 1/128: the whole 8-bit range is used
        info = np.iinfo(dtype)
        assert values.min() <= info.min + 2 and values.max() >= info.max - 2
    assert len(np.unique(tensor)) > 200  # uniform noise, not a constant


def test_random_inputs_differ_between_seeds():
    a = random_input(SPECS["uint8"], np.random.default_rng(1))
    b = random_input(SPECS["uint8"], np.random.default_rng(2))
    assert not np.array_equal(a, b)


class CountingInterpreter:
    """The real interpreter, counting invoke() calls (to prove warm-up and cold runs are not timed)."""

    def __init__(self, interpreter):
        self._interpreter = interpreter
        self.invokes = 0

    def invoke(self):
        self.invokes += 1
        self._interpreter.invoke()

    def __getattr__(self, name):
        return getattr(self._interpreter, name)


def test_warmup_and_cold_run_are_excluded_from_the_timed_runs(tiny_bundle):
    classifier = open_classifier(tiny_bundle, threads=1)
    counting = CountingInterpreter(classifier.interpreter)
    classifier.interpreter = counting
    result = measure_configuration([classifier], BenchPlan(runs=7, warmup=4, threads=(1,)), progress=lambda _: None)
    assert counting.invokes == 1 + 4 + 7
    assert result["runs"] == 7 and len(result["samples_ms"]) == 7 and result["warmup"] == 4
    assert result["first_inference_ms"] > 0
    assert result["latency_ms"]["min"] == min(result["samples_ms"])
    assert result["latency_ms"]["max"] == max(result["samples_ms"])


def test_a_real_image_goes_through_the_models_preprocessing(tiny_bundle, shapes_dataset):
    classifier = open_classifier(tiny_bundle, threads=1)
    photo = next(shapes_dataset.rglob("*.jpg"))
    tensor, source = bench_input(classifier, photo, np.random.default_rng(0))
    assert np.array_equal(tensor, classifier.preprocess(load_image(photo)))
    assert source == f"image {photo}"


def test_a_black_image_is_refused_as_an_all_zero_input(tiny_bundle, tmp_path):
    import cv2

    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((96, 96, 3), np.uint8))
    classifier = open_classifier(tiny_bundle, threads=1)
    with pytest.raises(UserError, match="all-zero input"):
        bench_input(classifier, black, np.random.default_rng(0))


def test_sustained_run_reports_windows_and_thermal_state(tiny_bundle):
    plan = BenchPlan(runs=1, warmup=2, threads=(1,), duration_s=0.3)
    result = run_bench(tiny_bundle, None, plan, progress=lambda _: None)["results"][0]
    assert result["runs"] > 1  # the duration, not --runs, decides the count
    assert sum(w["runs"] for w in result["windows"]) == result["runs"]
    assert result["timed_s"] <= 0.3 + result["latency_ms"]["max"] / 1000
    assert set(result["thermal"]) == {"before", "after"}
    assert set(result["thermal"]["before"]) == {"temperature_c", "throttled"}


def test_edgetpu_with_several_thread_counts_is_refused():
    with pytest.raises(UserError, match="ignores --threads"):
        BenchPlan(accelerator="edgetpu", threads=(1, 2))


def test_all_measures_cpu_per_thread_count_and_the_edge_tpu_once():
    plan = BenchPlan(accelerator="all", threads=(1, 2, 4))
    assert configurations(plan) == [("cpu", 1, 1), ("cpu", 2, 1), ("cpu", 4, 1), ("edgetpu", 1, 1)]
