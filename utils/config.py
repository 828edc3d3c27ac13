"""Typed, nested stage configs: field docs, a strict loader, leaf overrides, and the CLI built from them.

Every stage has one config: a dataclass whose fields are options or nested dataclasses (groups), each
field followed by its docstring, as in nerfstudio's configs::

    @dataclass
    class FitConfig:
        train_iteration: int = 100
        \"\"\"Adam steps of the 3D motion optimisation.\"\"\"

The leaves are the stage's command-line options, named by the leaf's field name (unique within a
config), so ``--train_iteration`` sets ``config.fit.train_iteration``. From one such class this module
makes the parser (:func:`add_options`: help from the docstrings, defaults shown), applies what the user
gave (:func:`with_overrides`), and reads a saved config back (:func:`from_dict`: known names and
declared types only, never ``eval`` or pickles). A group may define ``validate(self)``, which
:func:`validate` calls for every group, outermost first.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal

from utils.errors import UserError


@dataclass(frozen=True)
class Leaf:
    """One option of a config: where it sits (``path`` of field names), its declared type and docstring."""

    path: tuple[str, ...]
    hint: Any
    doc: str

    @property
    def name(self) -> str:
        return self.path[-1]


# ----------------------------------------------------------------------------- introspection


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: the docstring written under it} for a dataclass (read from its source)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not is_dataclass(klass):
            continue
        try:
            tree = ast.parse(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[attr-defined]
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional(hint: Any) -> tuple[Any, bool]:
    """(the type inside ``X | None``, True) or (hint, False)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def leaves(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every option of config class ``cls``, depth first, in field order."""
    hints, docs = _hints(cls), field_docs(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            yield from leaves(hint, (*prefix, f.name))
        else:
            yield Leaf((*prefix, f.name), hint, docs.get(f.name, ""))


def get(config: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        config = getattr(config, name)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-ready dict of a config (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


# ----------------------------------------------------------------------------- values


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the declared type ``hint`` (JSON numbers and lists accepted); UserError if not."""
    inner, optional = _optional(hint)
    if value is None:
        if optional:
            return None
        raise UserError(f"option {name} must not be null", "give a value or leave it out")
    hint = inner
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(map(str, typing.get_args(hint)))
            raise UserError(f"option {name}={value!r} is not one of {choices}", f"use one of {choices}")
        return value
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"option {name} must be a list, got {value!r}", "fix the value")
        return tuple(coerce(name, v, item) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise UserError(f"option {name} must be true or false, got {value!r}", "fix the value")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"option {name} must be an integer, got {value!r}", "fix the value")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"option {name} must be a number, got {value!r}", "fix the value")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UserError(f"option {name} must be a string, got {value!r}", "fix the value")
        return value
    raise TypeError(f"unsupported config type {hint} for {name}")


def from_dict(cls: type, data: Any, what: str = "config") -> Any:
    """A ``cls`` from a nested plain dict (e.g. loaded JSON): unknown names and wrong types are refused."""
    if not isinstance(data, dict):
        raise UserError(f"the {what} must be a JSON object", "re-run the stage that wrote it")
    hints = _hints(cls)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise UserError(f"unknown field(s) in the {what}: {', '.join(unknown)}", "remove them or check the spelling")
    values = {}
    for name, value in data.items():
        hint = hints[name]
        values[name] = from_dict(hint, value, what) if is_dataclass(hint) else coerce(name, value, hint)
    return cls(**values)


def with_overrides(config: Any, values: dict[str, Any]) -> Any:
    """A copy of ``config`` with the leaves named in ``values`` ({leaf name: value}) replaced, type-checked."""
    by_name = {leaf.name: leaf for leaf in leaves(type(config))}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise UserError(f"unknown option(s): {', '.join(unknown)}", "check the spelling (see --help)")
    for name, value in values.items():
        leaf = by_name[name]
        config = _replace(config, leaf.path, coerce(f"--{name}", value, leaf.hint))
    return config


def _replace(config: Any, path: tuple[str, ...], value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(config, **{path[0]: value})
    return dataclasses.replace(config, **{path[0]: _replace(getattr(config, path[0]), path[1:], value)})


def validate(config: Any) -> None:
    """Call ``validate()`` of the config and of every nested group that has one."""
    check = getattr(config, "validate", None)
    if callable(check):
        check()
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            validate(value)


# ----------------------------------------------------------------------------- command line


def _flags(name: str) -> list[str]:
    """``--name`` and its dashed spelling (``--input_dir`` / ``--input-dir``); ``--inputdir`` for the scene."""
    flags = [f"--{name}"]
    if "_" in name:
        flags.append(f"--{name.replace('_', '-')}")
    if name == "input_dir":
        flags.append("--inputdir")  # the original's spelling
    return flags


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value))
    return "none" if value is None else str(value)


def _parse_type(hint: Any) -> Any:
    inner, _ = _optional(hint)
    return {bool: bool, int: int, float: float, str: str}.get(inner, str)


def add_options(
    parser: argparse.ArgumentParser, cls: type, defaults: dict[str, str] | None = None, required: tuple[str, ...] = ()
) -> None:
    """One option per leaf of ``cls``; argparse defaults stay None, so that only what was typed overrides.

    ``defaults`` maps a leaf name to the text shown as its default in the help (by default the class's
    own default); ``required`` names leaves that must be given.
    """
    base = cls(**{name: "" for name in required}) if required else cls()
    groups: dict[tuple[str, ...], Any] = {}
    for leaf in leaves(cls):
        where = leaf.path[:-1]
        if where not in groups:
            groups[where] = parser.add_argument_group(where[-1]) if where else parser
        shown = defaults[leaf.name] if defaults and leaf.name in defaults else _shown(get(base, leaf.path))
        text = leaf.doc if leaf.name in required else f"{leaf.doc} [default: {shown}]"
        kwargs: dict[str, Any] = {"dest": leaf.name, "default": None, "help": text.replace("%", "%%")}
        if leaf.name in required:
            kwargs["required"] = True
        inner, _ = _optional(leaf.hint)
        origin = typing.get_origin(inner)
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is Literal:
            kwargs["choices"] = typing.get_args(inner)
        elif origin is tuple:
            kwargs.update(type=_parse_type(typing.get_args(inner)[0]), nargs="+")
        else:
            kwargs["type"] = _parse_type(inner)
        groups[where].add_argument(*_flags(leaf.name), **kwargs)


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """{leaf name: value} of the options of ``cls`` the user typed."""
    names = {leaf.name for leaf in leaves(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def command_line(script: str, config: Any, base: Any, always: tuple[str, ...] = ()) -> str:
    """``python script --input_dir DIR`` plus every option whose value in ``config`` differs from ``base``'s
    (and those named in ``always``): the command that runs the stage again as it was run."""
    import shlex

    parts = ["python", script, "--input_dir", shlex.quote(str(getattr(config, "input_dir", "")))]
    for leaf in leaves(type(config)):
        if leaf.name == "input_dir":
            continue
        value, default = get(config, leaf.path), get(base, leaf.path)
        if value == default and leaf.name not in always:
            continue
        if isinstance(value, bool):
            parts.append(f"--{leaf.name}" if value else f"--no-{leaf.name}")
        elif isinstance(value, tuple):
            parts += [f"--{leaf.name}", *(shlex.quote(str(v)) for v in value)]
        else:
            parts += [f"--{leaf.name}", "none" if value is None else shlex.quote(str(value))]
    return " ".join(parts)
