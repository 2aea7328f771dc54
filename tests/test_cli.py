"""The `edgepipe` command as a whole: every subcommand documents itself with
examples, bad arguments are one line and exit 2, heavy imports happen only
when a command needs them, and a missing extra names its pip install."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgepipe.cli import build_parser, main

COMMANDS = ("train", "evaluate", "convert", "inspect", "classify", "run", "bench", "verify", "deploy", "export", "demo")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_every_stage_command_is_registered():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert tuple(subparsers.choices) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"edgepipe {command}" in out.split("examples:")[1]


@pytest.mark.parametrize("argv", [
    ["train"],                                         # missing DATA_DIR
    ["classify", "m.tflite", "x.jpg", "--top-k", "0"],  # not a positive number
    ["bench", "m.tflite", "--runs", "many"],
    ["nonsense"],
    ["run", "b", "--no-such-flag"],
])
def test_bad_arguments_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "error:" in err and "Traceback" not in err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_help_imports_neither_tensorflow_nor_opencv():
    proc = _run(
        "import sys\n"
        "from edgepipe.cli import build_parser\n"
        "build_parser().format_help()\n"
        "print(sorted(m for m in ('tensorflow', 'tf_keras', 'cv2', 'numpy') if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_train_without_the_train_extra_names_the_pip_install(shapes_dataset, tmp_path):
    proc = _run(
        "import sys\n"
        "for name in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization'):\n"
        "    sys.modules[name] = None  # as if `pip install edgepipe[device]` only\n"
        "from edgepipe.cli import main\n"
        "sys.exit(main(sys.argv[1:]))",
        "train", str(shapes_dataset), "--out", str(tmp_path / "run"),
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # before any photo is scanned
    assert "pip install 'edgepipe[train]'" in lines[0]
    assert not (tmp_path / "run").exists()


def test_inspect_runs_with_the_device_extra_alone(tiny_int8_model):
    """The Pi is where a user checks whether a model is compiled for the Edge TPU: no TensorFlow there."""
    proc = _run(
        "import sys, json\n"
        "for name in ('tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'matplotlib'):\n"
        "    sys.modules[name] = None  # as if `pip install edgepipe[device]` only\n"
        "from edgepipe.cli import main\n"
        "sys.exit(main(sys.argv[1:]))",
        "inspect", str(tiny_int8_model["model"]), "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["input"]["dtype"] == "uint8" and report["edgetpu_compiled"] is False
    assert report["mapped"] + report["cpu"] == len(report["ops"]) > 0


def test_internal_errors_are_one_line_without_debug_and_a_traceback_with_it():
    code = (
        "import sys\n"
        "import edgepipe.demo\n"
        "def boom(args):\n"
        "    raise RuntimeError('something broke')\n"
        "edgepipe.demo.run_demo = boom  # registered when main() builds the parser\n"
        "from edgepipe.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    quiet = _run(code, "demo", "--workdir", "x")
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [
        "edgepipe demo: internal error: RuntimeError: something broke "
        "(rerun with --debug for the traceback, and please report it)"
    ]
    loud = _run(code, "demo", "--workdir", "x", "--debug")
    assert loud.returncode == 1
    assert "Traceback (most recent call last)" in loud.stderr


def test_installed_layout_has_no_bare_stage_modules():
    import importlib.util

    for bare in ("train", "convert", "device", "deploy"):
        spec = importlib.util.find_spec(bare)
        assert spec is None or "site-packages" not in (spec.origin or ""), bare
    import edgepipe.device
    import edgepipe.train

    assert edgepipe.train.__file__.endswith("train/__init__.py")
    assert edgepipe.device.__file__.endswith("device/__init__.py")
