"""The agent's systemd service manager, through stand-in `systemctl`/`journalctl`
programs (no service manager runs in CI): they record their arguments and
answer `systemctl show` and `journalctl -o cat` in systemd's own formats."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from edgepipe.deploy.agent import layout as agent_layout, services

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "{log}"
case "$*" in
  *" show "*) cat "{show}" ;;
esac
[ "$(basename "$0")" = journalctl ] && cat "{journal}"
exit 0
"""


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    files = {name: tmp_path / name for name in ("log", "show", "journal")}
    for path in files.values():
        path.write_text("")
    for tool in ("systemctl", "journalctl"):
        (bin_dir / tool).write_text(STUB.format(**files))
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    layout = agent_layout.Layout(str(tmp_path / "edgepipe"))
    layout.root.mkdir()
    return layout, files


def test_user_unit_is_written_reloaded_enabled_and_restarted(systemd):
    layout, files = systemd
    service = services.SystemdService(layout, {"scope": "user"})
    service.install("[Service]\nExecStart=/bin/true\n", ["/bin/true"])
    unit = Path(files["log"].parent / "home" / ".config" / "systemd" / "user" / "edgepipe.service")
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"
    started = service.restart()
    calls = files["log"].read_text().splitlines()
    assert calls == ["systemctl --user daemon-reload", "systemctl --user enable edgepipe.service",
                     "systemctl --user restart edgepipe.service"]
    service.output(started)
    assert files["log"].read_text().splitlines()[-1] == (
        f"journalctl --user -u edgepipe.service -o cat --no-pager --since @{int(started)}")


@pytest.mark.parametrize("show, state", [
    ("ActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\n", "active"),
    ("ActiveState=activating\nSubState=auto-restart\nResult=exit-code\nExecMainStatus=1\n", "failed"),
    ("ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=1\n", "failed"),
    ("ActiveState=inactive\nSubState=dead\nResult=success\nExecMainStatus=0\n", "exited"),
])
def test_state_is_read_from_systemctl_show(systemd, show, state):
    layout, files = systemd
    files["show"].write_text(show + "ActiveEnterTimestampMonotonic=0\n")
    assert services.SystemdService(layout, {"scope": "user"}).state()["state"] == state


def test_health_check_reads_results_from_the_journal(systemd):
    layout, files = systemd
    service = services.SystemdService(layout, {"scope": "user"})
    files["show"].write_text("ActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\n")
    result = {"frame": 0, "top": [{"index": 2, "label": "daisy", "score": 0.9}]}
    files["journal"].write_text(f"loading bundle\n{json.dumps(result)}\n")
    health = services.wait_healthy(service, time.time(), timeout=5)
    assert health["healthy"] and health["result"] == result
    files["show"].write_text("ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=1\n")
    files["journal"].write_text("edgepipe run: error: no camera found\n")
    health = services.wait_healthy(service, time.time(), timeout=5)
    assert not health["healthy"] and health["reason"].endswith("edgepipe run: error: no camera found")


def test_system_unit_goes_through_sudo_unless_root_and_drops_the_user_flag(systemd):
    layout, files = systemd
    service = services.SystemdService(layout, {"scope": "system"})
    assert service.unit_path == Path("/etc/systemd/system/edgepipe.service")
    if os.geteuid() != 0:
        assert service._sudo() == ["sudo", "-n"]
        pytest.skip("not root: the system unit's commands would run through the real sudo")
    service.restart()
    assert files["log"].read_text().splitlines()[-1] == "systemctl restart edgepipe.service"
