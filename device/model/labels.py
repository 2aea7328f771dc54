"""Labels files in the two forms users meet: one label per line (ours, TF
Hub's) and `index label` per line (Coral's `*_labels.txt`)."""

from __future__ import annotations

import re
from pathlib import Path

from edgepipe.core.errors import UserError

_INDEXED = re.compile(r"^\s*(\d+)[\s:,]+(.*\S)\s*$")


def parse_labels(text: str) -> list[str]:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    matches = [_INDEXED.match(line) for line in lines]
    if all(matches):
        by_index = {int(m.group(1)): m.group(2) for m in matches if m}
        size = max(by_index) + 1
        return [by_index.get(i, f"class_{i}") for i in range(size)]
    return [line.strip() for line in lines]


def read_labels(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"labels file {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    return labels_from_bytes(data, path)


def labels_from_bytes(data: bytes, path: str | Path) -> list[str]:
    """Labels from a file's bytes (a bundle hands over the bytes it has just hashed)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read labels file {path}: {exc}") from None
    labels = parse_labels(text)
    if not labels:
        raise UserError(f"labels file {path} has no labels")
    return labels


def format_labels(labels: list[str]) -> str:
    return "".join(f"{label}\n" for label in labels)
