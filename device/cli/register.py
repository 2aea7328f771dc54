"""`edgepipe classify` and `run` registered (here), with `verify` (verify.py) and `bench` (device/bench/cli.py).

Registration imports only argparse and light modules: the command bodies in
commands.py load numpy, OpenCV and the TFLite runtime when a command runs.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgepipe.core.accelerators import ACCELERATORS
from edgepipe.core.args import add_command, non_negative_float, non_negative_int, positive_float, positive_int, unit_interval

from edgepipe.device.bench.cli import OnHost, register_bench
from edgepipe.device.sinks.endpoints import PASSWORD_ENV, TOKEN_ENV, mqtt_url, serve_address
from edgepipe.device.model.imageheader import DEFAULT_MAX_PIXELS
from edgepipe.device.run.regions import parse_region
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


def smoothing_alpha(text: str) -> float:
    """A number in (0, 1]: the weight of the newest frame's scores."""
    value = unit_interval(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 would never update the scores; use a value in (0, 1]")
    return value


def unknown_mode(text: str) -> str | float:
    """--unknown: auto, off, or a threshold in [0, 1]."""
    if text in ("auto", "off"):
        return text
    try:
        return unit_interval(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not auto, off or a threshold between 0 and 1") from None


def register(subparsers: argparse._SubParsersAction, bench_on_host: OnHost | None = None) -> None:
    """classify, run and bench; `bench_on_host` carries out `bench --host` (the deploy stage's)."""
    register_classify(subparsers)
    register_run(subparsers)
    register_bench(subparsers, bench_on_host)
    register_verify(subparsers)


def _add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="a bundle directory (from `edgepipe convert`) or a .tflite file")
    p.add_argument("--labels", type=Path, metavar="FILE",
                   help="labels for a bare .tflite: one per line, or `index label` per line (a bundle has its own)")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="how many classes to report (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per line on stdout")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="CPU threads per interpreter (default: all cores; for run, see --workers)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default="auto",
                   help="cpu; edgetpu (Coral, needs libedgetpu.so.1); auto (default): the Edge TPU model "
                        "when a TPU is usable, else the CPU model, and say which")
    p.add_argument("--edgetpu-device", metavar="DEVICE",
                   help="which Edge TPU when there are several: usb:0, pci:0, usb or pci (default: the first)")
    p.add_argument("--max-image-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="skip an image file whose header declares more pixels (checked before decoding; "
                        "default: %(default)d)")
    p.add_argument("--unknown", type=unknown_mode, default="auto", metavar="auto|off|P",
                   help='report "label": "unknown" (best class still in top) when the confidence is below the '
                        "threshold: auto (default) = the one convert calibrated into the bundle (none for a bare "
                        ".tflite); off; or P in [0, 1] on the bundle's score (max softmax for a bare .tflite)")


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
        edgepipe run bundle/ --mqtt mqtt://ha:secret@homeassistant.local/edgepipe/door --serve 0.0.0.0:8080
        edgepipe run bundle/ --roi gate=0,0,0.5,1 --roi drive=320,0,320,480 --mqtt mqtt://broker/cam1
        edgepipe run bundle/ --collect /var/lib/edgepipe/collect --collect-below 0.6 --collect-max-mb 200
        """,
    )
    _add_model_arguments(p)
    p.add_argument("--source", metavar="SPEC",
                   help="picamera2, a camera index (0), /dev/videoN, a video file, an rtsp:// or http:// URL, "
                        "a directory or glob of images (default: picamera2 if installed, else /dev/video0)")
    p.add_argument("--workers", type=worker_count, default=None, metavar="N|auto",
                   help="interpreters inferring consecutive frames at once, --threads each; auto (default): "
                        "the fastest combination for this model on these cores, measured once (under a second) "
                        "and cached; 1 gives the lowest latency per frame")
    p.add_argument("--size", type=size, metavar="WxH", help="camera capture size (default 640x480 for picamera2)")
    p.add_argument("--fps", type=positive_float, metavar="FPS",
                   help="camera frame rate to request; with --realtime, the pace for sources without their own")
    p.add_argument("--realtime", action="store_true",
                   help="pace a video file (or images) at its frame rate and drop frames like a camera, "
                        "instead of classifying every frame")
    p.add_argument("--threshold", type=unit_interval, default=0.0, metavar="P",
                   help="report only classes scoring at least P (0-1)")
    p.add_argument("--smooth", type=smoothing_alpha, metavar="ALPHA",
                   help="exponential smoothing of scores over frames: new = ALPHA*frame + (1-ALPHA)*previous")
    p.add_argument("--max-frames", type=positive_int, metavar="N", help="stop after N results")
    p.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    p.add_argument("--max-retries", type=non_negative_int, default=5, metavar="N",
                   help="reopen an absent, busy or lost camera/stream N times with backoff 0.5, 1, 2, ... 8 s (default 5)")
    p.add_argument("--display", action="store_true",
                   help="show annotated frames in a window (q or Esc quits); ignored with a warning without a display")
    p.add_argument("--record", type=Path, metavar="OUT.mp4", help="write the annotated frames to a video file")
    p.add_argument("--stats-interval", type=non_negative_float, default=5.0, metavar="S",
                   help="seconds between stats lines on stderr (0: none; default 5)")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the final summary as JSON")
    p.add_argument("--force", action="store_true", help="overwrite existing --record/--stats-json files")
    p.add_argument("--ignore-decode-errors", action="store_true",
                   help="exit 0 even when frames of a video file could not be decoded (default: warn and exit 1)")
    p.add_argument("--roi", type=parse_region, action="append", default=[], metavar="NAME=x,y,w,h",
                   help="also classify this region of every frame on its own (repeatable); pixels, or fractions "
                        "of the frame such as gate=0,0,0.5,1 (the left half)")
    mqtt = p.add_argument_group("MQTT and Home Assistant")
    mqtt.add_argument("--mqtt", type=mqtt_url, metavar="URL",
                      help="publish results to mqtt[s]://[user[:password]@]host[:port]/PREFIX: PREFIX/state (label, "
                           f"retained), PREFIX/result (JSON), PREFIX/availability; the password may come from ${PASSWORD_ENV}")
    mqtt.add_argument("--mqtt-ca", type=Path, metavar="FILE", help="CA certificate for mqtts:// (default: the system's)")
    mqtt.add_argument("--mqtt-interval", type=positive_float, default=60.0, metavar="S",
                      help="republish the state at least every S seconds (default 60)")
    mqtt.add_argument("--mqtt-rate", type=positive_float, default=1.0, metavar="N",
                      help="at most N result messages per second (default 1)")
    mqtt.add_argument("--no-ha-discovery", dest="ha_discovery", action="store_false",
                      help="do not publish Home Assistant discovery configs")
    serve = p.add_argument_group("web page, API and Prometheus metrics")
    serve.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT",
                       help="serve / (live page), /stream.mjpg, /api/latest, /api/summary, /healthz, /metrics "
                            "(default host 127.0.0.1; 0.0.0.0 for the network)")
    serve.add_argument("--serve-fps", type=positive_float, default=5.0, metavar="FPS",
                       help="at most FPS JPEG frames per second to watchers (default 5); none while nobody watches")
    serve.add_argument("--serve-token", metavar="TOKEN",
                       help=f"require this token on every request (or ${TOKEN_ENV}, or --serve-token-file)")
    serve.add_argument("--serve-token-file", type=Path, metavar="FILE", help="read the token from FILE")
    serve.add_argument("--no-preview", dest="preview", action="store_false",
                       help="serve results and metrics but never images")
    collect = p.add_argument_group("collecting frames to train on (off unless --collect; see docs/privacy.md)")
    collect.add_argument("--collect", type=Path, metavar="DIR",
                         help="keep unsure frames as JPEG + JSON sidecar in DIR: unknown ones, and those matching "
                              "--collect-below/--collect-margin, plus one in --collect-every confident frames")
    collect.add_argument("--collect-below", type=unit_interval, metavar="P", help="also keep frames whose top-1 score is below P")
    collect.add_argument("--collect-margin", type=unit_interval, metavar="M",
                         help="also keep frames whose top-1 and top-2 scores are within M")
    collect.add_argument("--collect-every", type=non_negative_int, default=100, metavar="N",
                         help="keep one in N confident frames too, so the data is not only hard cases (0: none; default 100)")
    collect.add_argument("--collect-rate", type=positive_float, default=6.0, metavar="PER_MIN",
                         help="keep at most this many frames a minute (default 6)")
    collect.add_argument("--collect-max-mb", type=positive_float, default=500.0, metavar="MB",
                         help="disk budget of DIR: the oldest frames are deleted beyond it (default 500); nothing "
                              "is written while the disk has less than 64 MB free")
    p.set_defaults(func=_lazy("run_command"))


def _lazy(name: str):
    """The command body, imported only when the command runs."""

    def command(args: argparse.Namespace) -> int:
        from . import commands

        return getattr(commands, name)(args)

    return command
