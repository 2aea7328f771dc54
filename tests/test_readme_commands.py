"""README's test command is what CI runs, word for word, and works as root and as a sudo user."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_command(name: str) -> str:
    return subprocess.run([str(ROOT / ".ci" / "readme-command"), name], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_ci_runs_the_line_readme_shows():
    command = readme_command("test-command")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"```bash\n{command}\n```" in readme
    assert "$(.ci/readme-command test-command)" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for package in ("openssh-server", "openssh-client", "shellcheck"):
        assert package in command.split("apt-get install", 1)[1].split("&&")[0]


def test_missing_block_is_a_one_line_error(tmp_path: Path):
    (tmp_path / "README.md").write_text("# no commands here\n")
    result = subprocess.run([str(ROOT / ".ci" / "readme-command"), "test-command", str(tmp_path / "README.md")],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "has no <!-- ci:test-command --> block" in result.stderr


def _sudo_prefix(uid: int, tmp_path: Path) -> str:
    """What the command's first statement sets SUDO to for a user with this uid (a stand-in `id`)."""
    fake_bin = tmp_path / f"bin{uid}"
    fake_bin.mkdir()
    (fake_bin / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (fake_bin / "id").chmod(0o755)
    first_statement = readme_command("test-command").split(";", 1)[0]
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}
    return subprocess.run(["sh", "-c", f'{first_statement}; printf %s "$SUDO"'], env=env, capture_output=True,
                          text=True, check=True).stdout


def test_apt_runs_without_sudo_as_root_and_with_sudo_otherwise(tmp_path: Path):
    command = readme_command("test-command")
    assert "sudo apt-get" not in command  # Debian as root has no sudo
    assert command.count("$SUDO apt-get") == 2
    assert _sudo_prefix(0, tmp_path) == ""
    assert _sudo_prefix(1000, tmp_path) == "sudo"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_contents_links_every_section_and_readme_stands_on_its_own():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## (.+)$", readme, re.M)
    contents = next(line for line in readme.splitlines() if line.startswith("Contents: "))
    assert re.findall(r"\]\(#([^)]+)\)", contents) == [_anchor(s) for s in sections]
    assert "shared/docs" not in readme
    walkthrough = readme.split("## Your own photos in ten minutes", 1)[1].split("\n## ", 1)[0]
    commands = re.search(r"```bash\n(.*?)```", walkthrough, re.S).group(1).splitlines()
    assert [c.split()[1] for c in commands] == ["train", "convert", "classify", "run", "bench"]
