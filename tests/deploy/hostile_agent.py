"""A lying device agent for `deploy collect` tests: run by the real sshd in place of the agent.

The test passes `--remote-python` a script that runs this file; it swallows the agent
archive on stdin and prints, for any command, the text of PREFIX/hostile-answer.json as it
is (any shape, any lie), so the workstation's side sees exactly what a hostile device could
say. The files the listing names are real files, copied by the real scp.
"""

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    sys.stdin.buffer.read()
    prefix = Path(argv[argv.index("--prefix") + 1])
    sys.stdout.write((prefix / "hostile-answer.json").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
