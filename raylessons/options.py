"""Command-line flags derived from dataclass fields: each option is written once, in its dataclass.

    @dataclass
    class Run:
        epochs: int = field(default=4, metadata={"help": "epochs of every trial"})

    add_dataclass_arguments(parser, Run)            # --epochs N (help, type and default from the field)
    run = from_args(Run, parser.parse_args(argv))   # Run(epochs=...), the field's default when not given

A field's flag is `--name-with-dashes`; its value is parsed by the field's type (int, float, str, bool as
`--x/--no-x`, `bool | str` as true/false or text, lists and dicts as JSON). A field's `metadata` may set
`help`, `flag` (another flag name), `parse` (a parser of the text), `choices`, `metavar`, `default_text` (what
a None default means) and `required` (the command line must give it even though Python has a default); a field
without a default is required.
Options not given on the command line are left out, so the dataclass's own defaults apply.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["add_dataclass_arguments", "from_args", "option_values", "parse_bool_or_text", "parse_json", "parse_size",
           "peek_option"]


def parse_json(text: str):
    """A value as JSON when it parses (`0.5`, `true`, `[1, 2]`, `{"a": 1}`), else the text itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_size(text: str) -> int | list[int]:
    """'128' -> 128; '360,480' or '360x480' -> [360, 480] (height, width)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or H,W with positive integers, got {text!r}") from None
    if len(sizes) not in (1, 2) or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"size must be N or H,W with positive integers, got {text!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def parse_bool_or_text(text: str) -> bool | str:
    """'true' / 'false' (any case) -> a bool; anything else (a path) stays text."""
    return {"true": True, "false": False}.get(text.strip().lower(), text)


def _members(hint) -> list:
    """The types of a union (`int | None` -> [int]); [hint] for any other type."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)]
    return [hint]


def _parser_of(hint) -> Callable[[str], Any] | None:
    """How a field's text is parsed; None for a plain bool (a --x/--no-x switch)."""
    members = _members(hint)
    if members == [bool]:
        return None
    if set(members) == {bool, str}:
        return parse_bool_or_text
    if len(members) == 1 and members[0] in (int, float, str):
        return members[0]
    return parse_json  # lists, dicts, anything else: JSON, or the text as it is


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _shown(default, parse) -> str:
    """A default as the command line would write it: JSON for JSON options, comma-separated for other lists."""
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, (list, tuple)) and parse is not parse_json:
        return ",".join(map(str, default))
    return json.dumps(default) if isinstance(default, (list, dict)) else str(default)


def _dest(cls: type, prefix: str | None) -> str:
    return f"{cls.__name__}." if prefix is None else prefix


def add_dataclass_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                            exclude: Iterable[str] = (), only: Iterable[str] | None = None,
                            defaults: dict | None = None, prefix: str | None = None) -> None:
    """Add a flag for every field of dataclass `cls` (but `exclude`, or only those in `only`).

    `defaults` replaces a field's default on the command line (a CLI's own default, e.g. a run name);
    values land in the namespace under `prefix + name` (default: `ClassName.name`), read by `option_values`.
    """
    hints = typing.get_type_hints(cls)
    exclude, defaults = set(exclude), dict(defaults or {})
    only = set(only) if only is not None else None
    for f in dataclasses.fields(cls):
        if f.name in exclude or (only is not None and f.name not in only):
            continue
        meta = f.metadata
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        default = defaults.get(f.name, _default(f))
        kwargs: dict[str, Any] = {"dest": _dest(cls, prefix) + f.name,
                                  "default": defaults.get(f.name, argparse.SUPPRESS),
                                  "required": default is dataclasses.MISSING or bool(meta.get("required"))}
        parse = meta.get("parse", _parser_of(hints[f.name]))
        if parse is None:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=parse, metavar=meta.get("metavar", flag.lstrip("-").replace("-", "_").upper()))
        if "choices" in meta:
            kwargs["choices"] = list(meta["choices"])
            kwargs.pop("metavar", None)
        help_text = meta.get("help", "")
        shown = _shown(default, parse) if default not in (dataclasses.MISSING, None) else meta.get("default_text")
        if shown and not kwargs["required"]:
            help_text = f"{help_text} (default: {shown})" if help_text else f"default: {shown}"
        kwargs["help"] = help_text.replace("%", "%%") or None
        parser.add_argument(flag, **kwargs)


def option_values(cls: type, args: argparse.Namespace, prefix: str | None = None) -> dict:
    """{field: value} of the options of `cls` that the command line gave (see `add_dataclass_arguments`)."""
    dest = _dest(cls, prefix)
    return {f.name: getattr(args, dest + f.name) for f in dataclasses.fields(cls) if hasattr(args, dest + f.name)}


def from_args(cls: type, args: argparse.Namespace, prefix: str | None = None, **defaults):
    """`cls` built from the command line's options; `defaults` fill fields it did not give (the command line wins)."""
    return cls(**{**defaults, **option_values(cls, args, prefix)})


def peek_option(argv: list[str], flag: str) -> str | None:
    """The value of `flag` in `argv` (`--task planet` or `--task=planet`) before the full parser exists, or None."""
    peek = _Peek(add_help=False)
    peek.add_argument(flag, dest="value")
    try:
        return peek.parse_known_args(argv)[0].value
    except ValueError:  # e.g. the flag without a value: the full parser says so
        return None


class _Peek(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)
