"""Every command's flags, walked through the real parser: each default is
declared once (on its options dataclass field) and --help shows that one;
no flag is taken by an abbreviation; `COMMAND WORD --help` is WORD's help."""

from __future__ import annotations

import argparse
from dataclasses import MISSING
from typing import Iterator

import pytest

from edgepipe.cli import build_parser, main
from edgepipe.core.options import declared_by, describe_default, field_default, flag_of


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser, every subcommand's parser and every word's (`deploy setup`, `bench compare`)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _parsers(sub)
    for word in getattr(parser, "word_parsers", {}).values():
        yield from _parsers(word)


def _flags(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if not isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            yield action


PARSERS = list(_parsers(build_parser()))


def _name(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    return f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"


def test_the_walk_reaches_every_command_and_word():
    progs = {parser.prog for parser in PARSERS}
    assert {"edgepipe train", "edgepipe convert", "edgepipe run", "edgepipe bench", "edgepipe bench compare",
            "edgepipe deploy", "edgepipe deploy setup", "edgepipe deploy collect", "edgepipe demo"} <= progs


def test_every_written_default_comes_from_its_options_field():
    """A default may exist in one place only: an options dataclass field. A flag written by hand
    (a positional, --json, --debug-like switches) may have no default of its own."""
    handwritten, differing = [], []
    for parser in PARSERS:
        for action in _flags(parser):
            field = declared_by(action)
            if field is None:
                if action.default not in (None, False, argparse.SUPPRESS, []):
                    handwritten.append(f"{_name(parser, action)}: {action.default!r}")
                continue
            default = action.default
            if default is argparse.SUPPRESS:  # the `off` twin (--no-golden): the field's flag holds the default
                continue
            declared = field_default(field)
            if declared is MISSING:  # a required flag: no default anywhere
                declared = None if action.required else "a default, though the field has none"
            if flag_of(field).repeat:
                default = tuple(default)
            if default != declared:
                differing.append(f"{_name(parser, action)}: parser {default!r}, {field.name} {declared!r}")
    assert not handwritten, f"defaults written outside an options class: {handwritten}"
    assert not differing, f"parser defaults that differ from their field: {differing}"


def test_help_shows_the_fields_default():
    missing = []
    for parser in PARSERS:
        for action in _flags(parser):
            field = declared_by(action)
            shown = describe_default(field_default(field)) if field else None
            if shown is None or action.default is argparse.SUPPRESS or "%(default)" in action.help:
                continue
            if isinstance(field_default(field), bool) and action.nargs == 0 and not isinstance(
                    action, argparse.BooleanOptionalAction):
                continue  # a plain switch (--force, --no-flip): giving it says what it does
            if f"(default: {shown.replace('%', '%%')})" not in action.help:
                missing.append(f"{_name(parser, action)}: {action.help!r}")
    assert not missing, missing


def test_help_text_prints_the_collect_every_default_of_its_options_class():
    """The divergence that started this: `--collect-every` said 100 while CollectOptions said 0."""
    run = next(parser for parser in PARSERS if parser.prog == "edgepipe run")
    action = next(a for a in run._actions if "--collect-every" in a.option_strings)
    assert declared_by(action) is not None
    assert f"(default: {field_default(declared_by(action))})" in " ".join(run.format_help().split())


def test_no_parser_takes_abbreviations():
    assert [parser.prog for parser in PARSERS if parser.allow_abbrev] == []


@pytest.mark.parametrize("argv, meant", [
    (["train", "photos", "--out", "run", "--epoch", "5"], "--epoch"),
    (["convert", "run", "--out", "bundle", "--qat-epoch", "1"], "--qat-epoch"),
    (["bench", "model.tflite", "--run", "5"], "--run"),
    (["deploy", "bundle", "pi@cam", "--health", "5"], "--health"),
])
def test_an_abbreviated_flag_is_refused_not_guessed(argv, meant, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err and meant in err


@pytest.mark.parametrize("argv, own, not_shown", [
    (["deploy", "setup", "--help"], ["usage: edgepipe deploy setup", "--wheel", "--coral", "--identity", "HOST"],
     ["--keep", "--to", "--mqtt"]),
    (["deploy", "collect", "--help"], ["usage: edgepipe deploy collect", "--to DIR", "--move", "--from", "--prefix"],
     ["--wheel", "--keep", "--service-manager"]),
    (["deploy", "collect", "pi@cam", "-h"], ["usage: edgepipe deploy collect"], ["--wheel"]),
    (["bench", "compare", "--help"], ["usage: edgepipe bench compare", "--plot", "--out", "JSON"],
     ["--runs", "--threads", "--host"]),
])
def test_a_words_help_is_its_own(argv, own, not_shown, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(text in out for text in own), out
    assert not [text for text in not_shown if text in out], out
    assert f"edgepipe {argv[0]} {argv[1]}" in out.split("examples:")[1]


@pytest.mark.parametrize("argv, own", [
    (["deploy", "--help"], ["--keep", "--wheel", "--to"]),
    (["deploy", "./setup", "--help"], ["--keep"]),  # a bundle directory named like a word
    (["bench", "--help"], ["--runs", "--host"]),
])
def test_the_commands_own_help_is_unchanged(argv, own, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgepipe {argv[0]} [-h]") and all(text in out for text in own)
