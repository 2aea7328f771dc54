"""The import graph follows the data flow (design.md), checked by parsing every
module: photos -> train -> convert -> bundle -> deploy -> device, with the
core beneath them all and the CLI entry point (the top-level package) above
them all; inside device/, each room uses only the rooms below it; and no
module, anywhere, is part of an import cycle."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the package it installs as (pyproject's package-dir).
PACKAGES = {
    "edgepipe/core": "edgepipe.core",
    "edgepipe": "edgepipe",
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
    "entry": {"train", "convert", "device", "deploy"},  # edgepipe/: the CLI entry point, the demo
}
# device/'s rooms, lowest first: a room imports only rooms of a lower rank (and itself), so
# runtime code never reaches up into bench, the sinks or the command line.
DEVICE_ROOMS = {"host": 0, "model": 1, "inspect": 2, "run": 2, "sinks": 3, "bench": 3, "cli": 4}
DEVICE_TOP_LEVEL_MODULES = 8
MAX_MODULE_LINES = 500
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
    if parts[0] != "edgepipe":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else "entry"


def _room(module: str) -> str | None:
    """edgepipe.device.run.loop -> run; edgepipe.device.host -> host; None outside device/ rooms."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["edgepipe", "device"] and len(parts) > 2 else None


def stage_modules() -> dict[str, Path]:
    modules = {}
    for folder in PACKAGES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            modules.setdefault(_module_name(path), path)
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
            else:
                target = node.module or ""
            # `from package import module` imports the module: keep both names, the graph keeps what exists.
            found += ([target] if node.module else []) + [f"{target}.{a.name}" for a in node.names
                                                          if f"{target}.{a.name}" in _ALL_MODULE_NAMES]
    return found


_ALL_MODULE_NAMES: set[str] = set()
MODULES = stage_modules()
_ALL_MODULE_NAMES.update(MODULES)


def test_every_stage_module_is_found():
    stages = {_stage(m) for m in MODULES}
    assert stages == set(ALLOWED)
    assert len(MODULES) > 50
    assert {"edgepipe.cli", "edgepipe.demo", "edgepipe.device.run.loop"} <= set(MODULES)


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


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m)))
def test_device_rooms_import_only_rooms_below_them(module):
    """model <- run <- sinks <- cli (bench beside sinks): runtime code never imports bench, sinks or the CLI."""
    room = _room(module)
    assert room in DEVICE_ROOMS, f"{module}: device/{room} is not a known room; add it to DEVICE_ROOMS"
    upward = [name for name in imports_of(module, MODULES[module])
              if (target := _room(name)) and target != room and DEVICE_ROOMS.get(target, 99) >= DEVICE_ROOMS[room]]
    assert upward == []


def test_device_is_in_rooms_of_small_modules():
    top_level = [p for p in (ROOT / "device").glob("*.py") if p.name != "__init__.py"]
    assert len(top_level) <= DEVICE_TOP_LEVEL_MODULES, top_level
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "device").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}


def test_the_wheel_lists_every_package():
    """setuptools installs only the packages pyproject names: a sub-package left out is missing on the Pi."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {_module_name(p) for folder in PACKAGES for p in (ROOT / folder).rglob("__init__.py")}
    assert packages - listed == set()


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


SONY_VENV_SCRIPT = "edgepipe.convert.imx500_in_venv"
SONY_VENV_PACKAGES = {"numpy", "tensorflow", "model_compression_toolkit", "mct_quantizers"}


def test_the_script_the_sony_venv_runs_imports_only_the_standard_library_and_that_venvs_packages():
    """convert/imx500_in_venv.py runs under the Sony venv's python (TensorFlow 2.15, numpy < 2, no edgepipe
    installed): nothing of edgepipe or of TensorFlow 2.21's world (tf_keras, tfmot) may be imported there."""
    import sys

    imported = {name.split(".")[0] for name in imports_of(SONY_VENV_SCRIPT, MODULES[SONY_VENV_SCRIPT])}
    assert imported <= set(sys.stdlib_module_names) | SONY_VENV_PACKAGES | {"__future__"}, imported
    assert not any(_stage(m) for m in imports_of(SONY_VENV_SCRIPT, MODULES[SONY_VENV_SCRIPT]))
