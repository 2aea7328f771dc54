"""A wrong path is reported before TensorFlow is imported (seconds): train, evaluate and convert
each say what is missing in one line from a process that never loaded it."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
from edgepipe.cli import main
code = main(sys.argv[1:])
print("tensorflow" in sys.modules, code)
"""


@pytest.mark.parametrize("argv, message", [
    (["train", "{missing}", "--out", "{tmp}/run"], "data folder {missing} does not exist"),
    (["train", "{tmp}", "--val-dir", "{missing}", "--out", "{tmp}/run"], "data folder {missing} does not exist"),
    (["evaluate", "{tmp}/model.keras", "{missing}"], "does not exist"),
    (["convert", "{missing}", "--out", "{tmp}/bundle"], "run dir {missing} does not exist"),
], ids=["train", "train-val-dir", "evaluate", "convert"])
def test_missing_paths_are_reported_without_importing_tensorflow(argv, message, tmp_path):
    fill = {"missing": str(tmp_path / "missing"), "tmp": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", CHECK, *(a.format(**fill) for a in argv)],
                          capture_output=True, text=True, timeout=120)
    imported, code = done.stdout.split()
    assert imported == "False" and code != "0", done.stderr
    assert message.format(**fill) in done.stderr and done.stderr.count("\n") == 1
