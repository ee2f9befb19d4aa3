"""Flags made from the config dataclasses: a field added to a dataclass in `gnnrl.config` is a CLI flag with
its type, choices (`Literal`), default and help (the field's docstring) without a line here or in a command."""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import itertools
import textwrap
import types
import typing
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

T = TypeVar("T")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (`x: int = 1` then `\"\"\"what x is\"\"\"`)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):  # no source (a frozen app): flags without help
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for a, b in itertools.pairwise(body):
        if (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name) and isinstance(b, ast.Expr)
                and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str)):
            docs[a.target.id] = " ".join(b.value.value.split())
    return docs


def _first_sentence(doc: str) -> str:
    """What fits a --help line: the docstring up to its first full stop (argparse's % signs escaped)."""
    head = doc.split(". ")[0].rstrip(".")
    return head.replace("%", "%%")


def _kind(hint: Any) -> tuple[Any, dict[str, Any]] | None:
    """argparse `type` and extra keywords for a field's type; None for one a flag cannot carry (a nested config)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return type(args[0]), {"choices": args}
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # `int | None`: the flag is optional
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0]) if len(rest) == 1 else None
    if origin is tuple and args and args[-1] is Ellipsis:
        return args[0], {"nargs": "+"}
    if hint is bool:
        return bool, {}
    if hint in (int, float, str):
        return hint, {}
    return None


def dest_of(name: str, prefix: str) -> str:
    """The argparse destination of a field's flag (`prefix` keeps fields of two configs apart)."""
    return (prefix + name).replace("-", "_")


def add_config_flags(p: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, prefix: str = "",
                     skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                     help: dict[str, str] | None = None, defaults: Any = None, bare: bool = False) -> None:
    """A `--PREFIX-FIELD` flag for every field of dataclass `cls` (or those in `only`) that has none yet on `p` (a
    flag defined by hand with the same destination wins): type and choices from its annotation, default from
    `defaults` (else `cls()`), help from `help` or else the field's docstring. `bare`: the flag without the
    prefix (`--head` for `DDPGConfig.head`), the destination still with it."""
    hints = typing.get_type_hints(cls)
    docs = {**field_docs(cls), **(help or {})}
    taken = {a.dest for a in p._actions}
    defaults = defaults if defaults is not None else cls()
    for f in fields(cls):
        dest = dest_of(f.name, prefix)
        if (f.name in skip or (only is not None and f.name not in only) or dest in taken
                or is_dataclass(hints[f.name])):
            continue
        kind = _kind(hints[f.name])
        if kind is None:
            continue
        typ, extra = kind
        default = getattr(defaults, f.name)
        flag = "--" + (f.name if bare else prefix + f.name).replace("_", "-")
        doc = _first_sentence(docs.get(f.name, ""))
        if typ is bool:
            p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default, help=doc)
        else:
            p.add_argument(flag, dest=dest, type=typ, default=default, help=doc,
                           metavar=f.name.upper() if "choices" not in extra else None, **extra)


def config_from(args: argparse.Namespace, base: T, prefix: str = "", skip: tuple[str, ...] = (), **given: Any) -> T:
    """`base` (a config dataclass) with every field whose flag is on `args` set from it (but those in `skip`), then
    `given` on top."""
    changes = {}
    for f in fields(base):  # type: ignore[arg-type]
        dest = dest_of(f.name, prefix)
        if f.name not in skip and hasattr(args, dest) and not is_dataclass(getattr(base, f.name)):
            value = getattr(args, dest)
            changes[f.name] = tuple(value) if isinstance(value, list) else value
    return replace(base, **{**changes, **given})  # type: ignore[type-var]
