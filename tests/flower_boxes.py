"""Two Pascal VOC data sets a new user could have, made from the real photos in ../shared, for checking
that `train --task detect` + `convert` work on data they were not tuned on (the raccoon photos).

- `SUNFLOWERS`: one class, 120 photos in labelImg's layout (each `IMG_NNNN.xml` beside its JPEG, 0-based
  corners, the labeller's absolute `<path>`).
- `MEADOW`: daisy and dandelion (about 3:2), 160 photos in VOC's own layout (`Annotations/` +
  `JPEGImages/`, 1-based corners, `<truncated>` set), many photos with both.

Objects are real flowers (../shared/datasets/flowers12/train/<class>/, 224x224 close-ups) cut out of
their photos with GrabCut (a photo it cannot cut, a bunch of flowers or one larger than the frame, is
not used: its box would not be one flower's) and pasted at 15-60% of the frame's shorter side,
flipped and relit, 0-4 to a photo (about one photo in ten has none: its XML lists no object, as
labelImg saves it), partly outside the frame at times; each box is the tight box of what stays
visible of its paste, after later pastes covered part of it. Frames have the sizes cameras and phones save (640x480, 480x640,
800x600, 1024x768, 1280x720, 500x375), so nothing is the detector's 320x320.

Backgrounds are real photos with none of the classes in them, half of each kind:
- scenes: the largest raccoon-free rectangle of a raccoon photo (yards, walls, rooms, water; only photos
  where it is at least a fifth of the photo), so nothing is painted over (covering a raccoon by
  inpainting leaves smears half the frame wide);
- flower beds: a photo of a flower class that is not in either set (bluebell, iris, colts-foot, ...),
  enlarged and blurred like a shallow-focus garden shot: flowers that must *not* be boxed, the
  negatives a garden camera sees (colts-foot looks much like a dandelion).

`part="fresh"` draws from a disjoint fifth of every source (flower photos and backgrounds), so a
detector trained on the main part can be scored on flowers and places it never saw: the held-out
split of the main part shares source flowers with its training split (pasted elsewhere, at another
size), as a user's photos of the same garden would.

Everything is seeded: the same arguments write the same bytes. Nothing here is committed data: the
photos stay in ../shared, and callers skip when they are absent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from xml.etree import ElementTree as ET

import cv2
import numpy as np

FLOWERS = Path("datasets") / "flowers12" / "train"
RACCOON = Path("datasets") / "raccoon"
FRAME_SIZES = ((640, 480), (480, 640), (800, 600), (1024, 768), (1280, 720), (500, 375))
SCALE = (0.15, 0.60)  # an object's longer side, as a share of the frame's shorter side
FRESH_EVERY = 5  # every 5th source photo belongs to the fresh part
MIN_VISIBLE = 0.6  # a paste may cover at most 40% of an earlier one
CUTOUT_WORK_SIDE = 112  # GrabCut runs at half the photos' size: 4x faster, the mask is feathered anyway


@dataclass(frozen=True)
class FlowerSet:
    name: str
    classes: tuple[str, ...]
    class_weights: tuple[float, ...]
    images: int
    objects_per_image: tuple[float, ...]  # probability of 0, 1, 2, ... objects
    layout: str  # "labelimg" or "voc"
    seed: int


SUNFLOWERS = FlowerSet("sunflowers", ("sunflower",), (1.0,), 120, (0.1, 0.5, 0.25, 0.15), "labelimg", seed=23)
MEADOW = FlowerSet("meadow", ("daisy", "dandelion"), (0.6, 0.4), 160, (0.1, 0.3, 0.3, 0.2, 0.1), "voc", seed=24)
FRESH_IMAGES = 40
TARGET_CLASSES = ("sunflower", "daisy", "dandelion")


@dataclass(frozen=True)
class Cutout:
    """A flower cut out of its photo: pixels and alpha (0..1) cropped to the mask's box."""

    bgr: np.ndarray
    alpha: np.ndarray


def missing_sources(shared: Path) -> str | None:
    """Why the sets cannot be made here (None when they can)."""
    needed = [shared / FLOWERS / c for c in TARGET_CLASSES] + [shared / RACCOON / "annotations"]
    missing = [str(p) for p in needed if not p.is_dir()]
    return f"real photos not present: {', '.join(missing)} (../shared beside the checkout)" if missing else None


def _of_part(paths: list, part: str) -> list:
    """The main part's four fifths of `paths`, or the fresh part's fifth."""
    fresh = part == "fresh"
    return [p for i, p in enumerate(paths) if (i % FRESH_EVERY == FRESH_EVERY - 1) == fresh]


@lru_cache(maxsize=None)
def cutout(path: Path) -> Cutout | None:
    """The flower GrabCut finds inside a rectangle 6% within the photo's edge (its largest piece); None when it
    keeps almost nothing or almost everything: a flower larger than the photo, a bunch of them, or one it could
    not tell from its leaves. Such photos are not pasted: a box around them would not be one flower's."""
    bgr = cv2.imread(str(path))
    height, width = bgr.shape[:2]
    small = cv2.resize(bgr, (CUTOUT_WORK_SIDE, CUTOUT_WORK_SIDE), interpolation=cv2.INTER_AREA)
    mask = np.zeros(small.shape[:2], np.uint8)
    margin = round(0.06 * CUTOUT_WORK_SIDE)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's global generator
    cv2.grabCut(small, mask, (margin, margin, CUTOUT_WORK_SIDE - 2 * margin, CUTOUT_WORK_SIDE - 2 * margin),
                np.zeros((1, 65)), np.zeros((1, 65)), 4, cv2.GC_INIT_WITH_RECT)
    kept = np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(kept)
    if count > 1:
        kept = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    if not 0.08 <= kept.mean() <= 0.95:
        return None
    alpha = cv2.GaussianBlur(cv2.resize(kept.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR),
                             (5, 5), 0)
    ys, xs = np.nonzero(alpha > 0.5)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return Cutout(bgr[y0:y1, x0:x1], alpha[y0:y1, x0:x1])


def _pick(pool: tuple[Path, ...], rng: np.random.Generator) -> Cutout:
    """A random flower of the pool that GrabCut could cut out."""
    while (found := cutout(pool[rng.integers(len(pool))])) is None:
        pass
    return found


def _free_rectangle(annotation: Path) -> tuple[Path, tuple[int, int, int, int]] | None:
    """The raccoon photo and its largest rectangle (x0, y0, x1, y1) that no raccoon box touches, when it is
    at least a fifth of the photo, 80 px a side and not a thin strip."""
    root = ET.parse(annotation).getroot()
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    boxes = [[float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")]
    xs = sorted({0, width, *(b[0] for b in boxes), *(b[2] for b in boxes)})
    ys = sorted({0, height, *(b[1] for b in boxes), *(b[3] for b in boxes)})
    best, area = None, 0.0
    for (x0, x1), (y0, y1) in itertools.product(itertools.combinations(xs, 2), itertools.combinations(ys, 2)):
        if (x1 - x0) * (y1 - y0) > area and not any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes):
            best, area = (int(np.ceil(x0)), int(np.ceil(y0)), int(x1), int(y1)), (x1 - x0) * (y1 - y0)
    if best is None or area < 0.2 * width * height:
        return None
    w, h = best[2] - best[0], best[3] - best[1]
    if min(w, h) < 80 or not 0.4 < w / h < 2.5:
        return None
    return annotation.parent.parent / "images" / root.findtext("filename"), best


@lru_cache(maxsize=None)
def _sources(shared: Path, part: str) -> tuple[tuple, tuple, dict[str, tuple[Path, ...]]]:
    """(raccoon scenes, flower-bed photos, flower photos per class) of one part."""
    scenes = [s for s in map(_free_rectangle, sorted((shared / RACCOON / "annotations").glob("*.xml"))) if s]
    beds = sorted(p for d in sorted((shared / FLOWERS).iterdir()) if d.name not in TARGET_CLASSES
                  for p in d.glob("*.jpg"))
    flowers = {c: tuple(_of_part(sorted((shared / FLOWERS / c).glob("*.jpg")), part)) for c in TARGET_CLASSES}
    return tuple(_of_part(scenes, part)), tuple(_of_part(beds, part)), flowers


def _crop_to(bgr: np.ndarray, window: tuple[int, int, int, int], size: tuple[int, int], rng: np.random.Generator,
             least: float) -> np.ndarray:
    """A random part of `window` with the frame's aspect, at least `least` of the window's side, at the frame's size."""
    x0, y0, x1, y1 = window
    w, h = x1 - x0, y1 - y0
    aspect = size[0] / size[1]
    cw, ch = (w, w / aspect) if w / h < aspect else (h * aspect, h)
    k = rng.uniform(least, 1.0)
    cw, ch = cw * k, ch * k
    cx, cy = x0 + rng.uniform(0, w - cw), y0 + rng.uniform(0, h - ch)
    part = bgr[int(cy): int(cy + ch), int(cx): int(cx + cw)]
    return cv2.resize(part, size, interpolation=cv2.INTER_AREA if cw > size[0] else cv2.INTER_CUBIC)


def _background(scenes: tuple, beds: tuple, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.5:
        path, window = scenes[rng.integers(len(scenes))]
        return _crop_to(cv2.imread(str(path)), window, size, rng, least=0.8)
    photo = cv2.imread(str(beds[rng.integers(len(beds))]))
    frame = _crop_to(photo, (0, 0, photo.shape[1], photo.shape[0]), size, rng, least=0.6)
    return cv2.GaussianBlur(frame, (0, 0), rng.uniform(1.5, 4.0) * max(size) / 640)


def _paste(frame: np.ndarray, owner: np.ndarray, index: int, flower: Cutout, rng: np.random.Generator) -> bool:
    """Paste one flower (scaled, flipped, relit) where it leaves every earlier one mostly visible;
    `owner` marks which paste each pixel shows. False when no such place was found."""
    height, width = frame.shape[:2]
    side = rng.uniform(*SCALE) * min(width, height)
    scale = side / max(flower.alpha.shape)
    w, h = max(2, round(flower.alpha.shape[1] * scale)), max(2, round(flower.alpha.shape[0] * scale))
    bgr = cv2.resize(flower.bgr, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    alpha = cv2.resize(flower.alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:
        bgr, alpha = bgr[:, ::-1], alpha[:, ::-1]
    bgr = np.clip(bgr.astype(np.float32) * rng.uniform(0.8, 1.15), 0, 255)
    for _ in range(10):
        x, y = round(rng.uniform(-0.15 * w, width - 0.85 * w)), round(rng.uniform(-0.15 * h, height - 0.85 * h))
        fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        a = alpha[fy0 - y: fy1 - y, fx0 - x: fx1 - x]
        region = owner[fy0:fy1, fx0:fx1]
        covered = np.bincount(region[(a > 0.5) & (region > 0)], minlength=index)
        shown = np.bincount(owner[owner > 0], minlength=index)
        if np.any(shown[1:] - covered[1:] < MIN_VISIBLE * shown[1:]):
            continue
        a3 = a[..., None]
        frame[fy0:fy1, fx0:fx1] = (frame[fy0:fy1, fx0:fx1] * (1 - a3) + bgr[fy0 - y: fy1 - y, fx0 - x: fx1 - x] * a3
                                   ).astype(np.uint8)
        region[a > 0.5] = index
        return True
    return False


def compose(spec: FlowerSet, shared: Path, part: str, rng: np.random.Generator
            ) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int], bool]]]:
    """One photo: the frame (BGR) and its objects (class, visible box x0, y0, x1, y1 in pixels, truncated)."""
    scenes, beds, flowers = _sources(shared, part)
    size = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    frame = _background(scenes, beds, size, rng)
    owner = np.zeros(frame.shape[:2], np.int32)
    wanted = rng.choice(len(spec.objects_per_image), p=spec.objects_per_image)
    classes = []
    for _ in range(wanted):
        name = spec.classes[rng.choice(len(spec.classes), p=spec.class_weights)]
        if _paste(frame, owner, len(classes) + 1, _pick(flowers[name], rng), rng):
            classes.append(name)
    objects = []
    for k, name in enumerate(classes, start=1):
        ys, xs = np.nonzero(owner == k)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        truncated = box[0] == 0 or box[1] == 0 or box[2] == size[0] or box[3] == size[1]
        objects.append((name, box, truncated))
    return frame, objects


def annotation(spec: FlowerSet, image_name: str, size: tuple[int, int], objects: list) -> bytes:
    """The XML as each layout's tool writes it: labelImg (0-based corners, the labeller's path) or VOC (1-based)."""
    root = ET.Element("annotation")
    folder = spec.name if spec.layout == "labelimg" else "VOC2012"
    ET.SubElement(root, "folder").text = folder
    ET.SubElement(root, "filename").text = image_name
    if spec.layout == "labelimg":
        ET.SubElement(root, "path").text = f"/home/sam/Pictures/{spec.name}/{image_name}"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "Unknown" if spec.layout == "labelimg" else "meadow"
    size_element = ET.SubElement(root, "size")
    for key, value in (("width", size[0]), ("height", size[1]), ("depth", 3)):
        ET.SubElement(size_element, key).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    first = 0 if spec.layout == "labelimg" else 1
    for name, (x0, y0, x1, y1), truncated in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = str(int(truncated))
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (x0 + first, y0 + first, x1, y1)):
            ET.SubElement(box, key).text = str(value)
    ET.indent(root, "\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def write_flower_set(spec: FlowerSet, root: Path, shared: Path, part: str = "main", images: int | None = None
                     ) -> dict[str, int]:
    """Write the set into `root` (its layout); returns counts: images, empty images, boxes per class,
    and images holding more than one class."""
    rng = np.random.default_rng([spec.seed, int(part == "fresh")])
    root = Path(root)
    image_dir, xml_dir = (root, root) if spec.layout == "labelimg" else (root / "JPEGImages", root / "Annotations")
    image_dir.mkdir(parents=True, exist_ok=True)
    xml_dir.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "empty": 0, "mixed": 0, **{c: 0 for c in spec.classes}}
    for n in range(images if images is not None else (spec.images if part == "main" else FRESH_IMAGES)):
        frame, objects = compose(spec, shared, part, rng)
        stem = f"IMG_{n + 1:04d}" if spec.layout == "labelimg" else f"2024_{n + 1:06d}"
        cv2.imwrite(str(image_dir / f"{stem}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(82, 96))])
        (xml_dir / f"{stem}.xml").write_bytes(annotation(spec, f"{stem}.jpg", frame.shape[1::-1], objects))
        counts["images"] += 1
        counts["empty"] += not objects
        counts["mixed"] += len({name for name, _, _ in objects}) > 1
        for name, _, _ in objects:
            counts[name] += 1
    return counts
