"""Finding the application's bus from the command line: ``--app module:attribute``."""

from __future__ import annotations

import importlib
from typing import Any

import click

from messagebus._bus import MessageBus

__all__ = ["APP", "load_bus"]

APP = click.option(
    "--app",
    required=True,
    help="the application's bus as module:attribute (a MessageBus, or a function returning one)",
)


def load_bus(spec: str) -> MessageBus:
    """Import ``module:attribute`` and return the bus it names (or a factory makes)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter(f"{spec!r}: expected module:attribute", param_hint="--app")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(f"cannot import {module_name}: {exc}", param_hint="--app") from exc
    for part in attribute.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise click.BadParameter(f"{spec!r}: no attribute {part!r}", param_hint="--app")
    if not isinstance(found, MessageBus) and callable(found):
        found = found()
    if not isinstance(found, MessageBus):
        raise click.BadParameter(f"{spec!r} is not a MessageBus", param_hint="--app")
    return found
