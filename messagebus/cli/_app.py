"""Finding the application's objects from the command line: ``module:attribute``.

Every command that needs the application takes it as ``--app module:attribute``. The
module is imported from the current directory first, as uvicorn, Celery and FastStream
do (``messagebus worker --app myapp:bus`` in the directory holding ``myapp.py``),
then from the installed packages.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

import click

from messagebus._bus import MessageBus
from messagebus._config import APP_VARIABLE

__all__ = ["APP", "load_bus", "load_object"]

APP = click.option(
    "--app",
    required=True,
    envvar=APP_VARIABLE,
    show_envvar=True,
    metavar="MODULE:ATTRIBUTE",
    help="the application's bus (a MessageBus, or a function returning one); the module "
    "is imported from the current directory first",
)


def load_object(spec: str, param_hint: str) -> Any:
    """Import ``module:attribute`` (dots allowed in the attribute) and return what it names.

    Raises:
        click.BadParameter: ``spec`` is malformed, or names nothing importable.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{spec!r}: expected module:attribute", param_hint=param_hint)
    _import_from_here()
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name}: {exc}", param_hint=param_hint
        ) from exc
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise click.BadParameter(f"{spec!r}: no attribute {part!r}", param_hint=param_hint)
    return found


def _import_from_here() -> None:
    # A console script's sys.path starts with the script's directory, not the current
    # one (``python -m`` and ``python -c`` put it there): add it, once, in front.
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def load_bus(spec: str, param_hint: str = "--app") -> MessageBus:
    """Import ``module:attribute`` and return the bus it names (or a factory makes)."""
    found = load_object(spec, param_hint)
    if not isinstance(found, MessageBus) and callable(found):
        needed = _required_parameters(found)
        if needed:
            raise click.BadParameter(
                f"{spec!r} is a function that needs arguments ({', '.join(needed)}); name a "
                "MessageBus or a function that makes one without arguments",
                param_hint=param_hint,
            )
        found = found()
    if not isinstance(found, MessageBus):
        raise click.BadParameter(f"{spec!r} is not a MessageBus", param_hint=param_hint)
    return found


def _required_parameters(factory: Any) -> list[str]:
    """Return the names of the parameters ``factory()`` would miss; [] if unknown."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or a C callable without a signature
        return []
    return [
        name
        for name, parameter in signature.parameters.items()
        if parameter.default is inspect.Parameter.empty
        and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
