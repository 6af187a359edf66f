"""The options `ask` and `batch` share, declared once: generated from the settings table.

`@run_options()` adds one Typer option per setting that has flags (config.SPECS) to a command's
signature, and hands the command their values as one `flags` dict for `Settings.resolve`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, Optional, TypeVar

import typer

from rlmcli.cli import completion
from rlmcli.config import SPECS, Spec

F = TypeVar("F", bound=Callable[..., Any])


def _option(spec: Spec, flags: tuple[str, ...], help_text: str) -> tuple[Any, Any]:
    """(annotation, default) of the Typer parameter for one setting."""
    if spec.negate:
        return bool, typer.Option(False, *flags, help=help_text)
    kind = float if spec.kind is float else spec.kind
    default = f" Default: {spec.default}." if spec.default is not None and not isinstance(spec.default, bool) else ""
    choices = {"sandbox": completion.sandbox_levels, "ocr": completion.ocr_modes}.get(spec.name)
    return Optional[kind], typer.Option(None, *flags, help=help_text + default, autocompletion=choices)


def run_options(rename: dict[str, tuple[tuple[str, ...], str]] | None = None,
                extra_help: dict[str, str] | None = None) -> Callable[[F], F]:
    """Add the shared run options to a command whose last parameter is `flags: dict`.

    `rename` maps a setting to other flags and help (batch calls the per-job cost --job-max-cost);
    `extra_help` appends to a setting's help (batch: timeout is per job)."""
    rename = rename or {}
    extra_help = extra_help or {}

    def decorate(fn: F) -> F:
        hints = typing.get_type_hints(fn)  # real types: the wrapper's globals are not fn's
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name != "flags"]
        shared = [s for s in SPECS if s.flags]
        added, annotations = [], {p.name: p.annotation for p in own}
        for spec in shared:
            flags, help_text = rename.get(spec.name, (spec.flags, spec.help))
            annotation, default = _option(spec, flags, help_text + extra_help.get(spec.name, ""))
            added.append(inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                           annotation=annotation))
            annotations[spec.name] = annotation

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            flags: dict[str, Any] = {}
            for spec in shared:
                value = kwargs.pop(spec.name, None)
                flags[spec.name] = (False if value else None) if spec.negate else value
            return fn(*args, flags=flags, **kwargs)

        del wrapper.__wrapped__  # Typer must see the new signature, not the function's own
        wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = annotations
        return wrapper  # type: ignore[return-value]

    return decorate
