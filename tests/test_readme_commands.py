"""README's test command is what CI runs, word for word, and works as root and as a sudo user;
README stays a front door whose links and numbers stay true (the manual in docs/ is checked by
`mkdocs build --strict` in .ci/run)."""

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


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_a_front_door_with_both_set_up_commands_on_its_first_screen():
    readme = _readme()
    lines = readme.splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:40])
    assert "pip install -e '.[train]' && edgepipe demo" in first_screen
    assert readme_command("test-command") in first_screen
    assert "../shared" not in readme  # users are never sent to the developers' data folder


def _headings(markdown: str) -> list[str]:
    """Headings outside fenced code blocks."""
    import re

    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)
    return re.findall(r"^#{1,6} (.+)$", prose, re.M)


def test_readme_and_contributing_link_only_to_files_and_headings_in_the_repository():
    import re

    for name in ("README.md", "CONTRIBUTING.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        links = [link for link in re.findall(r"\]\(([^)\s]+)\)", text) if not link.startswith("#")]
        assert links, name
        for link in links:
            assert "://" not in link, f"{name}: {link} leaves the repository"
            path, _, anchor = link.partition("#")
            target = ROOT / path
            assert target.is_file(), f"{name}: {link} names no file in the repository"
            if anchor:
                anchors = [_anchor(h) for h in _headings(target.read_text(encoding="utf-8"))]
                assert anchor in anchors, f"{name}: {link} names no heading of {path}"


def test_readme_performance_summary_rows_are_rows_of_the_full_table():
    summary = _readme().split("\n## Performance\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in summary.splitlines() if line.startswith("| ")]
    full_table = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8").splitlines()
    assert len(rows) >= 10
    assert [row for row in rows if row not in full_table] == []  # numbers are copied, never retyped
