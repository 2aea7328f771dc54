"""The import graph follows the data flow (design.md), checked by parsing every
module: photos -> train -> convert -> bundle -> deploy -> device, with the
core beneath them all and the CLI entry point above them all."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the package it installs as (pyproject's package-dir).
PACKAGES = {
    "edgepipe/core": "edgepipe.core",
    "device": "edgepipe.device",
    "train": "edgepipe.train",
    "convert": "edgepipe.convert",
    "deploy": "edgepipe.deploy",
}
# Stage -> the stages it may import (itself and the core always).
ALLOWED = {
    "core": set(),
    "device": set(),
    "train": {"device"},
    "convert": {"train", "device"},
    "deploy": {"device"},
}
HEAVY = {"tensorflow", "tf_keras", "keras", "tensorflow_model_optimization"}
STAGE_NAME = re.compile(r"\bedgepipe\.(core|device|train|convert|deploy)\b")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    for folder, package in PACKAGES.items():
        if rel.is_relative_to(folder):
            parts = rel.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((package, *parts))
    raise ValueError(path)


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "edgepipe" and parts[1] in ALLOWED else None


def stage_modules() -> dict[str, Path]:
    modules = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


def imports_of(module: str, path: Path) -> list[str]:
    """Every module `module` imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                found += [target] if node.module else [f"{base}.{a.name}" for a in node.names]
            else:
                found.append(node.module or "")
    return found


MODULES = stage_modules()


def test_every_stage_module_is_found():
    stages = {_stage(m) for m in MODULES}
    assert stages == set(ALLOWED)
    assert len(MODULES) > 50


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_data_flow(module):
    stage = _stage(module)
    allowed = ALLOWED[stage] | {stage, "core"}
    wrong = []
    for name in imports_of(module, MODULES[module]):
        root = name.split(".")[0]
        if root in HEAVY and stage in {"core", "device"}:
            wrong.append(f"{name} (TensorFlow never reaches the device or the core)")
        if root == "edgepipe" and name != "edgepipe":  # the root package holds only __version__
            target = _stage(name)
            if target is None or target not in allowed:
                wrong.append(f"{name} ({stage} may import only {', '.join(sorted(allowed))})")
    assert wrong == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_stage_is_reached_by_a_module_name_string(module):
    """importlib.import_module("edgepipe.x") would hide an arrow from the test above."""
    stage = _stage(module)
    tree = ast.parse(MODULES[module].read_text())
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    docstrings = {ast.get_docstring(n, clean=False) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))}
    named = {m.group(1) for s in strings if s not in docstrings for m in STAGE_NAME.finditer(s)}
    assert named - ALLOWED[stage] - {stage, "core"} == set()


AGENT = "edgepipe.deploy.agent"


def test_the_shipped_device_agent_imports_nothing_of_ours():
    """The agent package runs on devices where edgepipe may not be installed yet, with the OS's python3:
    each of its modules imports only the standard library and the agent package itself (relatively,
    so it also runs as the shipped archive's `edgepipe_agent`), in syntax Python 3.7 still reads."""
    agent = {m: p for m, p in MODULES.items() if m == AGENT or m.startswith(AGENT + ".")}
    assert {"edgepipe.deploy.agent.protocol", "edgepipe.deploy.agent.cli"} <= set(agent)
    for module, path in agent.items():
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 7))
        outside = [n for n in imports_of(module, path)
                   if n.split(".")[0] not in sys.stdlib_module_names and not n.startswith(AGENT + ".")]
        assert outside == [], module
        absolute = [n.module for n in ast.walk(ast.parse(path.read_text()))
                    if isinstance(n, ast.ImportFrom) and n.level == 0 and (n.module or "").startswith("edgepipe")]
        assert absolute == [], f"{module} must import the agent package relatively"


def test_the_module_graph_has_no_cycles():
    graph = {m: {n for n in imports_of(m, p) if n in MODULES and n != m} for m, p in MODULES.items()}
    # A package's __init__ importing its own modules is not a cycle of the data flow.
    done: set[str] = set()
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(" -> ".join(path[path.index(node):] + [node]))
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, path + [node])
        done.add(node)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
