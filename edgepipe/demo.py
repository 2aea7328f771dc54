"""`edgepipe demo`: the whole pipeline, offline, on data it draws itself.

It runs every stage through the same CLI entry point a user types, so the
demo proves the commands, not a private shortcut: train, convert (QAT),
inspect (Edge TPU prediction), run on a video, bench; then one table.
The device stages (run, bench) run in a child process, as on the device: in
the demo's own process TensorFlow is loaded, which would count gigabytes of
its memory (and its threads) in the model's latency report.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgepipe.core.args import add_command, positive_int
from edgepipe.core.errors import UserError
from edgepipe.core.options import add_options, flag, options_from
from edgepipe.train.options import ModelConfig

DEMO_CLASSES = ("circle", "square", "triangle", "cross")
WORKDIR_MARKER = ".edgepipe-demo"


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = flag("--workdir", default=Path("edgepipe-demo"), parse=Path, metavar="DIR",
                         help="where data, run, bundle and reports go")
    force: bool = flag("--force", default=False, help="replace an existing work dir (one an earlier demo made)")
    weights: str = flag("--weights", default=ModelConfig.weights, metavar="imagenet|none|PATH",
                        help="backbone weights (imagenet: Keras' download, else the copy shipped with edgepipe)")
    per_class: int = flag("--per-class", default=100, parse=positive_int, metavar="N",
                          help="images drawn per class (20%% are held out)")
    video_frames: int = flag("--video-frames", default=120, parse=positive_int, metavar="N",
                             help="frames in the generated video")


def register(subparsers: argparse._SubParsersAction, run_command: Callable[[Sequence[str]], int]) -> None:
    """`run_command` is the entry point's main(), handed in so the demo runs stages through it
    without importing the module that imports this one."""
    p = add_command(
        subparsers,
        "demo",
        help="run the whole pipeline offline on a synthetic dataset",
        description="""
            Draws a small labelled dataset (shapes on cluttered backgrounds), trains a
            MobileNetV2 at 96x96, converts it to a full-int8 bundle (quantization-aware
            training and post-training quantization, both measured; the more accurate
            ships), predicts its Edge TPU mapping, classifies a
            generated 640x480 video with the device runtime and benchmarks latency.
            Ends with a table: float vs int8 accuracy, model size, latency p50/p99, FPS.
            Uses Keras' ImageNet weights when Keras can download them, else the ImageNet
            copy shipped with edgepipe, and says which. Takes a few minutes on a
            laptop CPU.
        """,
        examples="""
            edgepipe demo
            edgepipe demo --workdir /tmp/edgepipe-demo --force
            edgepipe demo --weights none        # random initialisation, to see what ImageNet buys
            edgepipe demo --json
        """,
    )
    add_options(p, DemoOptions)
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run_demo, run_command=run_command)


def _stage(run_command: Callable[[Sequence[str]], int], name: str, argv: list[str], echo: bool = True) -> str:
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


def _device_stage(name: str, argv: list[str]) -> str:
    """Run one device command (`run`, `bench`) as `python -m edgepipe` in a new process, where
    TensorFlow is not loaded, and return its stdout; its stderr goes to ours as it comes."""
    print(f"\n== {name}: edgepipe {' '.join(argv)}", file=sys.stderr, flush=True)
    result = subprocess.run([sys.executable, "-m", "edgepipe", *argv], stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise UserError(f"demo stopped: `edgepipe {argv[0]}` failed (exit {result.returncode}); see the message above")
    return result.stdout


DEMO_ALPHA = "1.0"
DEMO_INPUT_SIZE = "96"


def _resolve_weights(requested: str) -> tuple[str, str]:
    """The weights to train with, and a plain sentence about where they came from: train's own rule
    (Keras' ImageNet download, else the copy shipped with edgepipe)."""
    from edgepipe.train.model import resolve_weights

    cfg, note = resolve_weights(ModelConfig(alpha=float(DEMO_ALPHA), input_size=int(DEMO_INPUT_SIZE), weights=requested))
    return cfg.weights, note


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _timed(label: str, timings: dict[str, float], fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = fn()
    timings[label] = round(time.perf_counter() - start, 1)
    return result


def run_demo(args: argparse.Namespace) -> int:
    from edgepipe.synthetic import write_dataset, write_video

    options = options_from(args, DemoOptions)
    work = options.workdir.expanduser().resolve()
    _prepare_workdir(work, options.force)
    data, run, bundle, video = work / "data", work / "run", work / "bundle", work / "shapes.mp4"
    timings: dict[str, float] = {}

    print(f"drawing {options.per_class} images x {len(DEMO_CLASSES)} classes into {data}", file=sys.stderr)
    write_dataset(data, per_class=options.per_class, size=128, seed=0, classes=DEMO_CLASSES)
    truth = write_video(video, frames=options.video_frames, size=(640, 480), fps=15.0, seed=7, classes=DEMO_CLASSES)

    weights, weights_note = _resolve_weights(options.weights)
    print(weights_note, file=sys.stderr)
    train_argv = ["train", str(data), "--out", str(run), "--input-size", DEMO_INPUT_SIZE, "--alpha", DEMO_ALPHA,
                  "--weights", weights, "--seed", "0", "--epochs", "30", "--fine-tune-epochs", "3"]
    _timed("train_s", timings, lambda: _stage(args.run_command, "train", train_argv))
    _timed("convert_s", timings, lambda: _stage(
        args.run_command, "convert", ["convert", str(run), "--out", str(bundle)]))
    inspect = json.loads(_stage(args.run_command, "inspect", ["inspect", str(bundle / "model.tflite"), "--json"],
                                echo=False))
    stats_path, results_path = work / "run_stats.json", work / "run_results.jsonl"
    frames = _timed("run_s", timings, lambda: _device_stage(
        "run", ["run", str(bundle), "--source", str(video), "--json", "--stats-json", str(stats_path)]))
    results_path.write_text(frames, encoding="utf-8")
    bench_path = work / "bench.json"
    _timed("bench_s", timings, lambda: _device_stage(
        "bench", ["bench", str(bundle), "--runs", "200", "--warmup", "20", "--out", str(bench_path)]))

    summary = _summarise(work, bundle, inspect, results_path, truth, stats_path, bench_path, weights_note, timings)
    (work / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(_table(summary))
    return 0


def _prepare_workdir(work: Path, force: bool) -> None:
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


def _video_accuracy(results_path: Path, truth: list[str]) -> float | None:
    """Share of video frames whose top label is the shape drawn in that frame."""
    rows = [json.loads(line) for line in results_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    hits = [row["top"][0]["label"] == truth[row["frame"]] for row in rows if row.get("top") and row["frame"] < len(truth)]
    return sum(hits) / len(hits) if hits else None


def _summarise(work: Path, bundle: Path, inspect: dict, results_path: Path, truth: list[str], stats_path: Path,
               bench_path: Path, weights_note: str, timings: dict[str, float]) -> dict[str, Any]:
    manifest = _read_json(bundle / "bundle.json")
    accuracy = manifest.get("accuracy", {})
    bench = _read_json(bench_path)["results"][0]
    stats = _read_json(stats_path)
    float_size = (bundle / "model_float32.tflite").stat().st_size if (bundle / "model_float32.tflite").exists() else None
    return {
        "workdir": str(work),
        "weights": weights_note,
        "accuracy_float": accuracy.get("float"),
        "accuracy_int8": accuracy.get("int8"),
        "accuracy_ptq": accuracy.get("ptq"),
        "accuracy_qat": accuracy.get("qat"),
        "method": manifest.get("quantization", {}).get("method") if isinstance(manifest.get("quantization"), dict) else None,
        "heldout_n": accuracy.get("n"),
        "model_bytes": (bundle / "model.tflite").stat().st_size,
        "float32_model_bytes": float_size,
        "edgetpu_mapped": inspect.get("mapped"),
        "edgetpu_cpu": inspect.get("cpu"),
        "latency_p50_ms": bench["latency_ms"]["p50"],
        "latency_p99_ms": bench["latency_ms"]["p99"],
        "threads": bench.get("threads"),
        "bench_peak_rss_mb": bench.get("peak_rss_mb"),
        "run_fps": stats.get("fps"),
        "video_accuracy": _video_accuracy(results_path, truth),
        "timings_s": timings,
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _table(s: dict[str, Any]) -> str:
    size = f"{s['model_bytes'] / 1024:.0f} KiB"
    if s["float32_model_bytes"]:
        size += f" (float32: {s['float32_model_bytes'] / 1024:.0f} KiB)"
    rows = [
        ("backbone weights", s["weights"].removeprefix("backbone weights: ")),  # train's note says it once
        ("held-out accuracy, float", _pct(s["accuracy_float"])),
        ("held-out accuracy, int8", _pct(s["accuracy_int8"]) + (f"  [PTQ {_pct(s['accuracy_ptq'])}, QAT {_pct(s['accuracy_qat'])}]"
                                                                 if s["accuracy_qat"] is not None else "")),
        ("int8 model size", size),
        ("Edge TPU (predicted)", f"{s['edgetpu_mapped']} ops mapped, {s['edgetpu_cpu']} on CPU"),
        (f"latency p50 / p99 ({s['threads']} thread{'s' if s['threads'] != 1 else ''})",
         f"{s['latency_p50_ms']:.2f} / {s['latency_p99_ms']:.2f} ms, peak memory {s['bench_peak_rss_mb']:.0f} MB "
         "(measured in a process without TensorFlow, as on the device)"),
        ("edgepipe run on 640x480 video", f"{s['run_fps']:.1f} FPS, {_pct(s['video_accuracy'])} of frames right"),
        ("stage times", ", ".join(f"{k[:-2]} {v:.0f}s" for k, v in s["timings_s"].items())),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"\nedgepipe demo: {s['workdir']}", "-" * (width + 40)]
    lines += [f"{k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)
