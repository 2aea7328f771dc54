"""`edgepipe deploy collect HOST --to DIR`: bring the frames a device kept back to sort.

Each pair (JPEG + sidecar) the device lists with its sha256 is copied into
DIR/.incoming/, checked against those hashes, its sidecar validated, and
moved to DIR/<predicted label>/ (DIR/unknown/ for unknown frames), ready for
a person to sort into class folders and train on. A detector's frames go to
DIR/detections/ with their objects as Pascal VOC pre-labels (one .xml each,
made from the sidecar as the device made its own), so `train --task detect
photos/ DIR/` reads them once a person has corrected the boxes. A pair already in DIR with
the same hashes is not copied again, so an interrupted run resumes where it
stopped. With --move, the device deletes exactly the pairs that arrived
intact, and only if its files still have the hashes that were verified.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text
from edgepipe.core.progress import say
from edgepipe.device.model.bundle import sha256_file
from edgepipe.device.model.unknown import UNKNOWN_LABEL
from edgepipe.device.sinks.collect import sidecar_annotation

from .agent import protocol
from .options import CollectRequest
from .remote import Remote

INCOMING = ".incoming"
STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
LABEL = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,99}$")  # a folder name: no separators, not hidden
SHA256 = re.compile(r"^[0-9a-f]{64}$")
BATCH = 100  # pairs per scp and per delete call (bounds the command line)


@dataclass(frozen=True)
class Pair:
    stem: str
    jpg: str  # sha256
    json: str

    @property
    def spec(self) -> str:
        return protocol.pair_spec(self.stem, self.jpg, self.json)


def _pairs(listing: dict[str, Any]) -> list[Pair]:
    """The device's listing, validated: it is data from another machine."""
    pairs = []
    for entry in listing["pairs"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("stem"), str) and STEM.match(entry["stem"])
                and all(isinstance(entry.get(k), str) and SHA256.match(entry[k]) for k in ("jpg", "json"))):
            raise UserError(f"the device listed a malformed collected pair {str(entry)[:80]!r}; not copying")
        pairs.append(Pair(entry["stem"], entry["jpg"], entry["json"]))
    return pairs


def _label_of(sidecar: Path) -> str:
    """The folder a pair goes to: its predicted label when that is a safe folder name, else unknown."""
    try:
        label = json.loads(sidecar.read_text(encoding="utf-8")).get("label")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        raise UserError(f"{sidecar.name} from the device is not a JSON object; it was not kept") from None
    return label if isinstance(label, str) and LABEL.match(label) else UNKNOWN_LABEL


def _write_prelabels(folder: Path, stem: str) -> None:
    """A detector's frame: its VOC pre-labels beside it, from its (untrusted) sidecar."""
    sidecar = folder / f"{stem}.json"
    data = json.loads(sidecar.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("task") != "detect":
        return
    try:
        annotation = sidecar_annotation(stem, data)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{sidecar.name} from the device describes its objects wrongly (size, detections); "
                        "its frame was kept without pre-labels: label it by hand") from None
    atomic_write_text(folder / f"{stem}.xml", annotation)


def _arrived(to: Path) -> dict[str, Path]:
    """Pairs already sorted into DIR/<label>/ by an earlier run: stem -> its folder."""
    return {p.stem: p.parent for p in to.glob("*/*.json") if not p.parent.name.startswith(".")}


def _intact(folder: Path, pair: Pair) -> bool:
    image, sidecar = folder / f"{pair.stem}.jpg", folder / f"{pair.stem}.json"
    return image.is_file() and sidecar.is_file() and sha256_file(image) == pair.jpg and sha256_file(sidecar) == pair.json


def collect(remote: Remote, request: CollectRequest) -> dict[str, Any]:
    """Copy, verify and sort the device's collected pairs; with `move`, delete the intact ones there."""
    to = request.to
    incoming = to / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    dir_args = ["--dir", request.device_dir] if request.device_dir else []
    listing = remote.agent(protocol.COLLECT_LIST, *dir_args)
    device_dir = listing["dir"]
    pairs = _pairs(listing)
    arrived = _arrived(to)
    intact: list[Pair] = [p for p in pairs if p.stem in arrived and _intact(arrived[p.stem], p)]
    here = {p.stem for p in intact}
    todo = [p for p in pairs if p.stem not in here]
    say(f"{remote.target}: {len(pairs)} collected pairs in {device_dir}, {len(intact)} already here, "
        f"{len(todo)} to copy")
    failed: list[str] = []
    labels: dict[str, int] = {}
    for start in range(0, len(todo), BATCH):
        batch = [p for p in todo[start:start + BATCH] if not _intact(incoming, p)]  # resume a cut copy
        if batch:
            remote.download([f"{device_dir}/{p.stem}{ext}" for p in batch for ext in (".jpg", ".json")], incoming)
        for pair in todo[start:start + BATCH]:
            if not _intact(incoming, pair):
                failed.append(pair.stem)
                continue
            label = _label_of(incoming / f"{pair.stem}.json")
            folder = to / label
            folder.mkdir(exist_ok=True)
            for ext in (".jpg", ".json"):  # the sidecar last, as on the device
                (incoming / f"{pair.stem}{ext}").replace(folder / f"{pair.stem}{ext}")
            _write_prelabels(folder, pair.stem)
            labels[label] = labels.get(label, 0) + 1
            intact.append(pair)
        say(f"{remote.target}: copied {min(start + BATCH, len(todo))}/{len(todo)}")
    deleted: list[str] = []
    if request.move:
        for start in range(0, len(intact), BATCH):
            result = remote.agent(protocol.COLLECT_DELETE, *dir_args, *(p.spec for p in intact[start:start + BATCH]))
            deleted += [s for s in result["deleted"] if isinstance(s, str)]
    if not any(incoming.iterdir()):
        shutil.rmtree(incoming)
    return {"host": str(remote.target), "device_dir": device_dir, "to": str(to), "listed": len(pairs),
            "copied": sum(labels.values()), "already_here": len(pairs) - len(todo), "failed": failed,
            "labels": labels, "deleted_on_device": len(deleted), "moved": request.move}


def describe(result: dict[str, Any]) -> str:
    by_label = ", ".join(f"{label} {n}" for label, n in sorted(result["labels"].items())) or "none new"
    line = (f"{result['host']}: {result['copied']} pairs copied to {result['to']} ({by_label}), "
            f"{result['already_here']} already there")
    if result["moved"]:
        line += f"; {result['deleted_on_device']} deleted on the device"
    if result["failed"]:
        line += f"; {len(result['failed'])} did not arrive intact (kept on the device; run again)"
    return line
