"""The device agent as one file: a zipapp of the edgepipe.deploy.agent package, built in memory.

Why one file: the agent is a package of small modules, but it runs on devices
where edgepipe may not be installed, so it travels with every call. The archive
is a standard zipapp (a zip with a __main__.py), built from the installed
package's sources with fixed timestamps, so the same edgepipe always ships the
same bytes. The package is stored as `edgepipe_agent` (its modules import each
other relatively) so nothing on the device's path can stand in for it.

Two ways to run the one archive:
- `python3 ARCHIVE ARGS` (Ansible's `script` module copies it first): Python
  runs a zip's __main__.py itself.
- `python3 -c BOOTSTRAP ARGS` with the archive on stdin (`edgepipe deploy` over
  ssh): the bootstrap reads exactly the archive's length, imports the package
  from memory and runs the same __main__.py. Nothing is written on the device,
  and the rest of stdin stays free (the deploy lock lasts until it closes).

`python3 deploy/agent_archive.py [PATH]` writes the archive (by default into
~/.cache/edgepipe/) and prints its path: the Ansible role builds it so when
run by ansible-playbook directly.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from edgepipe.core.cachedir import cache_dir

PACKAGE = "edgepipe_agent"
SOURCE = Path(__file__).resolve().with_name("agent")
MAIN = f"import sys\nfrom {PACKAGE}.cli import main\nsys.exit(main())\n"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: reproducible bytes

# Imports PACKAGE from the archive on stdin (its length is `%d`) and runs its __main__.py.
STDIN_LOADER = f"""\
import importlib.abc, importlib.util, io, sys, zipfile
archive = zipfile.ZipFile(io.BytesIO(sys.stdin.buffer.read(%d)))
names = set(archive.namelist())
class ArchiveImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        base = name.replace(".", "/")
        for file, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if name.split(".")[0] == "{PACKAGE}" and file in names:
                return importlib.util.spec_from_loader(name, self, origin=file, is_package=package)
        return None
    def exec_module(self, module):
        origin = module.__spec__.origin
        exec(compile(archive.read(origin), "{PACKAGE}.pyz/" + origin, "exec"), module.__dict__)
sys.meta_path.insert(0, ArchiveImporter())
exec(compile(archive.read("__main__.py"), "{PACKAGE}.pyz/__main__.py", "exec"))
"""


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


@functools.lru_cache(maxsize=1)
def agent_archive() -> bytes:
    """The zipapp's bytes: every module of the agent package, and a __main__.py that runs its cli."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for module in sorted(SOURCE.glob("*.py")):
            archive.writestr(_entry(f"{PACKAGE}/{module.name}"), module.read_bytes())
        archive.writestr(_entry("__main__.py"), MAIN)
    return buffer.getvalue()


def bootstrap() -> str:
    """The `python3 -c` program that runs the archive sent on stdin: one line, so any login shell passes it,
    and no single quote, so shlex.quote leaves it readable (a JSON string is a Python string literal too)."""
    return "exec(%s)" % json.dumps(STDIN_LOADER % len(agent_archive()))


def write_archive(path: Path) -> Path:
    """The archive written atomically at `path` (mode 0644: it holds no secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(agent_archive())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def default_path() -> Path:
    """A private cache file named by the archive's hash: one per agent version, never a shared temp path."""
    return cache_dir(f"edgepipe-agent-{hashlib.sha256(agent_archive()).hexdigest()[:16]}.pyz")


if __name__ == "__main__":
    print(write_archive(Path(sys.argv[1]) if len(sys.argv) > 1 else default_path()))
