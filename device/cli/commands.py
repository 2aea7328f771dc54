"""The bodies of `edgepipe classify` and `edgepipe run` (registered in register.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import collections

import cv2
import numpy as np

from edgepipe.device.run.autotune import choose_workers
from edgepipe.device.sinks.endpoints import serve_token
from edgepipe.device.sinks.collect import CollectSink
from edgepipe.device.sinks.options import CollectOptions, MqttOptions, ServeOptions
from edgepipe.device.sinks.display import DisplaySink
from edgepipe.device.sinks.recorder import RecorderSink
from edgepipe.device.run.loop import Pipeline
from edgepipe.device.run.options import RunOptions
from edgepipe.device.run.regions import region_name_clash
from edgepipe.device.run.timing import invoke_timed, predict_timed, preprocess_timed
from edgepipe.device.model.postprocess import scored as scored_text
from edgepipe.device.model.preprocess import ImageReadError, load_image
from edgepipe.device.run.results import LATENCY_DECIMALS, FrameResult
from edgepipe.device.model.classifier import Classifier, open_classifier
from edgepipe.device.model.detect_postprocess import DEFAULT_SCORE_THRESHOLD, DetectOptions
from edgepipe.device.host import default_threads
from edgepipe.device.run.sink import Sink
from edgepipe.device.sinks.lines import LinesSink
from edgepipe.device.sinks.statsjson import StatsJsonSink
from edgepipe.device.run.sources import default_source, open_source
from edgepipe.core.options import options_from
from edgepipe.device.model.imx500_sensor import IMX500, SensorScores
from edgepipe.device.run.imx500_source import Imx500Source, auto_picks_ai_camera, open_ai_camera
from edgepipe.core.safetext import printable, safe_line
from edgepipe.device.model.unknown import UnknownRule, resolve

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 0}  # SIGTERM is how a service is stopped: not a failure


def _open(args: argparse.Namespace, threads: int | None = None, announce: bool = True) -> Classifier:
    """The model as the arguments ask; `announce`: say so on stderr now (run says it once its workers are chosen)."""
    detect = DetectOptions(score_threshold=DEFAULT_SCORE_THRESHOLD if args.threshold is None else args.threshold,
                           max_results=args.max_objects, classes=args.classes)
    classifier = open_classifier(
        args.model,
        labels=args.labels,
        accelerator=args.accelerator,
        threads=threads or args.threads,
        edgetpu_device=args.edgetpu_device,
        detect=detect,
    )
    if args.classes is not None and not classifier.is_detector:
        args.parser.error("--classes filters a detector's objects; this model is a classifier")
    if announce:
        _announce(args, classifier)
    return classifier


def _announce(args: argparse.Namespace, classifier: Classifier, interpreters: int = 1) -> None:
    print(f"edgepipe {args.command}: {printable(classifier.describe(interpreters))}", file=sys.stderr, flush=True)


def open_workers(args: argparse.Namespace) -> list[Classifier]:
    """One classifier per --workers interpreter; `auto` measures (or recalls) the fastest combination."""
    cores = default_threads()
    if args.workers is None:  # --workers auto
        base = _open(args, announce=False)  # all cores by default: what the Edge TPU's CPU fallback ops get
        if base.accelerator != "cpu":
            _announce(args, base)
            print(f"edgepipe run: --workers auto: 1 interpreter on the {base.accelerator} (one per TPU)",
                  file=sys.stderr, flush=True)
            return [base]
        choice, classifiers = choose_workers(base, args.threads, cores=cores)
        _announce(args, classifiers[0], len(classifiers))
        print(f"edgepipe run: {choice.describe()}", file=sys.stderr, flush=True)
        return classifiers
    threads = args.threads or max(1, cores // args.workers)
    base = _open(args, threads=threads, announce=False)
    classifiers = [base] + [base.replica(threads) for _ in range(args.workers - 1)]
    _announce(args, base, len(classifiers))
    return classifiers


def _unknown_rule(args: argparse.Namespace, classifier: Classifier) -> UnknownRule | None:
    """The rule under --unknown, said on stderr so a log shows what "unknown" meant. A detector's
    counterpart is its score floor (--threshold): fainter objects are not reported."""
    if classifier.is_detector:
        if args.unknown not in ("auto", "off"):
            args.parser.error("--unknown P is for classifiers; a detector's score floor is --threshold P")
        print(f"edgepipe {args.command}: objects scoring below {classifier.detect_options.score_threshold:g} "
              "are not reported (--threshold)", file=sys.stderr, flush=True)
        return None
    rule = resolve(args.unknown, classifier.bundle.unknown if classifier.bundle else None)
    if rule is not None and rule.features is not None and classifier.accelerator == IMX500 and args.unknown == "auto":
        rule = None  # the AI Camera's sensor outputs the class scores only
        print(f"edgepipe {args.command}: the bundle's \"unknown\" score reads the model's features, which "
              f"{classifier.accelerator} does not output: pass --unknown P for a threshold on max softmax",
              file=sys.stderr, flush=True)
    if rule is None:
        note = "off" if args.unknown == "off" else "off (the model has no calibrated threshold; pass --unknown P)"
    else:
        note = rule.describe(classifier.labels)
    print(f"edgepipe {args.command}: unknown: {printable(note)}", file=sys.stderr, flush=True)
    return rule


def _detect_image(classifier: Classifier, path: str, bgr: np.ndarray, as_json: bool) -> None:
    """One image's objects: a JSON object (path, detections, per-label counts, latency) or a line."""
    tensor, preprocess_ms = preprocess_timed(classifier, bgr)
    outputs, inference_ms = invoke_timed(classifier, tensor)
    started = time.perf_counter()
    found = classifier.detections(outputs, (bgr.shape[1], bgr.shape[0]))
    latency = {"preprocess": preprocess_ms, "inference": inference_ms,
               "postprocess": (time.perf_counter() - started) * 1e3}
    counts = dict(collections.Counter(d.label for d in found))
    if as_json:
        print(json.dumps({"path": str(path), "detections": [d.to_json() for d in found], "counts": counts,
                          "latency_ms": {k: round(v, LATENCY_DECIMALS) for k, v in latency.items()}}), flush=True)
        return
    objects = ", ".join(f"{d.label} {d.score:.3f} [{','.join(map(str, d.box))}]" for d in found) or "no objects"
    print(printable(f"{path}: {objects}  [inference {inference_ms:.1f} ms]"), flush=True)


def classify_command(args: argparse.Namespace) -> int:
    classifier = _open(args)
    rule = _unknown_rule(args, classifier)
    failed = 0
    for index, path in enumerate(args.images):
        try:
            bgr = load_image(path, args.max_image_pixels)
        except ImageReadError as exc:
            failed += 1
            print(f"edgepipe classify: skipped: {safe_line(exc)}", file=sys.stderr, flush=True)
            continue
        if classifier.is_detector:
            _detect_image(classifier, path, bgr, args.json)
            continue
        tensor, preprocess_ms = preprocess_timed(classifier, bgr)
        scored = predict_timed(classifier, tensor, args.top_k, args.threshold or 0.0, unknown=rule)
        result = FrameResult(index, time.time(), scored.top, {"preprocess": preprocess_ms, **scored.stages}, 0.0,
                             str(path), verdict=scored.verdict)
        if args.json:
            data = result.to_json()
            shown = {"path": data["item"], "label": data["label"]}
            if "confidence" in data:
                shown["confidence"] = data["confidence"]
            print(json.dumps({**shown, "top": data["top"], "latency_ms": data["latency_ms"]}), flush=True)
        else:
            labels = ", ".join(scored_text(p.label, p.score) for p in scored.top)
            if result.unknown:
                labels = f"unknown (best: {labels})"
            print(printable(f"{path}: {labels}  [inference {result.latency_ms['inference']:.1f} ms]"), flush=True)
    if failed:
        print(f"edgepipe classify: {failed} of {len(args.images)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


@contextlib.contextmanager
def _stop_on_signals(pipeline: Pipeline) -> Iterator[None]:
    """SIGINT/SIGTERM end the run cleanly (summary, recording) instead of killing it.

    Handlers can only be installed from the main thread; elsewhere (an
    embedding application) the caller owns signals and `pipeline.stop`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        pipeline.request_stop(f"stopped by {signal.Signals(signum).name}", SIGNAL_EXIT_CODES[signum])

    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT_CODES}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_sinks(args: argparse.Namespace) -> list[Sink]:
    """The outputs `edgepipe run` was asked for, each checked before any frame is read."""
    sinks: list[Sink] = [LinesSink(sys.stdout, args.json, args.threshold or 0.0)]
    if args.display:
        sinks.append(DisplaySink(sys.stderr))
    if args.record is not None:
        sinks.append(RecorderSink(args.record, args.force, args.fps))
    if args.stats_json is not None:
        sinks.append(StatsJsonSink(args.stats_json, args.force))
    if args.mqtt is not None:
        from edgepipe.device.sinks.mqtt import MqttSink  # paho only when asked for

        sinks.append(MqttSink(options_from(args, MqttOptions, target=args.mqtt), sys.stderr))
    if args.serve is not None:
        from edgepipe.device.sinks.http import HttpSink

        host, port = args.serve
        token = serve_token(args.serve_token, args.serve_token_file)
        sinks.append(HttpSink(options_from(args, ServeOptions, host=host, port=port, token=token), sys.stderr))
    if args.collect is not None:
        sinks.append(CollectSink(options_from(args, CollectOptions, root=args.collect)))
    return sinks


def _not_for_ai_camera(args: argparse.Namespace) -> str | None:
    """The first flag given that cannot apply to the AI Camera, or None."""
    for flag, given in (("--source", args.source not in (None, "picamera2")), ("--roi", bool(args.roi)),
                        ("--workers", args.workers not in (None, 1))):
        if given:
            return flag
    return None


def _auto_picks_ai_camera(args: argparse.Namespace) -> bool:
    """`--accelerator auto`'s first choice, said on stderr when the bundle has an IMX500 model."""
    flag = _not_for_ai_camera(args)
    chosen, why = auto_picks_ai_camera(Path(args.model), f"{flag} does not apply to the AI Camera" if flag else None)
    if why:
        print(f"edgepipe run: --accelerator auto: {printable(why)}", file=sys.stderr, flush=True)
    return chosen


def _open_ai_camera(args: argparse.Namespace) -> tuple[Imx500Source, list[SensorScores]]:
    """The AI Camera is both the source and the accelerator: refuse what cannot apply to it."""
    flag = _not_for_ai_camera(args)
    if flag:
        args.parser.error(f"{flag} does not apply to --accelerator imx500: the AI Camera is the source and "
                          "infers each whole frame on its sensor")
    source, scores = open_ai_camera(Path(args.model), args.size, args.fps, say=lambda m: print(
        f"edgepipe run: {m}", file=sys.stderr, flush=True))
    print(f"edgepipe run: {printable(scores.describe())}", file=sys.stderr, flush=True)
    return source, [scores]


def run_command(args: argparse.Namespace) -> int:
    clash = region_name_clash([region.name for region in args.roi])
    if clash:
        args.parser.error(clash)
    given = [flag for flag in ("collect_below", "collect_margin") if getattr(args, flag) is not None]
    if args.collect is None and given:
        args.parser.error(f"--{given[0].replace('_', '-')} needs --collect DIR")
    sinks = run_sinks(args)
    # OpenCV's worker threads would compete with the interpreters for the same cores;
    # decoding and resizing one frame are cheap enough for the capture thread alone.
    cv2.setNumThreads(1)
    if args.accelerator == IMX500 or (args.accelerator == "auto" and _auto_picks_ai_camera(args)):
        source, workers = _open_ai_camera(args)
    else:
        source = open_source(args.source or default_source(), args.size, args.fps, max_pixels=args.max_image_pixels)
        workers = open_workers(args)
    options = options_from(args, RunOptions, top_k=args.top_k, threshold=args.threshold or 0.0,
                           unknown=_unknown_rule(args, workers[0]))
    pipeline = Pipeline(workers, source, options, sinks)
    with _stop_on_signals(pipeline):
        result = pipeline.run()
    return result.exit_code
