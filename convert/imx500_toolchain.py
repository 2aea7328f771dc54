"""Sony's IMX500 toolchain in a venv of its own, made once per pinned set and cached.

Model Compression Toolkit and the IMX500 converter need TensorFlow < 2.16,
numpy < 2 and Python 3.10/3.11, none of which can share a process with
edgepipe's TensorFlow 2.21. Their licences forbid redistribution, so they are
never edgepipe's dependencies, never in its wheel and never bundled: this
module installs them from the package index the first time a user asks for an
IMX500 conversion, into $XDG_CACHE_HOME/edgepipe/imx500-venv/<key>, where the
key hashes the pins and the Python version (a new pin is a new venv). A venv
counts as made only when its marker file is written, after pip succeeded, so
an interrupted install is redone, not used. The converter's back end is Java:
a headless JRE from apt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgepipe.core.errors import UserError
from edgepipe.core.progress import Working, say
from edgepipe.core.cachedir import cache_dir

PINS = (
    "imx500-converter[tf]==3.19.2",
    "model-compression-toolkit==2.5.1",
    "tensorflow<2.16",
    "numpy<2",
)
SUPPORTED_PYTHONS = ((3, 11), (3, 10))
MARKER = "edgepipe-ready.json"
JAVA_PACKAGE = "default-jre-headless"
IN_VENV_SCRIPT = Path(__file__).with_name("imx500_in_venv.py")
INSTALL_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Toolchain:
    """A ready venv: its python runs imx500_in_venv.py."""

    root: Path
    python: Path
    versions: dict[str, str]


CACHE_ENV = "EDGEPIPE_IMX500_VENVS"


def cache_root() -> Path:
    """$EDGEPIPE_IMX500_VENVS, else $XDG_CACHE_HOME/edgepipe/imx500-venv (~/.cache/...)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return cache_dir("imx500-venv")


def venv_key(python_version: tuple[int, int]) -> str:
    """The pins and the Python minor version, hashed: one venv per combination."""
    text = "\n".join([f"python{python_version[0]}.{python_version[1]}", *PINS])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys, venv; print('%d %d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = out.stdout.split()
    return (int(parts[0]), int(parts[1])) if out.returncode == 0 and len(parts) == 2 else None


def find_python(explicit: str | None = None) -> tuple[str, tuple[int, int]]:
    """A Python 3.10 or 3.11 on this machine (--imx500-python, else python3.11, python3.10 on PATH)."""
    how = ("IMX500 conversion needs Python 3.10 or 3.11 (Sony's converter supports no newer one): "
           "install one (`apt-get install python3.11-venv` on Debian 12, or `pyenv install 3.11`) "
           "or pass --imx500-python PATH")
    candidates = [explicit] if explicit else [c for c in ("python3.11", "python3.10") if shutil.which(c)]
    if sys.version_info[:2] in SUPPORTED_PYTHONS and not explicit:
        candidates.append(sys.executable)
    for python in candidates:
        version = _python_version(python)
        if version in SUPPORTED_PYTHONS:
            return python, version
        if explicit:
            raise UserError(f"--imx500-python {explicit} is Python {version or 'unknown'}, not 3.10/3.11 with venv; {how}")
    raise UserError(how)


def check_java() -> None:
    if shutil.which("java") is None:
        raise UserError(f"the IMX500 converter runs on Java and none is installed: "
                        f"`apt-get install {JAVA_PACKAGE}` (as root), then convert again")


def _ready(root: Path) -> Toolchain | None:
    marker = root / MARKER
    python = root / "bin" / "python"
    if not marker.is_file() or not python.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if data.get("pins") != list(PINS):
        return None
    return Toolchain(root, python, dict(data.get("versions", {})))


def _install(python: str, root: Path) -> Toolchain:
    if root.is_symlink():  # a venv made elsewhere and linked here, gone or broken: make a real one
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)  # an interrupted install: no marker, start again
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{root.name}.pip.log"
    say(f"IMX500: installing Sony's converter and Model Compression Toolkit ({', '.join(PINS)}) from the package "
        f"index into {root} (once; about 2.3 GB). They are Sony's, under Sony's licence: edgepipe never ships them.")
    started = time.perf_counter()
    with Working("IMX500: installing the toolchain"), open(log, "w", encoding="utf-8") as out:
        steps = [[python, "-m", "venv", str(root)],
                 [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *PINS]]
        for step in steps:
            try:
                proc = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                raise UserError(f"installing the IMX500 toolchain took over {INSTALL_TIMEOUT_S:.0f} s; see {log}") from None
            if proc.returncode != 0:
                tail = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()][-1:]
                raise UserError(f"installing the IMX500 toolchain failed ({' '.join(step[:4])} ...: "
                                f"{tail[0] if tail else 'no output'}); full log: {log}")
    versions = _installed_versions(root / "bin" / "python")
    (root / MARKER).write_text(json.dumps({"pins": list(PINS), "versions": versions}, indent=2), encoding="utf-8")
    say(f"IMX500: toolchain ready in {time.perf_counter() - started:.0f} s ({_versions_text(versions)})")
    return Toolchain(root, root / "bin" / "python", versions)


def _installed_versions(python: Path) -> dict[str, str]:
    code = ("import json; from importlib.metadata import version; print(json.dumps({n: version(n) for n in "
            "('imx500-converter', 'model-compression-toolkit', 'tensorflow', 'numpy')}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise UserError(f"the IMX500 venv {python.parent.parent} is broken ({out.stderr.strip()[-200:]}); delete it and retry")
    return json.loads(out.stdout)


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def ensure_toolchain(python: str | None = None) -> Toolchain:
    """The cached venv for the pins, made now when missing (one maker at a time: a lock file)."""
    check_java()
    interpreter, version = find_python(python)
    root = cache_root() / venv_key(version)
    ready = _ready(root)
    if ready is not None:
        return ready
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ready(root) or _install(interpreter, root)
