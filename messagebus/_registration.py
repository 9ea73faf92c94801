"""The handler table: registration, its invariants, and each handler's composed chain.

Every invariant is checked here, once, when a handler is registered: one handler per
command type (:class:`~messagebus.DuplicateHandlerError`), unique subscriber names per
event type, message kinds, handler signatures, optional naming rules. Each handler's
middleware chain is composed here too, when it is registered or the global middleware
changes, never per message; the dispatch module only runs what it finds here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from messagebus._errors import (
    DuplicateHandlerError,
    DuplicateSubscriberError,
    InvalidMessageTypeError,
    MessageKindError,
    NoHandlerError,
)
from messagebus._handlers import HandlerInfo, inspect_handler
from messagebus._messages import Command, Event, Message
from messagebus._middleware import (
    CallNext,
    HandlerAwareMiddleware,
    Middleware,
    OnFailure,
    Recover,
    bind_all,
    link,
)
from messagebus._naming import lint_names
from messagebus._registry import MessageRegistry
from messagebus.transports._routing import Router

if TYPE_CHECKING:
    from messagebus._schedule import Scheduling

__all__ = ["AnyMiddleware", "HandlerTable", "Route"]

F = TypeVar("F", bound=Callable[..., Any])

AnyMiddleware = Middleware | HandlerAwareMiddleware


class Route:
    """One handler, ready to run: its info and its composed chain.

    The dispatch module runs a route one of four ways, cheapest first: ``direct`` (an
    async handler with nothing around it, awaited as it is), ``inline`` (a sync one,
    called as it is), ``first(envelope, then)`` (the outermost layer of the chain
    without an outermost :class:`~messagebus._middleware.OnFailure` layer), and, only if
    that raises, ``recover(envelope, error, inner)``. ``chain`` is the whole chain, for
    the paths where speed does not matter (follow-ups, concurrent fan-out, replay).
    """

    __slots__ = (
        "chain",
        "direct",
        "first",
        "handler",
        "inline",
        "inner",
        "middleware",
        "recover",
        "then",
    )

    def __init__(
        self,
        handler: HandlerInfo,
        middleware: tuple[AnyMiddleware, ...],
        layers: list[Middleware],
        terminal: CallNext,
    ) -> None:
        self.handler = handler
        self.middleware = middleware
        self.recover: Recover | None = None
        inner_layers = layers
        if layers and isinstance(layers[0], OnFailure):
            self.recover, inner_layers = layers[0].recover, layers[1:]
        self.chain = link(layers, terminal)
        self.inner = link(inner_layers, terminal)
        # The hot paths call the outermost layer themselves: one call fewer per run.
        self.first: Middleware | None = inner_layers[0] if inner_layers else None
        self.then: CallNext = link(inner_layers[1:], terminal)
        # When nothing stands around the handler, the bus calls it itself: an async one
        # is awaited with no wrapper coroutine, a sync one is called with none at all.
        plain = not handler.takes_context and not inner_layers
        self.direct: Callable[[Any], Awaitable[Any]] | None = (
            handler.fn if plain and handler.is_async else None
        )
        self.inline: Callable[[Any], Any] | None = (
            handler.fn if plain and not handler.is_async else None
        )


class HandlerTable:
    """The command handlers and event subscribers of one bus, with their chains.

    ``commands`` and ``events`` are changed in place only (the dispatcher holds them).

    Args:
        registry: the bus's message types; every handled type is added.
        middleware: the global middleware, first outermost.
        terminal: builds the innermost link of a chain (the call of the handler).
        router: the routing table on a transport (None: no transport), for what may be
            sent to another service.
        strict_names: refuse message types whose names read as the wrong kind.
        naming_allow: names that pass ``strict_names`` anyway.
    """

    def __init__(
        self,
        registry: MessageRegistry,
        middleware: Iterable[AnyMiddleware],
        terminal: Callable[[HandlerInfo], CallNext],
        router: Router | None,
        *,
        strict_names: bool = False,
        naming_allow: Collection[str] = (),
    ) -> None:
        self.registry = registry
        self.middleware: list[AnyMiddleware] = list(middleware)
        self._terminal = terminal
        self._router = router
        self._strict_names = strict_names
        self._naming_allow = frozenset(naming_allow)
        self.commands: dict[type[Message], Route] = {}
        self.events: dict[type[Message], tuple[Route, ...]] = {}
        # How ctx.schedule / uow.schedule schedule (set by the bus; None: they cannot).
        self.scheduling: Scheduling | None = None

    def add_handler(
        self,
        command_type: type[Command[Any]],
        fn: Callable[..., Any],
        *,
        name: str | None,
        middleware: Iterable[AnyMiddleware],
        idempotent: bool,
    ) -> None:
        """Register ``fn`` as the one handler of ``command_type`` (see ``bus.handler``)."""
        self.require_kind(command_type, Command, "handler", "subscriber")
        info = inspect_handler(fn, command_type, "command", name, idempotent=idempotent)
        existing = self.commands.get(command_type)
        if existing is not None:
            raise DuplicateHandlerError(
                f"command {command_type.__message_name__!r} already has its handler "
                f"{existing.handler.name}; a command has exactly one handler, so "
                f"{info.name} cannot be registered too"
            )
        self._check_names(command_type)
        self.registry.add(command_type)
        self.commands[command_type] = self._route(info, tuple(middleware))

    def add_subscriber(
        self,
        event_type: type[Event],
        fn: Callable[..., Any],
        *,
        name: str | None,
        middleware: Iterable[AnyMiddleware],
    ) -> None:
        """Subscribe ``fn`` to ``event_type`` (see ``bus.subscriber``)."""
        self.require_kind(event_type, Event, "subscriber", "handler")
        info = inspect_handler(fn, event_type, "event", name)
        routes = self.events.get(event_type, ())
        if any(route.handler.name == info.name for route in routes):
            raise DuplicateSubscriberError(
                f"event {event_type.__message_name__!r} already has a subscriber named "
                f"{info.name!r}; pass name= to tell them apart"
            )
        self._check_names(event_type)
        self.registry.add(event_type)
        self.events[event_type] = (*routes, self._route(info, tuple(middleware)))

    def add_middleware(self, middleware: AnyMiddleware) -> None:
        """Append ``middleware`` to the global list and rebuild every chain."""
        self.middleware.append(middleware)
        for message_type, route in self.commands.items():
            self.commands[message_type] = self._route(route.handler, route.middleware)
        for message_type, routes in self.events.items():
            self.events[message_type] = tuple(self._route(r.handler, r.middleware) for r in routes)

    def declare(self, message_types: Iterable[type[Message]]) -> None:
        """Add message types this service publishes or sends but does not handle."""
        for message_type in message_types:
            self.require_kind(message_type, Message, "declare", "declare")
            self._check_names(message_type)
            self.registry.add(message_type)

    def replace(
        self, message_type: type[Message], fn: Callable[..., Any], *, name: str | None = None
    ) -> Callable[[], None]:
        """Run ``fn`` instead of a registered handler; return the function that restores it.

        ``fn`` keeps the original's name, idempotency declaration and middleware: its
        chain is composed as registration composes one. For an event type, ``name``
        names the subscriber to replace (the others keep running, in their order).

        Raises:
            NoHandlerError: nothing of that type (and name) is registered.
            InvalidHandlerError: ``fn`` cannot be called as a handler.
        """
        command_route = self.commands.get(message_type)
        if command_route is not None:
            original = command_route
        else:
            names = [route.handler.name for route in self.events.get(message_type, ())]
            if name not in names:
                raise NoHandlerError(
                    f"{message_type.__qualname__} has no handler or subscriber named "
                    f"{name!r} to replace; registered: {names}"
                )
            original = self.route_named(message_type, name)
        info = original.handler
        stand_in = self._route(
            inspect_handler(fn, message_type, info.kind, info.name, idempotent=info.idempotent),
            original.middleware,
        )
        self._put(message_type, original, stand_in)
        return lambda: self._put(message_type, stand_in, original)

    def _put(self, message_type: type[Message], old: Route, new: Route) -> None:
        if self.commands.get(message_type) is old:
            self.commands[message_type] = new
        else:
            self.events[message_type] = tuple(
                new if route is old else route for route in self.events[message_type]
            )

    def route_named(self, message_type: type[Message], name: str) -> Route:
        """Return the route of the handler ``name`` of ``message_type``.

        Raises:
            NoHandlerError: no handler of that name handles that type.
        """
        command_route = self.commands.get(message_type)
        routes = (
            (command_route,) if command_route is not None else self.events.get(message_type, ())
        )
        for route in routes:
            if route.handler.name == name:
                return route
        raise NoHandlerError(
            f"no handler named {name!r} handles {message_type.__message_name__!r} any more"
        )

    def check_sendable(self, command: object) -> None:
        """Raise what ``send`` would raise before running ``command``'s handler.

        Raises:
            NoHandlerError: no handler is registered for the command's type.
            MessageKindError: ``command`` is an Event, or not a message at all.
        """
        if type(command) not in self.commands and not (
            self._router is not None
            and isinstance(command, Command)
            and self._router.remote_queue(type(command)) is not None
        ):
            raise self.unsendable(command)

    def check_publishable(self, event: object) -> None:
        """Raise :class:`~messagebus.MessageKindError` unless ``event`` is an Event."""
        if not isinstance(event, Event):
            if isinstance(event, Command):
                raise MessageKindError(
                    f"{type(event).__qualname__} is a command: send it with bus.send(); "
                    "publish() is for events"
                )
            raise MessageKindError(f"publish() takes an Event, not {event!r}")

    def unsendable(self, command: object) -> Exception:
        """Return the error for sending ``command``, which has no handler here."""
        if isinstance(command, Command):
            return NoHandlerError(
                f"no handler is registered for command {type(command).__message_name__!r} "
                f"({type(command).__qualname__}); register one with @bus.handler"
                + ("" if self._router is None else ", or route it to its owner's queue")
            )
        if isinstance(command, Event):
            return MessageKindError(
                f"{type(command).__qualname__} is an event: publish it with bus.publish(); "
                "send() is for commands"
            )
        return MessageKindError(f"send() takes a Command, not {command!r}")

    def require_kind(
        self, message_type: object, kind: type[Message], method: str, other: str
    ) -> None:
        """Raise :class:`~messagebus.InvalidMessageTypeError` unless a ``kind`` subclass."""
        if not (isinstance(message_type, type) and issubclass(message_type, kind)):
            word = kind.__name__
            raise InvalidMessageTypeError(
                f"bus.{method}() takes a {word} type, not {message_type!r}"
                + (
                    f": use bus.{other}() for it"
                    if isinstance(message_type, type) and issubclass(message_type, Message)
                    else ""
                )
            )

    def _check_names(self, message_type: type[Message]) -> None:
        if self._strict_names:
            findings = lint_names([message_type], allow=self._naming_allow)
            if findings:
                raise InvalidMessageTypeError(
                    "; ".join(str(finding) for finding in findings)
                    + " (strict_names; add the name to naming_allow if the heuristic is wrong)"
                )

    def _route(self, info: HandlerInfo, middleware: tuple[AnyMiddleware, ...]) -> Route:
        layers = (*self.middleware, *middleware)
        info = attrs.evolve(info, middleware=layers)
        return Route(info, middleware, bind_all(layers, info), self._terminal(info))
