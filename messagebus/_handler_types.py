"""The shapes a handler may have, as a type checker sees them (no run-time role).

Registration is checked statically by these types and at run time by
:func:`messagebus._handlers.inspect_handler`; they describe the same four forms, ``M``
being the message type registered:

- ``async def fn(message: M) -> R`` and ``async def fn(message: M, ctx: Context[M]) -> R``;
- ``def fn(message: M) -> R`` and ``def fn(message: M, ctx: Context[M]) -> R``, plain
  functions run inline (one returning an awaitable of ``R`` is awaited);

and any callable object, bound method or partial of those shapes. Parameters are
contravariant: a function taking a base class of ``M``, or ``Context[Message]``, fits
too. For a command type ``C`` declared ``Command[R]`` the result must be ``R`` (or a
subtype); a subscriber's result is ignored, so it may be anything.

The result type of a command class is read through :class:`CommandClass`: a protocol
that every ``Command[R]`` subclass matches through a declaration that exists for type
checkers only (``Command.__command_types__``), yielding both the class itself and
``R``. A signature ``(command_type: type[C])`` alone cannot name ``R``, and one
``(command_type: type[Command[R]])`` forgets ``C``; the protocol gives both, exactly (it
is invariant), so a handler returning the wrong type is reported at its own argument.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeAlias, TypeVar, overload

from messagebus._context import Context
from messagebus._messages import Command, Event

__all__ = [
    "CommandClass",
    "CommandHandler",
    "EventSubscriber",
    "HandlerDecorator",
    "SubscriberDecorator",
]

C = TypeVar("C", bound=Command[Any])
E = TypeVar("E", bound=Event)
R = TypeVar("R")
T = TypeVar("T")


class CommandClass(Protocol[C, R]):
    """A command class ``C`` declared ``Command[R]``: what ``bus.handler`` takes."""

    def __command_types__(self) -> Callable[[tuple[C, R]], tuple[C, R]]: ...


CommandHandler: TypeAlias = (
    Callable[[C], Awaitable[R]]
    | Callable[[C, Context[C]], Awaitable[R]]
    | Callable[[C], R]
    | Callable[[C, Context[C]], R]
)
"""A handler of command type ``C`` whose result is ``R``: any of the four forms."""

EventSubscriber: TypeAlias = Callable[[E], object] | Callable[[E, Context[E]], object]
"""A subscriber of event type ``E``, sync or async (its result is ignored)."""


class HandlerDecorator(Protocol[C, R]):
    """What ``@bus.handler(C)`` is: it takes a handler of ``C`` and returns it unchanged."""

    @overload
    def __call__(self, fn: Callable[[C], Awaitable[R]], /) -> Callable[[C], Awaitable[R]]: ...

    @overload
    def __call__(
        self, fn: Callable[[C, Context[C]], Awaitable[R]], /
    ) -> Callable[[C, Context[C]], Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[[C], R], /) -> Callable[[C], R]: ...

    @overload
    def __call__(self, fn: Callable[[C, Context[C]], R], /) -> Callable[[C, Context[C]], R]: ...


class SubscriberDecorator(Protocol[E]):
    """What ``@bus.subscriber(E)`` is: it takes a subscriber of ``E`` and returns it."""

    @overload
    def __call__(self, fn: Callable[[E], T], /) -> Callable[[E], T]: ...

    @overload
    def __call__(self, fn: Callable[[E, Context[E]], T], /) -> Callable[[E, Context[E]], T]: ...
