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

The device may be broken or hostile, so: no file copied may grow past the
size it listed (nor MAX_BYTES), what fails its hash is deleted at once (so
.incoming holds at most one batch), a label becomes a folder only when it is a
safe name that is not an existing file, a file in DIR is never replaced (a
different pair of the same name is kept as STEM-<sha256 prefix>, and the
summary says so), and one bad pair never stops the others.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgepipe.core.errors import UserError
from edgepipe.core.files import atomic_write_text
from edgepipe.core.progress import say
from edgepipe.core.safetext import safe_line
from edgepipe.device.model.bundle import sha256_file
from edgepipe.device.model.unknown import UNKNOWN_LABEL
from edgepipe.device.sinks.collect import sidecar_annotation

from .agent import protocol
from .options import CollectRequest
from .remote import Oversize, Remote

INCOMING = ".incoming"
STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\Z")
# A folder name: no separators or control characters, not hidden; \Z, not $ (which accepts a final newline).
LABEL = re.compile(r"[^/\\\x00-\x1f\x7f.][^/\\\x00-\x1f\x7f]{0,99}\Z")
NAME_MAX = 255  # bytes of one file name on Linux file systems
SHA256 = re.compile(r"[0-9a-f]{64}\Z")
BATCH = 100  # pairs per scp and per delete call (bounds the command line)
MAX_BYTES = {".jpg": 64 << 20, ".json": 1 << 20}  # a sane maximum per file, whatever the device lists
SPARE_BYTES = 64 << 20  # free space left on the workstation after a batch
EXTS = (".jpg", ".json")  # the sidecar last, as on the device


@dataclass(frozen=True)
class Pair:
    stem: str
    jpg: str  # sha256
    json: str
    jpg_bytes: int
    json_bytes: int

    @property
    def spec(self) -> str:
        return protocol.pair_spec(self.stem, self.jpg, self.json)

    def sha(self, ext: str) -> str:
        return self.jpg if ext == ".jpg" else self.json

    def size(self, ext: str) -> int:
        return self.jpg_bytes if ext == ".jpg" else self.json_bytes

    @property
    def kept_name(self) -> str:
        """The name this pair takes when DIR/<label>/ already holds a different file of its stem."""
        return f"{self.stem}-{self.jpg[:12]}"


def parse_pair(entry: object) -> Pair | None:
    """One entry of the device's listing, validated (it is data from another machine); None if malformed."""
    if protocol.wrong_field(entry, protocol.COLLECTED_PAIR) is not None:
        return None
    pair = Pair(*(entry[k] for k in ("stem", "jpg", "json", "jpg_bytes", "json_bytes")))
    if not (STEM.match(pair.stem) and SHA256.match(pair.jpg) and SHA256.match(pair.json)
            and all(0 <= pair.size(ext) <= MAX_BYTES[ext] for ext in EXTS)):
        return None
    return pair


def parse_listing(entries: list) -> tuple[list[Pair], list[object]]:
    """(the well-formed pairs, each stem once; the entries refused)."""
    pairs: dict[str, Pair] = {}
    refused: list[object] = []
    for entry in entries:
        pair = parse_pair(entry)
        if pair is None or pair.stem in pairs:
            refused.append(entry)
        else:
            pairs[pair.stem] = pair
    return list(pairs.values()), refused


def label_folder(sidecar_text: str, to: Path) -> str:
    """The folder a pair goes to: its predicted label when that is a safe folder name that is not already
    a file in DIR, else unknown. UserError when the sidecar is not a JSON object."""
    try:
        sidecar = json.loads(sidecar_text)
    except (ValueError, RecursionError):
        sidecar = None
    if not isinstance(sidecar, dict):
        raise UserError("its sidecar is not a JSON object")
    label = sidecar.get("label")
    if not (isinstance(label, str) and LABEL.match(label) and label.isprintable()  # also no bidi overrides
            and len(label.encode("utf-8", "replace")) <= NAME_MAX and label != INCOMING):
        return UNKNOWN_LABEL
    target = to / label
    return label if target.is_dir() and not target.is_symlink() or not os.path.lexists(target) else UNKNOWN_LABEL


def _write_prelabels(folder: Path, name: str) -> None:
    """A detector's frame: its Pascal VOC pre-labels beside it, made from its (untrusted) sidecar, so that
    `train --task detect` reads the folder; never written over an existing file."""
    sidecar, xml = folder / f"{name}.json", folder / f"{name}.xml"
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return
    if not isinstance(data, dict) or data.get("task") != "detect" or os.path.lexists(xml):
        return
    try:
        annotation = sidecar_annotation(name, data)
    except (KeyError, TypeError, ValueError):
        say(f"{safe_line(sidecar.name)} from the device describes its objects wrongly (size, detections); "
            "its frame was kept without pre-labels: label it by hand")
        return
    atomic_write_text(xml, annotation)


def _intact(folder: Path, pair: Pair, name: str | None = None) -> bool:
    name = name or pair.stem
    for ext in EXTS:
        path = folder / f"{name}{ext}"
        if path.is_symlink() or not path.is_file() or sha256_file(path) != pair.sha(ext):
            return False
    return True


def _already_here(to: Path, pair: Pair) -> bool:
    """An earlier run sorted this pair (under its own name or its kept name) into some DIR/<label>/."""
    return any(_intact(sidecar.parent, pair, sidecar.name[:-len(".json")])
               for name in (pair.stem, pair.kept_name) for sidecar in to.glob(f"*/{name}.json")
               if not sidecar.parent.name.startswith("."))


def _remove(folder: Path, pair: Pair) -> None:
    for ext in EXTS:
        (folder / f"{pair.stem}{ext}").unlink(missing_ok=True)


def _clean_incoming(incoming: Path, todo: list[Pair]) -> None:
    """Keep in .incoming only the intact pairs still to sort (a cut copy resumes); anything else goes."""
    keep = {f"{p.stem}{ext}" for p in todo if _intact(incoming, p) for ext in EXTS}
    for path in incoming.iterdir():
        if path.name not in keep:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def _download(remote: Remote, device_dir: str, pairs: list[Pair], incoming: Path) -> None:
    """Copy `pairs` into .incoming, no file past its listed size; a device that sends more is stopped,
    then each pair is fetched alone so that one oversized file costs only its own pair."""
    paths = [f"{device_dir}/{p.stem}{ext}" for p in pairs for ext in EXTS]
    try:
        remote.download(paths, incoming, max(p.size(ext) for p in pairs for ext in EXTS))
    except Oversize:
        if len(pairs) == 1:
            return
        for pair in pairs:
            if not _intact(incoming, pair):
                _remove(incoming, pair)
                with contextlib.suppress(Oversize):
                    _download(remote, device_dir, [pair], incoming)


def _sort(incoming: Path, to: Path, pair: Pair) -> tuple[str, bool]:
    """Move an intact pair from .incoming to DIR/<label>/, never replacing a file there: when its
    name is taken, it takes its kept name. (label, whether it was renamed)."""
    label = label_folder((incoming / f"{pair.stem}.json").read_text(encoding="utf-8", errors="replace"), to)
    folder = to / label
    folder.mkdir(exist_ok=True)
    taken = any(os.path.lexists(folder / f"{pair.stem}{ext}") for ext in EXTS)
    name = pair.kept_name if taken else pair.stem
    moved: list[Path] = []
    try:
        for ext in EXTS:
            os.link(incoming / f"{pair.stem}{ext}", folder / f"{name}{ext}")  # fails if it exists: no overwrite
            moved.append(folder / f"{name}{ext}")
    except FileExistsError:
        for path in moved:
            path.unlink()
        raise UserError(f"{folder}/{name}.* already exist with other bytes") from None
    _remove(incoming, pair)
    _write_prelabels(folder, name)
    return label, taken


def collect(remote: Remote, request: CollectRequest) -> dict[str, Any]:
    """Copy, verify and sort the device's collected pairs; with `move`, delete the intact ones there."""
    to = request.to
    if to.exists() and not to.is_dir():
        raise UserError(f"--to {to} is a file; name a folder for the collected frames")
    incoming = to / INCOMING
    try:
        incoming.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {incoming}: {exc.strerror}") from None
    dir_args = ["--dir", request.device_dir] if request.device_dir else []
    listing = remote.agent(protocol.COLLECT_LIST, *dir_args)
    device_dir = listing["dir"]
    pairs, refused = parse_listing(listing["pairs"])
    if refused:
        say(f"{remote.target}: {len(refused)} malformed entries in the device's listing were skipped, "
            f"e.g. {safe_line(repr(refused[0]))[:80]}")
    intact = [p for p in pairs if _already_here(to, p)]
    here = {p.stem for p in intact}
    todo = [p for p in pairs if p.stem not in here]
    _clean_incoming(incoming, todo)
    say(f"{remote.target}: {len(pairs)} collected pairs in {device_dir}, {len(intact)} already here, "
        f"{len(todo)} to copy")
    failed: dict[str, str] = {}
    labels: dict[str, int] = {}
    renamed = 0
    for start in range(0, len(todo), BATCH):
        chunk = todo[start:start + BATCH]
        batch = [p for p in chunk if not _intact(incoming, p)]  # resume a cut copy
        if batch:
            need = sum(p.size(ext) for p in batch for ext in EXTS)
            if shutil.disk_usage(to).free < need + SPARE_BYTES:
                raise UserError(f"{to} has too little free space for the next {len(batch)} pairs "
                                f"({need / 1e6:.1f} MB); free some and run again")
            _download(remote, device_dir, batch, incoming)
        for pair in chunk:
            if not _intact(incoming, pair):
                _remove(incoming, pair)  # what failed its hash goes; the device keeps its copy
                failed[pair.stem] = "did not arrive intact (wrong size or hash)"
                continue
            try:
                label, taken = _sort(incoming, to, pair)
            except (OSError, UserError) as exc:
                _remove(incoming, pair)
                failed[pair.stem] = getattr(exc, "strerror", None) or str(exc)
                continue
            labels[label] = labels.get(label, 0) + 1
            renamed += taken
            intact.append(pair)
        say(f"{remote.target}: copied {min(start + BATCH, len(todo))}/{len(todo)}")
    for stem, why in list(failed.items())[:3]:
        say(f"{remote.target}: {stem} was not kept: {safe_line(why)}")
    deleted: list[str] = []
    if request.move:
        for start in range(0, len(intact), BATCH):
            result = remote.agent(protocol.COLLECT_DELETE, *dir_args, *(p.spec for p in intact[start:start + BATCH]))
            deleted += [s for s in result["deleted"] if isinstance(s, str)]
    if not any(incoming.iterdir()):
        shutil.rmtree(incoming)
    return {"host": str(remote.target), "device_dir": device_dir, "to": str(to), "listed": len(pairs),
            "copied": sum(labels.values()), "already_here": len(pairs) - len(todo), "failed": sorted(failed),
            "malformed": len(refused), "renamed": renamed, "labels": labels,
            "deleted_on_device": len(deleted), "moved": request.move}


def describe(result: dict[str, Any]) -> str:
    by_label = ", ".join(f"{label} {n}" for label, n in sorted(result["labels"].items())) or "none new"
    line = (f"{result['host']}: {result['copied']} pairs copied to {result['to']} ({by_label}), "
            f"{result['already_here']} already there")
    if result["moved"]:
        line += f"; {result['deleted_on_device']} deleted on the device"
    if result["renamed"]:
        line += (f"; {result['renamed']} took the name STEM-<sha256 prefix> because DIR/<label>/ already held "
                 "a different file of that name (nothing was replaced)")
    if result["malformed"]:
        line += f"; {result['malformed']} malformed listing entries skipped"
    if result["failed"]:
        line += f"; {len(result['failed'])} did not arrive intact (kept on the device; run again)"
    return line
