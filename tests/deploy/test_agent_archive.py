"""The device agent as shipped: one zipapp that runs where edgepipe is not installed, both ways it is
run (a file, as Ansible does; on stdin behind the bootstrap, as `edgepipe deploy` does over ssh), and
the protocol both sides check its answers against."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from io import BytesIO

import pytest

from edgepipe.core.errors import UserError
from edgepipe.core.ssh import Target
from edgepipe.deploy.agent import cli, protocol
from edgepipe.deploy.agent_archive import PACKAGE, SOURCE, agent_archive, bootstrap, write_archive
from edgepipe.deploy.remote import checked_answer

# -S: no site-packages, so neither edgepipe nor anything pip installed is importable (a fresh device).
BARE_PYTHON = [sys.executable, "-S"]


def _answer(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_archive_holds_every_agent_module_and_is_the_same_bytes_each_build():
    names = zipfile.ZipFile(BytesIO(agent_archive())).namelist()
    assert sorted(names) == sorted([f"{PACKAGE}/{p.name}" for p in SOURCE.glob("*.py")] + ["__main__.py"])
    agent_archive.cache_clear()
    first = agent_archive()
    agent_archive.cache_clear()
    assert agent_archive() == first


def test_the_archive_file_runs_without_edgepipe_installed(tmp_path):
    archive = write_archive(tmp_path / "edgepipe-agent.pyz")
    prefix = tmp_path / "device"
    answer = _answer(subprocess.run([*BARE_PYTHON, str(archive), "--prefix", str(prefix), "report"],
                                    capture_output=True, text=True, timeout=60, cwd=tmp_path))
    assert protocol.wrong_field(answer, protocol.ANSWERS[protocol.REPORT]) is None
    assert answer["prefix"] == str(prefix)
    assert "No module named 'edgepipe'" in answer["report"]["edgepipe"]["error"]  # what a deploy refuses on


def test_the_bootstrap_runs_the_archive_from_stdin_and_leaves_the_rest_of_stdin(tmp_path):
    prefix = tmp_path / "device"
    lock = subprocess.Popen([*BARE_PYTHON, "-c", bootstrap(), "--prefix", str(prefix), protocol.LOCK],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    try:
        lock.stdin.write(agent_archive())
        lock.stdin.flush()
        held = json.loads(lock.stdout.readline())
        assert protocol.wrong_field(held, protocol.ANSWERS[protocol.LOCK]) is None
        busy = subprocess.run([*BARE_PYTHON, "-c", bootstrap(), "--prefix", str(prefix), protocol.STOP],
                              input=agent_archive(), capture_output=True, timeout=60)
        assert busy.returncode == 1
        assert json.loads(busy.stdout)["busy"] is True  # the holder still reads stdin: the lock is held
    finally:
        lock.stdin.close()
        lock.wait(timeout=60)
    assert json.loads(lock.stdout.readline()) == {"released": True}
    lock.stdout.close()
    answer = _answer(subprocess.run([*BARE_PYTHON, "-c", bootstrap(), "--prefix", str(prefix), protocol.STOP],
                                    input=agent_archive(), capture_output=True, timeout=60))
    assert answer == {"stopped": False}


def test_the_agent_refuses_to_send_an_answer_outside_its_protocol(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "cmd_stop", lambda args, layout: {"stopped": "yes"})
    assert cli.main(["--prefix", str(tmp_path), protocol.STOP]) == 1
    error = json.loads(capsys.readouterr().out)["error"]
    assert "the stop answer has stopped = 'yes', not the protocol's shape" in error


@pytest.mark.parametrize("answer, field", [
    ({"prefix": "/p", "report": {}}, "report.hostname"),
    ({"prefix": 7, "report": {}}, "prefix"),
    ({"prefix": "/p"}, "report"),
])
def test_the_workstation_names_the_field_of_a_malformed_answer(answer, field):
    with pytest.raises(UserError, match=f"answer has '{field}' = .*is the device running a different edgepipe"):
        checked_answer(Target.parse("pi@cam1"), protocol.REPORT, answer)


def test_every_command_the_agent_parses_is_in_the_protocol():
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    assert sorted(commands) == sorted(protocol.COMMANDS)


def test_a_collected_pair_spec_round_trips():
    spec = protocol.pair_spec("frame:1", "a" * 64, "b" * 64)
    assert protocol.parse_pair_spec(spec) == ("frame:1", "a" * 64, "b" * 64)
    with pytest.raises(protocol.AgentError, match="not STEM:JPG_SHA256:JSON_SHA256"):
        protocol.parse_pair_spec("frame")
