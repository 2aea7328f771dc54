"""The TFLite runtime's own INFO line ("Created TensorFlow Lite XNNPACK delegate for CPU.")
never reaches a user's terminal unless --verbose asks for it: each command in a real process,
its real stderr read, as a user would see it."""

from __future__ import annotations

import subprocess
import sys

import pytest

XNNPACK_LINE = "Created TensorFlow Lite XNNPACK delegate"


def edgepipe(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgepipe", *map(str, argv)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("command", ["classify", "run", "bench", "verify"])
def test_runtime_info_line_is_silent(command, tiny_bundle, shapes_dataset, request):
    image = sorted((shapes_dataset / "circle").glob("*.jpg"))[0]
    argv = {"classify": ["classify", tiny_bundle, image],
            "run": ["run", tiny_bundle, "--source", image.parent, "--max-frames", "2", "--workers", "2"],
            "bench": ["bench", tiny_bundle, "--runs", "3", "--warmup", "1", "--threads", "1,2"],
            "verify": ["verify", request.getfixturevalue("golden_bundle")]}[command]  # one with a golden set
    quiet = edgepipe(*argv)
    assert quiet.returncode == 0, quiet.stderr
    assert XNNPACK_LINE not in quiet.stderr and "INFO:" not in quiet.stderr
    assert quiet.stdout.strip()  # it still did its work


def test_verbose_shows_the_runtime_info_line(tiny_bundle, shapes_dataset):
    verbose = edgepipe("classify", tiny_bundle, sorted((shapes_dataset / "circle").glob("*.jpg"))[0], "--verbose")
    assert verbose.returncode == 0 and XNNPACK_LINE in verbose.stderr
