"""The Edge TPU probe's child process (see edgetpu_probe.py): load the delegate,
build the interpreter, run the golden set (or one grey frame) and print the
scores as JSON lines. If libedgetpu crashes or hangs, only this process dies.

    python -m edgepipe.device.model.edgetpu_probe_child MODEL_OR_BUNDLE [--device D]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from edgepipe.core.errors import UserError

from ..host import edgetpu_runtime_version
from .bundle import is_bundle
from .edgetpu_probe import EXIT_UNAVAILABLE
from .golden import read_golden, run_golden
from .golden_detect import detection_rows
from .classifier import open_classifier
from edgepipe.device.model.backends import EdgeTpuUnavailable


def probe(model: str, device: str | None) -> int:
    """Print {"libedgetpu": version} first (so a crash still names it), then {"scores": ...} or {"error": ...}."""
    print(json.dumps({"libedgetpu": edgetpu_runtime_version() or "unknown"}), flush=True)
    try:
        classifier = open_classifier(model, accelerator="edgetpu", edgetpu_device=device, threads=1, probe=False)
        golden = read_golden(classifier.bundle) if is_bundle(Path(model)) else None
        if golden is not None:
            scores = run_golden(classifier, golden)
        else:
            grey = np.full((classifier.input_spec.height, classifier.input_spec.width, 3), 128, np.uint8)
            outputs = classifier.invoke(classifier.preprocess(grey))
            scores = (detection_rows(classifier, outputs) if classifier.is_detector else outputs)[np.newaxis]
    except EdgeTpuUnavailable as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return EXIT_UNAVAILABLE
    except UserError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps({"scores": scores.tolist()}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgepipe.device.model.edgetpu_probe_child")
    parser.add_argument("model")
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    return probe(args.model, args.device)


if __name__ == "__main__":
    sys.exit(main())
