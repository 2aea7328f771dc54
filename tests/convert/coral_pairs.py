"""Coral's published model pairs (github.com/google-coral/test_data): a model and the
`*_edgetpu.tflite` the Edge TPU compiler made from it, the oracle for `inspect`'s
prediction (edgepipe.device.inspect.edgetpu_oracle).

tests/data/coral/pairs.json lists every pair in that repository's history (commit,
paths, git blob ids) and, for the pairs whose compiled file was read, the ops the
compiler left on the CPU and the compiler version the file records. No model file is
committed here: they are read from ../shared/coral-test-data/COMMIT/PATH beside the
checkout ($EDGEPIPE_SHARED) when present, else from a cache that this script fills:

    python tests/convert/coral_pairs.py fetch [--cache DIR] [--git-dir CLONE]
    python tests/convert/coral_pairs.py manifest --git-dir CLONE   # rebuild pairs.json

`fetch` downloads from raw.githubusercontent.com (or copies from a local clone of
test_data with --git-dir) and keeps only files whose git blob id matches the manifest.
The cache is $EDGEPIPE_CORAL_CACHE, else ~/.cache/edgepipe/coral-test-data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "coral" / "pairs.json"
SHARED = Path(os.environ.get("EDGEPIPE_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "coral-test-data"
REPOSITORY = "https://github.com/google-coral/test_data"
RAW = "https://raw.githubusercontent.com/google-coral/test_data/{commit}/{path}"
FETCH_HINT = "python tests/convert/coral_pairs.py fetch"
def cache_dir() -> Path:
    return Path(os.environ.get("EDGEPIPE_CORAL_CACHE", Path.home() / ".cache" / "edgepipe" / "coral-test-data"))


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Pair:
    name: str
    commit: str
    uncompiled: dict[str, Any]  # path, blob
    compiled: dict[str, Any]
    cpu_ops: list[tuple[str, tuple[str, ...]]] | None  # None: the compiled file was never read
    compiled_by: list[dict[str, Any]]
    not_a_pair: str | None

    def file(self, which: str) -> Path | None:
        """The verified local copy of the uncompiled or compiled file, else None."""
        entry = self.uncompiled if which == "uncompiled" else self.compiled
        for root in (SHARED, cache_dir()):
            path = root / self.commit[:7] / entry["path"]
            if path.is_file():
                return path
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "commit": self.commit,
            "uncompiled": self.uncompiled,
            "compiled": self.compiled,
            "cpu_ops": [[op, list(outputs)] for op, outputs in self.cpu_ops] if self.cpu_ops is not None else None,
            "compiled_by": self.compiled_by,
            "not_a_pair": self.not_a_pair,
        }


def load_pairs() -> list[Pair]:
    raw = json.loads(MANIFEST.read_text())
    return [
        Pair(
            name=p["name"],
            commit=p["commit"],
            uncompiled=p["uncompiled"],
            compiled=p["compiled"],
            cpu_ops=[(op, tuple(outputs)) for op, outputs in p["cpu_ops"]] if p["cpu_ops"] is not None else None,
            compiled_by=p["compiled_by"],
            not_a_pair=p["not_a_pair"],
        )
        for p in raw["pairs"]
    ]


def _git(git_dir: Path, *args: str, binary: bool = False) -> Any:
    out = subprocess.run(["git", "--git-dir", str(git_dir), *args], check=True, capture_output=True)
    return out.stdout if binary else out.stdout.decode()


def _git_blob(git_dir: Path, blob: str) -> bytes | None:
    if subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "-e", blob], capture_output=True).returncode:
        return None  # listed in the tree, but this clone lacks the object
    return _git(git_dir, "cat-file", "blob", blob, binary=True)


def _download(commit: str, path: str) -> bytes:
    with urllib.request.urlopen(RAW.format(commit=commit, path=path), timeout=120) as response:  # noqa: S310 - fixed https URL
        return response.read()


def fetch(pairs: list[Pair], git_dir: Path | None) -> None:
    """Put every pair's files in the cache (unless in ../shared or cached), verified by blob id."""
    for pair in pairs:
        for which in ("uncompiled", "compiled"):
            entry = pair.uncompiled if which == "uncompiled" else pair.compiled
            if pair.file(which) is not None:
                continue
            try:
                data = _git_blob(git_dir, entry["blob"]) if git_dir else _download(pair.commit, entry["path"])
            except OSError as exc:
                print(f"{pair.name}: {entry['path']}: {exc}", file=sys.stderr)
                continue
            if data is None or git_blob_id(data) != entry["blob"]:
                print(f"{pair.name}: {entry['path']}: {'not in the clone' if data is None else 'blob id differs: not kept'}", file=sys.stderr)
                continue
            target = cache_dir() / pair.commit[:7] / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            partial.write_bytes(data)
            partial.replace(target)
            print(f"{pair.name}: {entry['path']} ({len(data)} bytes)")


def build_manifest(git_dir: Path) -> list[Pair]:
    """Every (model, model_edgetpu) pair in the clone's history, first commit first, one entry
    per distinct pair of blobs; reads the compiled file where the clone has it."""
    from edgepipe.device.inspect.edgetpu_oracle import cpu_op_keys, not_a_pair
    from edgepipe.device.model.modelinfo import read_model_info

    pairs: list[Pair] = []
    seen: set[tuple[str, str]] = set()
    for commit in reversed(_git(git_dir, "rev-list", "--all", "--topo-order").split()):
        tree = {}
        for line in _git(git_dir, "ls-tree", "-r", commit).splitlines():
            meta, path = line.split("\t", 1)
            tree[path] = meta.split()[2]
        for path, blob in sorted(tree.items()):
            source = path.removesuffix("_edgetpu.tflite") + ".tflite"
            if not path.endswith("_edgetpu.tflite") or source not in tree or (tree[source], blob) in seen:
                continue
            seen.add((tree[source], blob))
            pair = Pair(
                name=f"{source.removesuffix('.tflite')}@{commit[:7]}",
                commit=commit,
                uncompiled={"path": source, "blob": tree[source]},
                compiled={"path": path, "blob": blob},
                cpu_ops=None,
                compiled_by=[],
                not_a_pair=None,
            )
            datas = {which: _git_blob(git_dir, entry["blob"]) for which, entry in (("uncompiled", pair.uncompiled), ("compiled", pair.compiled))}
            if datas["compiled"] is not None and datas["uncompiled"] is not None:
                scratch = cache_dir() / commit[:7]
                for which, entry in (("uncompiled", pair.uncompiled), ("compiled", pair.compiled)):
                    target = scratch / entry["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(datas[which])
                uncompiled = read_model_info(scratch / pair.uncompiled["path"])
                compiled = read_model_info(scratch / pair.compiled["path"])
                pair.cpu_ops = cpu_op_keys(compiled)
                pair.compiled_by = [{"compiler_version": p.compiler_version, "min_runtime_version": p.min_runtime_version}
                                    for p in compiled.edgetpu_packages]
                pair.not_a_pair = not_a_pair(uncompiled, compiled)
            pairs.append(pair)
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["fetch", "manifest"])
    parser.add_argument("--git-dir", type=Path, help="a clone of google-coral/test_data (its .git) to read instead of the network")
    parser.add_argument("--cache", type=Path, help="where fetched files go (default: $EDGEPIPE_CORAL_CACHE or ~/.cache/...)")
    args = parser.parse_args(argv)
    if args.cache:
        os.environ["EDGEPIPE_CORAL_CACHE"] = str(args.cache)
    if args.action == "manifest":
        if not args.git_dir:
            parser.error("manifest needs --git-dir")
        pairs = build_manifest(args.git_dir)
        document = {
            "source": REPOSITORY,
            "licence": "Apache-2.0 (the models are google-coral/test_data's; none is committed here)",
            "pairs": [p.to_json() for p in pairs],
        }
        MANIFEST.write_text(json.dumps(document, indent=1) + "\n")
        print(f"{MANIFEST}: {len(pairs)} pairs, {sum(p.cpu_ops is not None for p in pairs)} with the compiled file read")
        return 0
    fetch(load_pairs(), args.git_dir)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
