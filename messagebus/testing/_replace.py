"""Replacing a handler or a subscriber of the application's bus for one test.

``with replace_handler(bus, ChargeCard, fake_charge):`` runs ``fake_charge`` instead of
the registered handler of ``ChargeCard`` inside the block, with the same name and the
same middleware around it (global and per-handler), and puts the original back when the
block ends, even if it raised. :func:`replace_subscriber` does the same for the
subscriber of an event type with a given name.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from messagebus._bus import MessageBus
from messagebus._handler_types import CommandClass, CommandHandler, EventSubscriber
from messagebus._messages import Command, Event

__all__ = ["replace_handler", "replace_subscriber"]

C = TypeVar("C", bound=Command[Any])
E = TypeVar("E", bound=Event)
R = TypeVar("R")


@contextmanager
def replace_handler(
    bus: MessageBus, command_type: CommandClass[C, R], fn: CommandHandler[C, R]
) -> Iterator[None]:
    """Run ``fn`` as the handler of ``command_type`` inside the block; restore it after.

    ``fn`` takes ``(command)`` or ``(command, ctx)`` and returns the command's result
    type, as ``bus.handler`` requires (a type checker checks it); it keeps the
    original's name (so idempotency keys, retry state and dead letters read the same)
    and its middleware.

    Raises:
        NoHandlerError: ``command_type`` has no handler on ``bus``.
        InvalidHandlerError: ``fn`` cannot be called as a handler.
    """
    restore = bus.replace_handler(command_type, fn)
    try:
        yield
    finally:
        restore()


@contextmanager
def replace_subscriber(
    bus: MessageBus, event_type: type[E], name: str, fn: EventSubscriber[E]
) -> Iterator[None]:
    """Run ``fn`` as the subscriber ``name`` of ``event_type`` inside the block; restore it.

    ``name`` is the subscriber's registered name (its function's qualified name unless
    ``name=`` was given). The other subscribers still run, in their order.

    Raises:
        NoHandlerError: ``event_type`` has no subscriber of that name on ``bus``.
        InvalidHandlerError: ``fn`` cannot be called as a subscriber.
    """
    restore = bus.replace_handler(event_type, fn, name=name)
    try:
        yield
    finally:
        restore()
