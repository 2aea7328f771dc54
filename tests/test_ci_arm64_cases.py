"""CI runs all three arm64 cases while its 90 minutes leave room, and the docs say exactly that."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cases(seconds_used: int, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "EDGEPIPE_ARM64_CASES"} | env
    return subprocess.run([ROOT / ".ci/arm64-cases", str(seconds_used)], capture_output=True, text=True,
                          env=environment, timeout=30)


def test_all_three_cases_while_time_is_left_trixie_alone_with_a_reason_after():
    early = cases(34 * 60)
    assert early.returncode == 0 and early.stdout.split() == ["trixie", "bookworm", "legacy"] and not early.stderr
    late = cases(36 * 60)
    assert late.returncode == 0 and late.stdout.split() == ["trixie"]
    assert late.stderr.count("\n") == 1 and "36 of CI's 90 minutes" in late.stderr
    assert cases(99 * 60, EDGEPIPE_ARM64_CASES="legacy").stdout.split() == ["legacy"]
    assert cases(-1).returncode == 2


def test_ci_run_asks_arm64_cases_and_the_docs_no_longer_say_it_did_not_fit():
    run = (ROOT / ".ci/run").read_text()
    assert "cases=$(.ci/arm64-cases $((SECONDS - started)))" in run and ".ci/arm64-check $cases" in run
    for doc in (".ci/run", "CONTRIBUTING.md", "docs/performance.md", "README.md"):
        text = (ROOT / doc).read_text()
        assert "did not fit" not in text and "CI runs Trixie only" not in text, doc
    assert "all three cases when at most 35 minutes" in (ROOT / "CONTRIBUTING.md").read_text()
