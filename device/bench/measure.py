"""The measurement behind `edgepipe bench`: model latency you can trust.

Honesty rules, in the spirit of TFLite's benchmark_model:
- the input is realistic: a real image through the model's own
  preprocessing, or uniformly random pixels through the same normalisation
  and quantisation (never a tensor of zeros, which some kernels and the
  Edge TPU's USB transfer handle faster than real data);
- the clock is `time.perf_counter_ns` and nothing but `interpreter.invoke()`
  sits between the two readings (the input is set once, before timing);
- the cold first inference and the warm-up runs are reported apart and never
  mixed into the percentiles; the garbage collector is off while timing.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .e2e import measure_e2e
from .options import BenchPlan
from .report import SCHEMA
from .sensor import measure_sensor
from .stats import MS_DECIMALS, latency_summary, rate_per_s, time_windows, to_ms
from edgepipe.core.errors import UserError
from edgepipe.device.model.preprocess import InputSpec, load_image, normalize, quantize
from edgepipe.device.model.classifier import Classifier, open_classifier
from edgepipe.device.model.edgetpu_policy import EdgeTpuRefused
from edgepipe.device.model.backends import EdgeTpuUnavailable, threads_text
from edgepipe.device.run.sources import open_source
from ..host import default_threads, edgetpu_absence
from .sysinfo import current_rss_mb, environment, peak_rss_mb, thermal_snapshot


Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def configurations(plan: BenchPlan) -> list[tuple[str, int | None, int]]:
    """(accelerator, threads, workers), CPU first so the CPU is the baseline row in comparisons.

    The Edge TPU is measured once, with one interpreter (one per TPU): its speed
    does not depend on CPU threads.
    """
    configs: list[tuple[str, int | None, int]] = []
    if plan.accelerator in ("cpu", "all"):
        configs += [("cpu", threads or (max(1, default_threads() // workers) if workers > 1 else None), workers)
                    for workers in plan.workers for threads in plan.threads]
    if plan.accelerator in ("edgetpu", "all"):
        configs.append(("edgetpu", plan.threads[0], 1))
    if plan.accelerator == "imx500":
        configs.append(("imx500", None, 1))
    return configs


def random_input(spec: InputSpec, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random pixels mapped into the input tensor exactly as a camera frame would be.

    Going through `normalize` and `quantize` keeps values inside the range a
    real frame produces, for float, uint8 and int8 inputs alike.
    """
    pixels = rng.integers(0, 256, size=(1, spec.height, spec.width, 3), dtype=np.uint8)
    return quantize(normalize(pixels, spec), spec)


def bench_input(classifier: Classifier, image: Path | None, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The tensor every timed run sees, and how it was made (recorded in the report)."""
    if image is None:
        return random_input(classifier.input_spec, rng), "random pixels through the model's preprocessing"
    tensor = classifier.preprocess(load_image(image))
    if not np.any(tensor):
        raise UserError(
            f"{image} becomes an all-zero input tensor (a black frame), which times unrealistically; "
            "pass a real photo, or leave out --image for random pixels"
        )
    return tensor, f"image {image}"


def timed_invokes(invoke: Callable[[], Any], runs: int, duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(start, latency) in ns of back-to-back calls: `runs` of them, or as many as fit in `duration_s`.

    Only `invoke()` sits between the two clock readings; the lists are
    preallocated for a fixed count so the loop allocates nothing per run,
    and the garbage collector cannot pause inside a timed run.
    """
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        if duration_s is None:
            starts = [0] * runs
            samples = [0] * runs
            for i in range(runs):
                t0 = clock()
                invoke()
                t1 = clock()
                starts[i] = t0
                samples[i] = t1 - t0
        else:
            starts, samples = [], []
            deadline = clock() + int(duration_s * 1e9)
            t1 = 0
            while t1 < deadline:
                t0 = clock()
                invoke()
                t1 = clock()
                starts.append(t0)
                samples.append(t1 - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(starts, dtype=np.int64), np.asarray(samples, dtype=np.int64)


def concurrent_timed_invokes(invokes: list[Callable[[], Any]], runs: int,
                             duration_s: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """`timed_invokes` on every interpreter at once, one thread each (LiteRT releases the GIL
    in invoke): (starts, latencies) of all of them, and inferences per second all together."""
    results: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0, np.int64), np.zeros(0, np.int64))] * len(invokes)
    go = threading.Barrier(len(invokes))

    def work(i: int) -> None:
        go.wait()
        results[i] = timed_invokes(invokes[i], runs, duration_s)

    gc_was_enabled = gc.isenabled()
    gc.disable()  # here, not per thread: one thread's re-enabling must not reach the others
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(invokes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        if gc_was_enabled:
            gc.enable()
    starts = np.concatenate([r[0] for r in results])
    samples = np.concatenate([r[1] for r in results])
    span_ns = max(int((r[0] + r[1]).max()) for r in results) - int(starts.min())
    return starts, samples, round(samples.size / (span_ns / 1e9), 3)


def open_for_bench(model: Path, labels: Path | None, accelerator: str, threads: int | None,
                   edgetpu_device: str | None) -> Classifier:
    try:
        return open_classifier(model, labels, accelerator=accelerator, threads=threads, edgetpu_device=edgetpu_device)
    except EdgeTpuRefused:  # the probe's own reason; asking the library what is missing would load it here
        raise
    except EdgeTpuUnavailable as exc:
        raise EdgeTpuUnavailable(f"{edgetpu_absence()}; {exc}") from None


def measure_configuration(classifiers: list[Classifier], plan: BenchPlan, progress: Progress) -> dict[str, Any]:
    """One accelerator x threads x workers configuration: cold inference, warm-up, timed runs.

    With several workers, each interpreter makes --runs timed runs at the same time as
    the others; the latency statistics pool all of them and `inferences_per_s` counts
    all of them over the wall-clock span.
    """
    classifier = classifiers[0]
    rng = np.random.default_rng(plan.seed)
    tensor, input_source = bench_input(classifier, plan.image, rng)
    for clf in classifiers:
        clf.interpreter.set_tensor(clf.interpreter.get_input_details()[0]["index"], tensor)
    _, first = timed_invokes(classifier.interpreter.invoke, 1)
    for clf in classifiers:
        timed_invokes(clf.interpreter.invoke, plan.warmup)
    what = f"for {plan.duration_s:g} s" if plan.duration_s else f"{plan.runs} runs"
    progress(f"{classifier.accelerator}, {threads_text(classifier.threads, len(classifiers))}: timing {what} after {plan.warmup} warm-up")
    thermal_before = thermal_snapshot()
    gc.collect()  # leave no garbage from loading for the timed runs to trip over
    if len(classifiers) == 1:
        starts, samples = timed_invokes(classifier.interpreter.invoke, plan.runs, plan.duration_s)
        per_s = rate_per_s(samples)
    else:
        starts, samples, per_s = concurrent_timed_invokes(
            [clf.interpreter.invoke for clf in classifiers], plan.runs, plan.duration_s)
        order = np.argsort(starts, kind="stable")
        starts, samples = starts[order], samples[order]
    thermal_after = thermal_snapshot()
    return {
        "accelerator": classifier.accelerator,
        "threads": classifier.threads,
        "workers": len(classifiers),
        "backend": classifier.backend,
        "backend_version": classifier.backend_version,
        "model_file": str(classifier.model_path),
        "input": {
            "shape": [int(v) for v in tensor.shape],
            "dtype": tensor.dtype.name,
            "source": input_source,
        },
        "load_ms": round(classifier.load_ms, 3),
        "first_inference_ms": round(float(to_ms(first)[0]), MS_DECIMALS),
        "warmup": plan.warmup,
        "runs": int(samples.size),
        "timed_s": round(float(samples.sum()) / 1e9, 3),
        "latency_ms": latency_summary(samples),
        "inferences_per_s": per_s,
        "peak_rss_mb": peak_rss_mb(),
        "rss_mb": current_rss_mb(),
        "thermal": {"before": thermal_before, "after": thermal_after},
        "windows": time_windows(starts, samples, plan.window_s) if plan.window_s else None,
        "samples_ms": [round(float(v), MS_DECIMALS) for v in to_ms(samples)],
    }


def model_name(model: Path) -> str:
    """A short name for tables: the bundle directory's or the .tflite file's name."""
    return Path(model).resolve().name


def new_report(model: Path, plan: BenchPlan) -> dict[str, Any]:
    settings = asdict(plan)
    settings["image"] = str(plan.image) if plan.image else None
    settings["threads"] = list(plan.threads)
    settings["workers"] = list(plan.workers)
    return {
        "schema": SCHEMA,
        "model": str(model),
        "model_name": model_name(model),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": settings,
        "environment": environment(),
        "results": [],
        "skipped": [],
        "e2e": None,
    }


def run_bench(model: Path, labels: Path | None, plan: BenchPlan, progress: Progress = stderr_progress) -> dict[str, Any]:
    """Measure every configuration of `plan`; the returned dict is the documented bench JSON.

    --e2e runs once, with the first configuration that loads.

    With --accelerator all, an accelerator that cannot run here (no Edge TPU,
    a compiled model on the CPU) is listed under "skipped" with the reason;
    it is an error only when nothing could be measured.
    """
    report = new_report(model, plan)
    # Resolved before any timing, so a wrong SOURCE fails at once, not after the model bench.
    e2e_source = open_source(plan.e2e_source) if plan.e2e_source else None
    cores = default_threads()
    if any(threads and threads > cores for threads in plan.threads):
        progress(f"note: more threads than the {cores} available cores oversubscribe the CPU and measure contention")
    if plan.accelerator == "all" and len(plan.threads) > 1:
        progress(f"the Edge TPU ignores --threads: it is measured once, with {plan.threads[0]} for CPU fallback ops")
    errors: list[UserError] = []
    for accelerator, threads, workers in configurations(plan):
        if accelerator == "imx500":  # the sensor times itself: no interpreter here
            report["results"].append(measure_sensor(model, plan.runs, plan.warmup, plan.duration_s, progress))
            continue
        try:
            classifier = open_for_bench(model, labels, accelerator, threads, plan.edgetpu_device)
            classifiers = [classifier] + [classifier.replica(classifier.threads) for _ in range(workers - 1)]
        except UserError as exc:
            if plan.accelerator != "all":
                raise
            errors.append(exc)
            report["skipped"].append({"accelerator": accelerator, "threads": threads, "reason": str(exc)})
            progress(f"skipping {accelerator}: {exc}")
            continue
        progress(f"loaded {classifier.describe()}")
        report["results"].append(measure_configuration(classifiers, plan, progress))
        if e2e_source is not None and report["e2e"] is None:
            progress(f"end to end on {e2e_source.name}: {plan.warmup} warm-up frames, then "
                     + (f"{plan.duration_s:g} s" if plan.duration_s else f"{plan.runs} frames"))
            report["e2e"] = measure_e2e(classifiers, e2e_source, plan.warmup, plan.runs, plan.duration_s, sys.stderr)
        del classifier, classifiers  # free their arenas before the next configuration loads
    if not report["results"]:
        if len({str(error) for error in errors}) == 1:  # e.g. the model does not exist
            raise errors[0]
        reasons = dict.fromkeys(f"{skip['accelerator']}: {skip['reason']}" for skip in report["skipped"])
        raise UserError("nothing could be measured here: " + "; ".join(reasons))
    return report
