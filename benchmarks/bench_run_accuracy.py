"""Accuracy through `edgepipe run` on a real labelled set, as a camera would deliver it.

Writes the labelled images (HELDOUT/<label>/*.jpg) into a 640x480 MJPG video,
one image per frame in a known order, runs `edgepipe run MODEL --source video
--json` with default flags, and scores each frame's top-1 against its image's
folder. --checkout runs another checkout's code (e.g. main, for the number
before a change) with this machine's Python.

    python benchmarks/bench_run_accuracy.py BUNDLE HELDOUT_DIR [--checkout /work/main]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from checkouts import RUN, checkout_python  # noqa: E402  (a sibling module of this script)


SUFFIXES = (".jpg", ".jpeg", ".png")


def write_video(path: Path, heldout: Path) -> list[str]:
    """Each image stretched to 640x480 (as a camera frame), one per frame; returns the frames' labels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    labels = []
    for image in sorted(p for p in heldout.rglob("*") if p.suffix.lower() in SUFFIXES):
        writer.write(cv2.resize(cv2.imread(str(image)), (640, 480), interpolation=cv2.INTER_AREA))
        labels.append(image.parent.name)
    writer.release()
    return labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("heldout", type=Path)
    parser.add_argument("--checkout", type=Path, default=ROOT.parent, help="the checkout whose code runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "heldout_640x480.avi"
        labels = write_video(video, args.heldout)
        out = subprocess.run([checkout_python(args.checkout), "-c", RUN, "run", str(args.model), "--source", str(video), "--json",
                              "--stats-interval", "0"], cwd=args.checkout, check=True, capture_output=True,
                             text=True).stdout
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    top1 = {r["frame"]: r["top"][0]["label"] for r in results}
    right = sum(top1.get(i) == label for i, label in enumerate(labels))
    print(f"{args.checkout}: {right}/{len(labels)} = {right / len(labels):.4f} top-1 through run "
          f"({len(results)} results for {len(labels)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
