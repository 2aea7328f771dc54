"""An unknown flag is reported by the command it was given to, pointing to that command's
--help with the nearest option it has; every command's --help shows --debug and --verbose."""

from __future__ import annotations

import argparse

import pytest

from edgepipe.cli import build_parser


@pytest.mark.parametrize("argv, command, hint", [
    (["run", "bundle", "--thraeds", "2"], "run", "did you mean --threads?"),
    (["bench", "bundle", "--jsn"], "bench", "did you mean --json?"),
    (["train", "photos", "--out", "run", "--epohcs=5"], "train", "did you mean --epochs?"),
    (["classify", "bundle", "x.jpg", "--zzzzzz"], "classify", None),
    (["deploy", "setup", "pi@cam1", "--corl"], "deploy setup", "did you mean --coral?"),
    (["deploy", "collect", "pi@cam1", "--to", "field", "--mvoe"], "deploy collect", "did you mean --move?"),
    (["bench", "compare", "a.json", "b.json", "--bogus"], "bench compare", None),
    (["deploy", "bundle", "pi@cam1", "--bogus"], "deploy", None),
])
def test_unknown_flag_points_to_the_commands_help_with_the_nearest_option(cli, argv, command, hint):
    code, out, err = cli(*argv)
    assert code == 2 and not out and err.count("\n") == 1
    assert err.startswith(f"edgepipe {command}: error: unrecognized arguments: ")
    assert err.rstrip().endswith(f"(see `edgepipe {command} --help`)")
    assert (hint in err) if hint else ("did you mean" not in err)


def commands() -> list[str]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(subparsers.choices) + ["deploy setup", "deploy collect", "bench compare"]  # and their words


@pytest.mark.parametrize("command", commands())
def test_every_commands_help_shows_debug_and_verbose(cli, command):
    code, out, _ = cli(*command.split(), "--help")
    assert out.startswith(f"usage: edgepipe {command} ")
    assert code == 0 and "--debug" in out and "--verbose" in out
