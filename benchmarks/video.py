"""The test video of the run benchmarks: 640x480 MJPG, what a USB camera sends.

Real photos (flowers12, when ../shared is present) decode at the cost real
frames have; synthetic shapes (flat colours, cheap to decode) stand in otherwise,
and the benchmark records which it used.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from edgepipe.device.model.preprocess import load_image
from edgepipe.synthetic import write_video


def write_photo_video(path: str | Path, photos: Path, frames: int = 300, size: tuple[int, int] = (640, 480),
                      fps: float = 30.0) -> str:
    """Write the video; returns what is in it (for the results file)."""
    images = sorted(photos.rglob("*.jpg")) if photos.is_dir() else []
    if not images:
        write_video(Path(path), frames=frames, size=size, fps=fps)
        return "synthetic shapes (mp4v), no flowers12 photos found"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write MJPG to {path}")
    try:
        step = max(1, len(images) // frames)
        for i in range(frames):
            photo = load_image(images[(i * step) % len(images)])
            writer.write(cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    return f"{frames} flowers12 photos, MJPG"
