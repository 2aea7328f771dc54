"""A detector's boxes as a Pascal VOC annotation: the pre-labels of a collected frame, in the
format labelImg and CVAT open for correction and `train --task detect` reads (train/detect/voc.py).

Written by `run --collect` beside each kept frame of a detector, and again by
`deploy collect` from the frame's JSON sidecar (the one description the device
and the workstation share), so the same boxes give the same file byte for byte.
"""

from __future__ import annotations

from typing import Any, Sequence
from xml.sax.saxutils import escape


def voc_annotation(filename: str, width: int, height: int, detections: Sequence[dict[str, Any]]) -> str:
    """The VOC XML of one image: `detections` as in a sidecar or `--json` ({label, score, box: [x0, y0,
    x1, y1] px, x1/y1 exclusive}); VOC's corners are inclusive pixels, 1-based by convention, and
    clipped inside the image so the reader accepts every box."""
    objects = []
    for d in detections:
        x0, y0, x1, y1 = (int(v) for v in d["box"])
        corners = (max(1, x0 + 1), max(1, y0 + 1), min(width, x1), min(height, y1))
        if corners[2] <= corners[0] or corners[3] <= corners[1]:
            continue  # a sliver at the edge: no box a labeller could see
        bndbox = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), corners))
        objects.append(f"  <object>\n    <name>{escape(str(d['label']))}</name>\n    <pose>Unspecified</pose>\n"
                       f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n"
                       f"    <score>{float(d['score']):.4f}</score>\n    <bndbox>{bndbox}</bndbox>\n  </object>\n")
    return (f"<annotation>\n  <folder></folder>\n  <filename>{escape(filename)}</filename>\n"
            f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>\n"
            f"  <segmented>0</segmented>\n{''.join(objects)}</annotation>\n")
