"""Small argparse helpers every stage's CLI uses, so all subcommands look and
fail alike. Lives in the core because every stage may import it."""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import Callable, Sequence


def add_command(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with worked examples.

    The parser is left in the parsed arguments (`args.parser`) so that a
    command body reports a wrong combination of flags as argparse does: one
    line, exit code 2.
    """
    parser = subparsers.add_parser(
        name,
        help=help,
        description=textwrap.dedent(description).strip(),
        epilog=_examples(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(parser=parser)
    _add_general(parser)
    return parser


def _add_general(parser: argparse.ArgumentParser) -> None:
    """--debug and --verbose, in every command's --help. main() takes them out of the arguments
    before parsing, wherever they stand; they are declared only to be shown."""
    general = parser.add_argument_group("every command")
    general.add_argument("--debug", action="store_true", help="a full traceback on errors")
    general.add_argument("--verbose", action="store_true",
                         help="TensorFlow's and the TFLite runtime's own logging (hidden otherwise)")


def _examples(examples: str) -> str:
    return "examples:\n" + textwrap.indent(textwrap.dedent(examples).strip(), "  ")


def add_word(parser: argparse.ArgumentParser, word: str, *, description: str, examples: str) -> argparse.ArgumentParser:
    """The --help of `COMMAND WORD` (`deploy setup`, `bench compare`): a parser the caller fills with the
    arguments that apply to WORD, printed for `COMMAND WORD --help` instead of COMMAND's own help.

    Such words are a first positional rather than argparse sub-subcommands, which would swallow a
    bundle path in `deploy BUNDLE HOST`; COMMAND's parser still parses them.
    """
    words = _word_parsers(parser)
    words[word] = type(parser)(
        prog=f"{parser.prog} {word}",
        description=textwrap.dedent(description).strip(),
        epilog=_examples(examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_general(words[word])
    return words[word]


def _word_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's words, made able to answer `WORD --help` on first use."""
    words = getattr(parser, "word_parsers", None)
    if words is not None:
        return words

    class WordHelpParser(type(parser)):  # type: ignore[misc]
        def parse_known_args(self, args=None, namespace=None):
            given = list(sys.argv[1:] if args is None else args)
            given = given[:given.index("--")] if "--" in given else given
            word = next((arg for arg in given if not arg.startswith("-")), None)
            words = getattr(self, "word_parsers", {})  # a word's own parser has none
            if word in words and ("-h" in given or "--help" in given):
                words[word].print_help()
                self.exit()
            self.given_word = word if word in words else None
            return super().parse_known_args(args, namespace)

        def refuse_unknown(self, extras):
            """Flags no parser took, reported by `COMMAND WORD` (its --help, its nearest flags) when a word was given."""
            word = getattr(self, "given_word", None)
            if word is not None:
                self.word_parsers[word].refuse_unknown(extras)
            super().refuse_unknown(extras)

    parser.__class__ = WordHelpParser
    parser.word_parsers = {}
    return parser.word_parsers


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


MAX_MAGNITUDE = 1e12  # no flag of edgepipe means more; larger values overflow what they size


def _number(text: str) -> float:
    """A finite number of sane magnitude: `inf`, `nan` and 1e308 are refused here, not deep in a run."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of at most {MAX_MAGNITUDE:g}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return value


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (a split, a threshold)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def above_zero_fraction(zero_means: str) -> Callable[[str], float]:
    """A parser of a number in (0, 1] (a share to accept, a smoothing weight); `zero_means` says
    why 0 is refused."""

    def parse(text: str) -> float:
        value = unit_interval(text)
        if value == 0:
            raise argparse.ArgumentTypeError(f"0 {zero_means}; use a value in (0, 1]")
        return value

    return parse


def unit_interval(text: str) -> float:
    """A number from 0 to 1 inclusive (a score threshold, a smoothing weight)."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def typed_dests(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """The destinations `argv` itself sets when `parser` (a command's own) parses it: a flag typed with
    its default value counts, a default nobody typed does not. Found by parsing again with every default
    suppressed, since argparse keeps no record of what it saw."""
    actions = [a for a in parser._actions if a.default is not argparse.SUPPRESS]
    defaults, set_defaults = [a.default for a in actions], dict(parser._defaults)
    try:
        for action in actions:
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        namespace, _ = parser.parse_known_args(list(argv))
    finally:
        for action, default in zip(actions, defaults):
            action.default = default
        parser._defaults.update(set_defaults)
    return set(vars(namespace))
