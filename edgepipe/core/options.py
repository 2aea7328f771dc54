"""Each command-line option declared once: on the options dataclass field it sets.

Why: a default written in `add_argument` and again in the dataclass drifts
apart (`--collect-every` said 100 while `CollectOptions.every` said 0). Here
the field is the only place: `flag()` keeps the flag's names, help and parser
in the field's metadata next to its default; `add_options` puts the fields on
an argparse parser (its --help says the field's default); `options_from`
builds the dataclass from the parsed arguments. Libraries keep taking typed
options objects and never see argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
import weakref
from dataclasses import MISSING, dataclass
from pathlib import PurePath
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
_METADATA_KEY = "edgepipe.flag"
# Every action `add_options` made -> the field that declared it (for the test that walks the parsers).
_DECLARED: "weakref.WeakKeyDictionary[argparse.Action, dataclasses.Field]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Off:
    """A second, mutually exclusive flag that sets the field to `value` (`--no-golden` sets golden to 0)."""

    name: str
    value: Any
    help: str


@dataclass(frozen=True)
class Flag:
    """How a field appears on the command line. The default is the field's own."""

    names: tuple[str, ...]
    help: str
    parse: Callable[[str], Any] | None = None  # argparse `type`; inferred from an int/float default
    choices: Sequence[Any] | None = None
    metavar: str | None = None
    group: str | None = None  # the --help section; None: add_options' group
    repeat: bool = False  # may be given several times; the field is a tuple of the values
    off: Off | None = None

    @property
    def dest(self) -> str:
        """The Namespace attribute: from the long flag name, so it is unique in a parser as flags are."""
        long = next((name for name in self.names if name.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


def flag(*names: str, help: str, default: Any = MISSING, default_factory: Any = MISSING,
         parse: Callable[[str], Any] | None = None, choices: Sequence[Any] | None = None,
         metavar: str | None = None, group: str | None = None, repeat: bool = False,
         off: Off | None = None) -> Any:
    """A dataclass field that is also a command-line flag.

    A bool field is a switch: `--x` for a False default, `--no-x` (named so)
    or `--x/--no-x` for a True one. A field without a default is a required flag.
    """
    spec = Flag(tuple(names), help, parse, choices, metavar, group, repeat, off)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={_METADATA_KEY: spec})


def flag_of(field: dataclasses.Field) -> Flag | None:
    return field.metadata.get(_METADATA_KEY)


def field_default(field: dataclasses.Field) -> Any:
    """The field's default value (MISSING for a required field)."""
    if field.default_factory is not MISSING:
        return field.default_factory()
    return field.default


def declared_by(action: argparse.Action) -> dataclasses.Field | None:
    """The options field an action was made from, or None for an action written by hand."""
    return _DECLARED.get(action)


def describe_default(value: Any) -> str | None:
    """The default as --help shows it; None when there is nothing worth saying (no value, a plain switch)."""
    if value is None or value is MISSING or value is False or value == ():
        return None
    if value is True:
        return "on"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (tuple, list)):  # None items mean "chosen at run time": the help says how
        return ",".join(str(item) for item in value if item is not None) or None
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


class _OnOff(argparse.BooleanOptionalAction):
    """--x/--no-x whose help says the default as add_options does ("on"), not argparse's "True"."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, help=None, **kwargs)
        self.help = help


def _help(spec: Flag, default: Any) -> str:
    shown = describe_default(default)
    if shown is None or "%(default)" in spec.help:
        return spec.help
    return f"{spec.help} (default: {shown.replace('%', '%%')})"


def _argparse_keywords(spec: Flag, default: Any) -> dict[str, Any]:
    keywords: dict[str, Any] = {"dest": spec.dest, "help": _help(spec, default)}
    if default is MISSING:
        keywords["required"] = True
    elif isinstance(default, bool):
        keywords["default"] = default
        if default and not spec.names[0].startswith("--no-"):
            keywords["action"] = _OnOff
        else:  # a plain switch: giving it says what it does, no default to show
            keywords["action"] = "store_false" if default else "store_true"
            keywords["help"] = spec.help
        return keywords
    else:
        keywords["default"] = list(default) if spec.repeat else default
    parse = spec.parse
    if parse is None and isinstance(default, (int, float)):
        parse = type(default)
    if parse is not None:
        keywords["type"] = parse
    if spec.choices is not None:
        keywords["choices"] = spec.choices
    if spec.metavar is not None:
        keywords["metavar"] = spec.metavar
    if spec.repeat:
        keywords["action"] = "append"
    return keywords


def argument_group(parser: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """The parser's --help section of that title, made on first use (several classes may share one)."""
    for group in parser._action_groups:
        if group.title == title:
            return group
    return parser.add_argument_group(title)


def add_options(parser: argparse.ArgumentParser, cls: type, group: str | None = None,
                skip: Sequence[str] = ()) -> None:
    """Add every flag field of `cls` (except the `skip` field names) to `parser`, in field order.

    A field's own `group` wins over `group`; neither: the parser's options section.
    """
    for field in dataclasses.fields(cls):
        spec = flag_of(field)
        if spec is None or field.name in skip:
            continue
        title = spec.group or group
        container: Any = argument_group(parser, title) if title else parser
        default = field_default(field)
        if spec.off is not None:
            container = container.add_mutually_exclusive_group()
        action = container.add_argument(*spec.names, **_argparse_keywords(spec, default))
        _DECLARED[action] = field
        if spec.off is not None:
            off = container.add_argument(spec.off.name, dest=spec.dest, action="store_const", const=spec.off.value,
                                         default=argparse.SUPPRESS, help=spec.off.help)
            _DECLARED[off] = field


def options_from(args: argparse.Namespace, cls: type[T], **given: Any) -> T:
    """`cls` from the parsed flags of its fields; `given` supplies the rest (positionals, nested options)."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        spec = flag_of(field)
        if spec is None or field.name in given:
            continue
        value = getattr(args, spec.dest)
        values[field.name] = tuple(value) if spec.repeat else value
    return cls(**values, **given)
