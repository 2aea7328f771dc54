"""What the service runs: its `edgepipe run` command line, the systemd unit holding it, and its secrets file.

A value with a control character never reaches a unit (a newline would start
a new directive); the secrets file holds only the names edgepipe reads.
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

from .layout import Layout
from .protocol import SECRET_NAMES, AgentError

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def systemd_quote(arg: str) -> str:
    """One ExecStart argument: systemd expands % specifiers and $VARS, splits on spaces."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and all(c.isalnum() or c in "_@%+=:,./-" for c in text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def service_argv(python: str, layout: Layout, config: dict) -> list:
    argv = [python, "-m", "edgepipe", "run", str(layout.current), "--json"]
    if config.get("source"):
        argv += ["--source", config["source"]]
    for key in ("mqtt", "serve"):
        if config.get(key):
            argv += ["--" + key, config[key]]
    for region in config.get("roi") or []:
        argv += ["--roi", region]
    if config.get("serve") and config.get("serve_public") is True:
        argv += ["--serve-public"]
    if config.get("collect"):
        argv += ["--collect", str(layout.collect)]
    return argv + ["--accelerator", config.get("accelerator") or "auto"]


def render_unit(template: str, layout: Layout, config: dict, argv: list) -> str:
    """The unit text; a value with a control character is refused."""
    for value in list(argv) + [str(layout.root), str(config.get("user") or "")]:
        if CONTROL.search(value):
            raise AgentError("refusing a systemd unit value with a control character: %r" % value)
    system = config.get("scope") == "system"
    return string.Template(template).substitute(
        prefix=str(layout.root),
        exec_start=" ".join(systemd_quote(a) for a in argv),
        user_line="User=%s" % config["user"] if system else "",
        wanted_by="multi-user.target" if system else "default.target",
    )


def read_env_file(path: Path) -> dict:
    """NAME=value lines of the secrets file; only the names edgepipe reads are accepted."""
    env = {}
    try:
        text = path.read_text()
    except OSError:
        return env
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if not sep or name not in SECRET_NAMES:
            raise AgentError("%s: unexpected line (only %s)" % (path, ", ".join(SECRET_NAMES)))
        env[name] = value
    return env


def install_env_file(layout: Layout, uploaded: str | None) -> None:
    """Move the uploaded secrets into PREFIX/service.env (0600), or remove a stale one when none came."""
    if uploaded is None:
        if layout.env_file.exists():
            layout.env_file.unlink()
        return
    path = Path(uploaded)
    if path.parent != layout.root:
        raise AgentError("the environment file must be uploaded into %s" % layout.root)
    read_env_file(path)  # validated before it replaces anything
    os.chmod(str(path), 0o600)
    os.replace(str(path), str(layout.env_file))
