"""What both demos (classification: demo.py, detection: demo_detect.py) are made of: each
stage runs through the same CLI entry point a user types (the device stages in a child
process, as on the device), in a work dir only a demo may replace, timed.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgepipe.core.errors import UserError
from edgepipe.train.options import ModelConfig

WORKDIR_MARKER = ".edgepipe-demo"
RunCommand = Callable[[Sequence[str]], int]


def run_stage(run_command: RunCommand, name: str, argv: list[str], echo: bool = True) -> str:
    """Run one `edgepipe` command in-process and return what it printed on stdout.

    The demo's own stdout carries only its summary (so `--json` is one object);
    a stage's human output is echoed to stderr as progress unless it is data
    the demo reads (`echo=False`). A failing stage stops the demo with its name.
    """
    print(f"\n== {name}: edgepipe {' '.join(argv)}", file=sys.stderr, flush=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_command(argv)
    if echo:
        print(out.getvalue(), end="", file=sys.stderr, flush=True)
    if code != 0:
        raise UserError(f"demo stopped: `edgepipe {argv[0]}` failed (exit {code}); see the message above")
    return out.getvalue()


def device_stage(name: str, argv: list[str]) -> str:
    """Run one device command (`run`, `bench`) as `python -m edgepipe` in a new process, where
    TensorFlow is not loaded, and return its stdout; its stderr goes to ours as it comes."""
    print(f"\n== {name}: edgepipe {' '.join(argv)}", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, "-m", "edgepipe", *argv], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise UserError(f"demo stopped: `edgepipe {argv[0]}` failed (exit {result.returncode}); see the message above")
    return result.stdout


def resolve_weights(requested: str, input_size: int) -> tuple[str, str]:
    """The weights to train a MobileNetV2 1.0 backbone with (both demos' backbone: edgepipe ships its
    ImageNet weights), and a plain sentence about where they came from: train's own rule."""
    from edgepipe.train.model import resolve_weights as train_rule

    cfg, note = train_rule(ModelConfig(alpha=1.0, input_size=input_size, weights=requested))
    return cfg.weights, note


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def timed(label: str, timings: dict[str, float], fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    timings[label] = round(time.perf_counter() - start, 1)
    return result


def prepare_workdir(work: Path, force: bool) -> None:
    """Create the work dir; --force replaces only a directory an earlier demo made (it has our marker),
    so a mistyped --workdir can never wipe a user's folder."""
    import shutil

    from edgepipe.core.files import refuse_overwrite

    refuse_overwrite(work, force)
    if work.exists():
        if not (work / WORKDIR_MARKER).is_file():
            raise UserError(f"{work} exists and was not made by `edgepipe demo`; choose another --workdir")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORKDIR_MARKER).write_text("made by `edgepipe demo`; `edgepipe demo --force` may replace this folder\n")


@dataclass(frozen=True)
class DeviceResults:
    """What the device stages left in the work dir."""

    inspect: dict[str, Any]  # `inspect --json` of the int8 model
    frames: Path  # `run --json`: a line per video frame
    stats: Path  # run's --stats-json
    bench: Path  # bench's --out


def device_stages(run_command: RunCommand, work: Path, bundle: Path, video: Path,
                  timings: dict[str, float]) -> DeviceResults:
    """Predict the int8 model's Edge TPU mapping, run it over `video` and benchmark it."""
    inspect = json.loads(run_stage(run_command, "inspect", ["inspect", str(bundle / "model.tflite"), "--json"],
                                   echo=False))
    done = DeviceResults(inspect, work / "run_results.jsonl", work / "run_stats.json", work / "bench.json")
    frames = timed("run_s", timings, lambda: device_stage(
        "run", ["run", str(bundle), "--source", str(video), "--json", "--stats-json", str(done.stats)]))
    done.frames.write_text(frames, encoding="utf-8")
    timed("bench_s", timings, lambda: device_stage(
        "bench", ["bench", str(bundle), "--runs", "200", "--warmup", "20", "--out", str(done.bench)]))
    return done


def device_summary(bundle: Path, device: DeviceResults) -> dict[str, Any]:
    """What both demos report of the int8 model on the device: size, Edge TPU mapping, latency, run's FPS."""
    bench = read_json(device.bench)["results"][0]
    float_model = bundle / "model_float32.tflite"
    return {
        "model_bytes": (bundle / "model.tflite").stat().st_size,
        "float32_model_bytes": float_model.stat().st_size if float_model.exists() else None,
        "edgetpu_mapped": device.inspect.get("mapped"),
        "edgetpu_cpu": device.inspect.get("cpu"),
        "latency_p50_ms": bench["latency_ms"]["p50"],
        "latency_p99_ms": bench["latency_ms"]["p99"],
        "threads": bench.get("threads"),
        "bench_peak_rss_mb": bench.get("peak_rss_mb"),
        "run_fps": read_json(device.stats).get("fps"),
    }


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def device_rows(s: dict[str, Any], cpu_note: str = "") -> list[tuple[str, str]]:
    """The table rows of `device_summary`'s numbers; `cpu_note` says why ops stay on the CPU."""
    size = f"{s['model_bytes'] / 1024:.0f} KiB"
    if s["float32_model_bytes"]:
        size += f" (float32: {s['float32_model_bytes'] / 1024:.0f} KiB)"
    return [
        ("int8 model size", size),
        ("Edge TPU (predicted)", f"{s['edgetpu_mapped']} ops mapped, {s['edgetpu_cpu']} on CPU{cpu_note}"),
        (f"latency p50 / p99 ({s['threads']} thread{'s' if s['threads'] != 1 else ''})",
         f"{s['latency_p50_ms']:.2f} / {s['latency_p99_ms']:.2f} ms, peak memory {s['bench_peak_rss_mb']:.0f} MB "
         "(measured in a process without TensorFlow, as on the device)"),
    ]


def table(s: dict[str, Any], rows: list[tuple[str, str]]) -> str:
    """The demo's closing table: where it ran, the weights, `rows`, then how long each stage took."""
    rows = [("backbone weights", s["weights"].removeprefix("backbone weights: ")),  # train's note says it once
            *rows, ("stage times", ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in s["timings_s"].items()))]
    width = max(len(k) for k, _ in rows)
    lines = [f"\nedgepipe demo: {s['workdir']}", "-" * (width + 40)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
