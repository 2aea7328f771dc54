"""`edgepipe classify` and `run` registered (here), with `verify` (verify.py) and `bench` (device/bench/cli.py).

Registration imports only argparse and light modules: the command bodies in
commands.py load numpy, OpenCV and the TFLite runtime when a command runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgepipe.core.args import add_command, positive_int
from edgepipe.core.options import add_options, argument_group

from edgepipe.device.bench.cli import OnHost, register_bench
from edgepipe.device.model.options import ModelOptions
from edgepipe.device.run.options import RunOptions
from edgepipe.device.sinks.endpoints import PASSWORD_ENV, TOKEN_ENV, mqtt_url, serve_address
from edgepipe.device.sinks.options import COLLECT, MQTT, SERVE, CollectOptions, MqttOptions, ServeOptions
from .verify import register_verify


def size(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match.group(1)), int(match.group(2))):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 640x480")
    return int(match.group(1)), int(match.group(2))


def worker_count(text: str) -> int | None:
    """A positive whole number of interpreters, or None for 'auto' (measure the fastest)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers: use auto or 1, 2, ...") from None


def register(subparsers: argparse._SubParsersAction, bench_on_host: OnHost | None = None) -> None:
    """classify, run and bench; `bench_on_host` carries out `bench --host` (the deploy stage's)."""
    register_classify(subparsers)
    register_run(subparsers)
    register_bench(subparsers, bench_on_host)
    register_verify(subparsers)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="a bundle directory (from `edgepipe convert`) or a .tflite file")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    add_options(p, ModelOptions)


def register_classify(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "classify",
        help="classify image files with a bundle or a .tflite model",
        description="""
        Classify still images with exactly the preprocessing and model path of
        `edgepipe run`. An unreadable image is reported and the others are still
        classified; the exit code is 1 if any image failed.
        """,
        examples="""
        edgepipe classify bundle/ photo.jpg
        edgepipe classify bundle/ photos/*.jpg --top-k 3 --json
        edgepipe classify mobilenet_v2_1.0_224_quant.tflite --labels labels.txt cat.jpg
        edgepipe classify bundle/ cat.jpg --accelerator edgetpu --edgetpu-device usb:0
        """,
    )
    _add_model_arguments(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, WebP)")
    p.set_defaults(func=_lazy("classify_command"))


def register_run(subparsers: argparse._SubParsersAction) -> None:
    p = add_command(
        subparsers,
        "run",
        help="classify camera frames (or a video, stream, images) continuously",
        description="""
        Capture frames and classify them continuously: one line per result on
        stdout (or --json), a stats line every --stats-interval seconds and a
        final summary on stderr. Live sources keep only the newest frame (older
        ones are dropped and counted); files are processed frame by frame, or at
        their own frame rate with --realtime. A lost camera or stream is retried
        with backoff (--max-retries), then the run exits 1 with the summary. End
        of a file exits 0; SIGINT/SIGTERM stop within a second, flushing the
        summary and the recording (exit 130 for SIGINT, 0 for SIGTERM).
        Several interpreters (--workers) infer consecutive frames at once;
        results still come out in frame order (live sources: never an older
        frame after a newer one).
        """,
        examples="""
        edgepipe run bundle/                               Pi camera (or /dev/video0)
        edgepipe run bundle/ --source 0 --size 640x480 --fps 30 --display
        edgepipe run bundle/ --source video.mp4 --json --stats-json stats.json
        edgepipe run bundle/ --source rtsp://cam.local/stream --threshold 0.6 --smooth 0.3
        edgepipe run bundle/ --source 'photos/*.jpg' --top-k 1
        edgepipe run bundle/ --source picamera2 --record out.mp4 --duration 60
        edgepipe run bundle/ --source 0 --workers 1 --threads 2     lowest latency per frame
        edgepipe run bundle/ --mqtt mqtt://ha:secret@homeassistant.local/edgepipe/door --serve 0.0.0.0:8080 --serve-token-file token.txt
        edgepipe run bundle/ --roi gate=0,0,0.5,1 --roi drive=320,0,320,480 --mqtt mqtt://broker/cam1
        edgepipe run bundle/ --collect /var/lib/edgepipe/collect --collect-below 0.6 --collect-max-mb 200
        """,
    )
    _add_model_arguments(p)
    p.add_argument("--source", metavar="SPEC",
                   help="picamera2, a camera index (0), /dev/videoN, a video file, an rtsp:// or http:// URL, "
                        "a directory or glob of images (default: picamera2 if installed, else /dev/video0)")
    p.add_argument("--workers", type=worker_count, metavar="N|auto",
                   help="interpreters inferring consecutive frames at once, --threads each; auto (default): "
                        "the fastest combination for this model on these cores, measured once (under a second) "
                        "and cached; 1 gives the lowest latency per frame")
    p.add_argument("--size", type=size, metavar="WxH", help="camera capture size (default 640x480 for picamera2)")
    add_options(p, RunOptions)
    p.add_argument("--display", action="store_true",
                   help="show annotated frames in a window (q or Esc quits); ignored with a warning without a display")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="write the annotated frames to a video file")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the final summary as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing --record/--stats-json files")
    argument_group(p, MQTT).add_argument(
        "--mqtt", type=mqtt_url, metavar="URL",
        help="publish results to mqtt[s]://[user[:password]@]host[:port]/PREFIX: PREFIX/state (label, retained), "
             f"PREFIX/result (JSON), PREFIX/availability; the password may come from ${PASSWORD_ENV}")
    add_options(p, MqttOptions)
    serve = argument_group(p, SERVE)
    serve.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT",
                       help="serve / (live page), /stream.mjpg, /api/latest, /api/summary, /healthz, /metrics "
                            "(default host 127.0.0.1; 0.0.0.0 for the network, with a token or --serve-public)")
    serve.add_argument("--serve-token", metavar="TOKEN",
                       help=f"require this token on every request (or ${TOKEN_ENV}, or --serve-token-file)")
    serve.add_argument("--serve-token-file", type=Path, metavar="FILE", help="read the token from FILE")
    add_options(p, ServeOptions)
    argument_group(p, COLLECT).add_argument(
        "--collect", type=Path, metavar="DIR",
        help="keep unsure frames as JPEG + JSON sidecar in DIR: unknown ones, and those matching "
             "--collect-below/--collect-margin, plus one in --collect-every confident frames")
    add_options(p, CollectOptions)
    p.set_defaults(func=_lazy("run_command"))


def _lazy(name: str):
    """The command body, imported only when the command runs."""

    def command(args: argparse.Namespace) -> int:
        from . import commands

        return getattr(commands, name)(args)

    return command
