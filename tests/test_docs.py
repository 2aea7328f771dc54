"""The manual names real files and modules: when code moves, the page that names it fails here,
not in a reader's hands. (Links and anchors between pages are checked by `mkdocs build --strict`
in .ci/run.)"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]

# A repository file named in prose: a stage folder, then a path ending in a file name.
FILE_PATH = re.compile(r"(?<![\w/.~$-])((?:\.ci|benchmarks|convert|deploy|device|edgepipe|tests|train)/[\w./-]*"
                       r"(?:\.(?:py|sh|yml|json|md|h5|service)|/Dockerfile|arm64-check|readme-command|run))\b")
DOTTED_NAME = re.compile(r"\bedgepipe\.(?:core|device|train|convert|deploy)(?:\.\w+)+")


def _mentions(pattern: re.Pattern[str]) -> set[tuple[str, str]]:
    return {(page.relative_to(ROOT).as_posix(), m.group(1) if m.groups() else m.group(0))
            for page in PAGES for m in pattern.finditer(page.read_text(encoding="utf-8"))}


def test_pages_exist_and_the_checks_find_names_in_them():
    assert (ROOT / "mkdocs.yml").is_file() and len(PAGES) > 10
    assert len(_mentions(FILE_PATH)) > 20 and len(_mentions(DOTTED_NAME)) > 5


def test_every_file_a_page_names_exists():
    missing = sorted(f"{page}: {path}" for page, path in _mentions(FILE_PATH) if not (ROOT / path).exists())
    assert missing == []


def _defines(module: str, name: str) -> bool:
    """Whether `module` defines `name` at top level, read from its source (importing would pull in TensorFlow)."""
    spec = importlib.util.find_spec(module)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and any((a.asname or a.name) == name for a in node.names):
            return True
    return False


def _resolves(dotted: str) -> bool:
    """A module (edgepipe.device.model.preprocess) or a module's top-level name (edgepipe.device.model.bundle.load_bundle)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 1, -1):
        module, rest = ".".join(parts[:cut]), parts[cut:]
        try:
            if importlib.util.find_spec(module) is None:
                continue
        except ModuleNotFoundError:
            continue
        return not rest or (len(rest) == 1 and _defines(module, rest[0]))
    return False


def test_every_module_and_function_a_page_names_exists():
    missing = sorted(f"{page}: {name}" for page, name in _mentions(DOTTED_NAME) if not _resolves(name))
    assert missing == []
