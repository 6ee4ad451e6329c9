"""Command-line flags made from the run settings model, so a new setting needs no CLI code.

Every field of :class:`RunConfig` and of each engine's options becomes a flag
whose default is "not given" (None): the model, not the CLI, supplies defaults
and validation.  The flag's help is the field's description with its default.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer
from pydantic.fields import FieldInfo

from joulescore.model.config import RunConfig, engine_option_names, flag_of
from joulescore.model.options import ENGINE_OPTIONS


def _plain_type(annotation: Any) -> Any:
    """The CLI type of a field: str for literals, the inner type of Optional."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain_type(args[0])
    if origin is typing.Literal:
        return str
    return annotation if annotation in (str, int, float, bool) else str


def _flags(name: str, info: FieldInfo) -> list[str]:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    flags = extra.get("flags")
    return [str(f) for f in flags] if isinstance(flags, list) else [flag_of(name)]


def _option(name: str, info: FieldInfo) -> inspect.Parameter:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    # "text": the flag takes text the model parses itself (``--precision 2%``)
    kind = str if extra.get("text") else _plain_type(info.annotation)
    flags = _flags(name, info)
    if kind is bool:
        flags = [f"{flags[0]}/--no-{flags[0][2:]}"]
    # a default_factory (a threshold read from the environment) says its default in the description
    default = None if info.default_factory is not None else info.get_default(call_default_factory=False)
    help_text = (info.description or "") + ("" if default is None else f" [default: {default}]")
    option = typer.Option(*flags, help=help_text, show_default=False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[kind], option])


def setting_params(skip: tuple[str, ...] = ()) -> list[inspect.Parameter]:
    """One keyword parameter per run setting and engine option (engine options last)."""
    params = [_option(n, f) for n, f in RunConfig.model_fields.items() if n != "engine" and n not in skip]
    for name in engine_option_names():
        info = next(o.model_fields[name] for o in ENGINE_OPTIONS.values() if name in o.model_fields)
        params.append(_option(name, info))
    return params


def settings_command(func: Callable[..., Any], extra: list[inspect.Parameter],
                     skip: tuple[str, ...] = ()) -> Callable[..., Any]:
    """``func(settings: dict, **extra)`` as a typer command taking every setting as a flag."""

    def command(**kwargs: Any) -> Any:
        names = {p.name for p in extra}
        settings = {k: v for k, v in kwargs.items() if k not in names and v is not None}
        return func(settings, **{k: v for k, v in kwargs.items() if k in names})

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]  # typer reads this signature
        [*setting_params(skip), *extra])
    command.__doc__ = func.__doc__
    command.__name__ = func.__name__
    return command


def extra_param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    """A command-only parameter (not a run setting), e.g. ``--db`` or ``--repeats``."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
