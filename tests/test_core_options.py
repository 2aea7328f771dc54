"""edgepipe.core.options on a small options class: the parser gets the field's
default, type and help, and the parsed arguments give the dataclass back."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edgepipe.core.args import positive_int
from edgepipe.core.options import Off, add_options, declared_by, flag, options_from


@dataclass(frozen=True)
class Job:
    out: Path = flag("--out", parse=Path, metavar="DIR", help="where to write")
    runs: int = flag("--runs", default=3, parse=positive_int, help="how many runs")
    rate: float = flag("--rate", default=1e-4, help="learning rate", group="training")
    name: str | None = flag("--name", default=None, help="a label (default: the folder's name)")
    force: bool = flag("--force", default=False, help="overwrite")
    flip: bool = flag("--no-flip", default=True, help="no flips")
    verify: bool = flag("--verify", default=True, help="check the result")
    tags: tuple[str, ...] = flag("--tag", default=(), repeat=True, help="repeatable")
    golden: int = flag("--golden", default=48, parse=positive_int, help="golden images",
                       off=Off("--no-golden", 0, "ship none"))
    seed: int = 0  # not a flag
    extra: dict[str, str] = field(default_factory=dict)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="job", allow_abbrev=False)
    add_options(parser, Job)
    return parser


def test_no_flags_give_the_dataclass_defaults():
    job = options_from(_parser().parse_args(["--out", "x"]), Job)
    assert job == Job(out=Path("x"))


def test_flags_reach_their_fields_with_their_types():
    args = _parser().parse_args(["--out", "x", "--runs", "7", "--rate", "0.5", "--name", "n", "--force", "--no-flip",
                                 "--no-verify", "--tag", "a", "--tag", "b", "--no-golden"])
    job = options_from(args, Job, seed=9)
    assert job == Job(out=Path("x"), runs=7, rate=0.5, name="n", force=True, flip=False, verify=False,
                      tags=("a", "b"), golden=0, seed=9)


def test_given_values_win_over_parsed_flags():
    args = _parser().parse_args(["--out", "x", "--runs", "7"])
    assert options_from(args, Job, runs=2).runs == 2


def test_a_field_without_default_is_a_required_flag(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args([])
    assert "the following arguments are required: --out" in capsys.readouterr().err


def test_the_parser_type_checks_values(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--out", "x", "--runs", "0"])
    assert "must be greater than 0" in capsys.readouterr().err


def test_the_off_flag_excludes_its_twin(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--out", "x", "--golden", "3", "--no-golden"])
    assert "not allowed with argument --golden" in capsys.readouterr().err


def test_help_says_each_default_once_in_its_group():
    text = " ".join(_parser().format_help().split())
    assert "how many runs (default: 3)" in text
    assert "training: --rate RATE learning rate (default: 0.0001)" in text
    assert "--verify, --no-verify check the result (default: on)" in text
    assert "golden images (default: 48)" in text
    assert "a label (default: the folder's name)" in text and "(default: None)" not in text
    assert "overwrite (default" not in text and "no flips (default" not in text and "True" not in text


def test_every_action_knows_its_field():
    parser = _parser()
    fields = {declared_by(action).name for action in parser._actions if declared_by(action) is not None}
    assert fields == {"out", "runs", "rate", "name", "force", "flip", "verify", "tags", "golden"}
