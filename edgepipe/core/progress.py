"""What a long command is doing, on stderr.

stdout carries results (a table, JSON lines) that scripts read; everything a
person watches while waiting goes to stderr, flushed at once so it shows up
in journals and pipes as it happens.
"""

from __future__ import annotations

import sys


def say(message: str) -> None:
    """One progress line on stderr."""
    print(message, file=sys.stderr, flush=True)
