"""Small labelled image datasets drawn on the fly, so the demos and the tests
run offline with no photos: shapes with random colours, sizes, positions,
rotations, cluttered backgrounds and sensor-like noise; one shape per image
for classification, scenes of several boxed shapes (Pascal VOC) for detection."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A two-colour gradient with a few faint distractor lines."""
    a, b = rng.integers(0, 256, size=(2, 3))
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)
    grad = t[:, None] if rng.random() < 0.5 else t[None, :]
    image = a[None, None, :] * (1 - grad[..., None]) + b[None, None, :] * grad[..., None]
    image = np.broadcast_to(image, (size, size, 3)).astype(np.uint8).copy()
    for _ in range(int(rng.integers(0, 4))):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(image, p1, p2, colour, int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def _polygon(shape: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    if shape == "square":
        corners = np.deg2rad([45, 135, 225, 315])
    elif shape == "triangle":
        corners = np.deg2rad([90, 210, 330])
    else:
        raise ValueError(shape)
    corners = corners + angle
    points = centre + radius * np.stack([np.cos(corners), np.sin(corners)], axis=1)
    return points.astype(np.int32)


def _paint(image: np.ndarray, shape: str, centre: np.ndarray, radius: float, angle: float,
           colour: tuple[int, ...]) -> tuple[float, float, float, float]:
    """Fill `shape` into `image`; returns its tight box (x0, y0, x1, y1) in pixels."""
    if shape == "circle":
        cv2.circle(image, tuple(int(v) for v in centre), int(radius), colour, -1, cv2.LINE_AA)
        r = int(radius)
        points = np.array([centre - r, centre + r])
    elif shape == "cross":
        arm = radius * 0.35
        bars = []
        for theta in (angle, angle + np.pi / 2):
            d = np.array([np.cos(theta), np.sin(theta)])
            n = np.array([-d[1], d[0]])
            bar = np.array([centre + radius * d + arm * n, centre + radius * d - arm * n,
                            centre - radius * d - arm * n, centre - radius * d + arm * n])
            cv2.fillPoly(image, [bar.astype(np.int32)], colour, cv2.LINE_AA)
            bars.append(bar.astype(np.int32))
        points = np.concatenate(bars)
    else:
        points = _polygon(shape, centre, radius, angle)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    height, width = image.shape[:2]
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0) + 1
    return float(max(x0, 0)), float(max(y0, 0)), float(min(x1, width)), float(min(y1, height))


def _noisy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, rng.uniform(2, 10), image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def draw_shape(shape: str, rng: np.random.Generator, size: int = 160) -> np.ndarray:
    """One BGR image of `shape` on a random background."""
    image = _background(rng, size)
    radius = float(rng.uniform(0.18, 0.34) * size)
    centre = rng.uniform(radius, size - radius, 2)
    angle = float(rng.uniform(0, 2 * np.pi))
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    _paint(image, shape, centre, radius, angle, colour)
    return _noisy(image, rng)


def draw_scene(rng: np.random.Generator, size: int = 256, classes: tuple[str, ...] = SHAPES, max_objects: int = 3
               ) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float]]]]:
    """A BGR image with 1..max_objects shapes that do not overlap, and each one's (class, box)."""
    image = _background(rng, size)
    objects: list[tuple[str, tuple[float, float, float, float]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):  # a free spot; give up on this object when the scene is full
            radius = float(rng.uniform(0.08, 0.2) * size)
            centre = rng.uniform(radius, size - radius, 2)
            if all(np.abs(centre - _centre(box)).max() > radius + _half_side(box) for _, box in objects):
                break
        else:
            continue
        shape = classes[int(rng.integers(len(classes)))]
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        objects.append((shape, _paint(image, shape, centre, radius, float(rng.uniform(0, 2 * np.pi)), colour)))
    return _noisy(image, rng), objects


def _centre(box: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def _half_side(box: tuple[float, float, float, float]) -> float:
    return max(box[2] - box[0], box[3] - box[1]) / 2


def voc_xml(image_name: str, width: int, height: int, objects: list[tuple[str, tuple[float, float, float, float]]]) -> bytes:
    """A Pascal VOC annotation as labelImg writes it (whole pixels, the image beside it)."""
    from xml.etree import ElementTree as ET

    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = image_name
    size = ET.SubElement(root, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for label, box in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = label
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bndbox, key).text = str(round(value))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"


def write_detection_dataset(root: Path, images: int = 120, size: int = 256, seed: int = 0,
                            classes: tuple[str, ...] = SHAPES[:3]) -> list[Path]:
    """Write `root/NNNN.jpg` scenes of shapes, each with `NNNN.xml` (Pascal VOC) beside it; returns the images."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(images):
        image, objects = draw_scene(rng, size, classes)
        path = root / f"{i:04d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        path.with_suffix(".xml").write_bytes(voc_xml(path.name, size, size, objects))
        written.append(path)
    return written


def write_dataset(root: Path, per_class: int = 60, size: int = 160, seed: int = 0,
                  classes: tuple[str, ...] = SHAPES) -> dict[str, list[Path]]:
    """Write `root/<shape>/NNNN.jpg`; returns the paths per class."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[Path]] = {}
    for shape in classes:
        folder = Path(root) / shape
        folder.mkdir(parents=True, exist_ok=True)
        written[shape] = []
        for i in range(per_class):
            path = folder / f"{i:04d}.jpg"
            cv2.imwrite(str(path), draw_shape(shape, rng, size), [cv2.IMWRITE_JPEG_QUALITY, 90])
            written[shape].append(path)
    return written


def _write_frames(path: Path, size: tuple[int, int], fps: float, frames: Iterator[np.ndarray],
                  fourcc: str = "mp4v") -> None:
    """Write BGR `frames` of `size` (width, height) as a video (MPEG-4 by default)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()


def write_video(path: Path, frames: int = 60, size: tuple[int, int] = (640, 480), fps: float = 15.0,
                seed: int = 1, classes: tuple[str, ...] = SHAPES, fourcc: str = "mp4v") -> list[str]:
    """A video whose frames cycle through the shapes (MPEG-4 in an .mp4 by default; "MJPG" in an
    .avi is what USB cameras send); returns each frame's true label."""
    width, height = size
    rng = np.random.default_rng(seed)
    truth = [classes[(i * len(classes)) // frames] for i in range(frames)]
    _write_frames(path, size, fps, (cv2.resize(draw_shape(shape, rng, min(width, height)), (width, height),
                                               interpolation=cv2.INTER_LINEAR) for shape in truth), fourcc)
    return truth


Objects = list[tuple[str, tuple[float, float, float, float]]]


def write_detection_video(path: Path, frames: int = 120, size: tuple[int, int] = (640, 480), fps: float = 15.0,
                          seed: int = 1, classes: tuple[str, ...] = SHAPES[:3], hold: int = 15,
                          scene_size: int = 256) -> list[Objects]:
    """An MP4 (mp4v) of shape scenes, each held `hold` frames; returns each frame's true (class, box in pixels).

    Scenes are drawn as write_detection_dataset draws them (square, `scene_size` pixels: give the
    data set's size) and stretched to `size`, so a model that stretches frames to its square input
    sees what it was trained on.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    sx, sy = width / scene_size, height / scene_size
    scenes: list[tuple[np.ndarray, Objects]] = []
    for _ in range(-(-frames // hold)):
        square, objects = draw_scene(rng, scene_size, classes)
        scenes.append((cv2.resize(square, size, interpolation=cv2.INTER_LINEAR),
                       [(label, (x0 * sx, y0 * sy, x1 * sx, y1 * sy)) for label, (x0, y0, x1, y1) in objects]))
    _write_frames(path, size, fps, (scenes[i // hold][0] for i in range(frames)))
    return [scenes[i // hold][1] for i in range(frames)]
