"""Replacing a handler or a subscriber of the application's bus for one test.

``with replace_handler(bus, ChargeCard, fake_charge):`` runs ``fake_charge`` instead of
the registered handler of ``ChargeCard`` inside the block, with the same name and the
same middleware around it (global and per-handler), and puts the original back when the
block ends, even if it raised. :func:`replace_subscriber` does the same for the
subscriber of an event type with a given name.

The bus has no public way to swap a handler yet: :func:`_table_of` is the one place
that reads the bus's private handler table, and the one place to change when it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from messagebus._bus import MessageBus
from messagebus._errors import NoHandlerError
from messagebus._handlers import inspect_handler
from messagebus._messages import Command, Event
from messagebus._registration import HandlerTable, Route

__all__ = ["replace_handler", "replace_subscriber"]


@contextmanager
def replace_handler(
    bus: MessageBus, command_type: type[Command[Any]], fn: Callable[..., Any]
) -> Iterator[None]:
    """Run ``fn`` as the handler of ``command_type`` inside the block; restore it after.

    ``fn`` takes ``(command)`` or ``(command, ctx)`` like any handler; it keeps the
    original's name (so idempotency keys, retry state and dead letters read the same)
    and its middleware.

    Raises:
        NoHandlerError: ``command_type`` has no handler on ``bus``.
        InvalidHandlerError: ``fn`` cannot be called as a handler.
    """
    table = _table_of(bus)
    original = table.commands.get(command_type)
    if original is None:
        raise NoHandlerError(
            f"no handler is registered for {command_type.__qualname__}: nothing to replace"
        )
    table.commands[command_type] = _swapped(table, original, fn)
    try:
        yield
    finally:
        table.commands[command_type] = original


@contextmanager
def replace_subscriber(
    bus: MessageBus, event_type: type[Event], name: str, fn: Callable[..., Any]
) -> Iterator[None]:
    """Run ``fn`` as the subscriber ``name`` of ``event_type`` inside the block; restore it.

    ``name`` is the subscriber's registered name (its function's qualified name unless
    ``name=`` was given). The others subscribers still run, in their order.

    Raises:
        NoHandlerError: ``event_type`` has no subscriber of that name on ``bus``.
        InvalidHandlerError: ``fn`` cannot be called as a subscriber.
    """
    table = _table_of(bus)
    originals = table.events.get(event_type, ())
    names = [route.handler.name for route in originals]
    if name not in names:
        raise NoHandlerError(
            f"{event_type.__qualname__} has no subscriber named {name!r} to replace; "
            f"its subscribers: {names}"
        )
    table.events[event_type] = tuple(
        _swapped(table, route, fn) if route.handler.name == name else route for route in originals
    )
    try:
        yield
    finally:
        table.events[event_type] = originals


def _swapped(table: HandlerTable, original: Route, fn: Callable[..., Any]) -> Route:
    info = original.handler
    replacement = inspect_handler(
        fn, info.message_type, info.kind, info.name, idempotent=info.idempotent
    )
    # PRIVATE: HandlerTable._route composes the chain as registration does; the lead's
    # public HandlerTable.replace (see the report) would make this one call.
    return table._route(replacement, original.middleware)


def _table_of(bus: MessageBus) -> HandlerTable:
    # PRIVATE: the bus's handler table. The dispatcher holds its dicts, so changing them
    # in place changes what the bus runs. To be replaced by a public bus.replace_handler.
    table: HandlerTable = vars(bus)["_table"]
    return table
