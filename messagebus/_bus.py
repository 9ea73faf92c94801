"""The message bus: registration, dispatch and lifecycle."""

from __future__ import annotations

from collections import deque
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio
import anyio.abc
import attrs
import structlog

from messagebus._codec import WireCodec
from messagebus._context import Context, Frame, current_frame, envelope_of
from messagebus._envelope import Envelope
from messagebus._errors import (
    BusStateError,
    ConfigurationError,
    DeadLetterNotFoundError,
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
from messagebus._redelivery import HANDLER_HEADER
from messagebus._registry import MessageRegistry
from messagebus._unit_of_work import UnitOfWork, enter, leave
from messagebus.dead_letters import DeadLetter, DeadLetterStore, InMemoryDeadLetterStore
from messagebus.transports._protocol import Outgoing, QueueSpec, Topology, Transport
from messagebus.transports._routing import Destination, Router, outgoing

if TYPE_CHECKING:
    from messagebus.eventlog import EventLog
    from messagebus.outbox import OutboxMessage, OutboxRelay, OutboxStore

__all__ = ["Fanout", "MessageBus"]

R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

Fanout = Literal["sequential", "concurrent"]

# Bound once: calling ``current_frame.set`` makes a new method object on every call, a
# measurable share of a dispatch (instruction counts in benchmarks/dispatch.py's notes).
_get_frame = current_frame.get
_set_frame = current_frame.set
_reset_frame = current_frame.reset
AnyMiddleware = Middleware | HandlerAwareMiddleware


# Result types of sync handlers known not to be awaitable. The hot paths test
# ``type(result) not in _plain_results`` inline before calling _is_awaitable: asking the
# type itself costs more than the handler call (a failed attribute lookup on a type
# raises and swallows an AttributeError), and so does a Python-level call.
_plain_results: set[type] = {type(None)}


def _is_awaitable(result: object) -> bool:
    """Tell whether a sync handler's result must be awaited.

    A plain function that returns an awaitable is an async handler in disguise (a lambda
    around a coroutine function, say): the bus finishes what it started.
    """
    kind = type(result)
    if hasattr(kind, "__await__"):
        return True
    _plain_results.add(kind)
    return False


def _envelope_of_run(frame: Frame) -> Envelope[Message]:
    """Return the envelope the handler last saw: its context's, else the frame's."""
    context: Context[Message] | None = frame[3]
    return context.envelope if context is not None else envelope_of(frame)


class _Route:
    """One handler, ready to run: its info and its composed chain."""

    __slots__ = ("direct", "fast", "handler", "inline", "inner", "invoke", "middleware", "recover")

    def __init__(
        self,
        handler: HandlerInfo,
        *,
        middleware: tuple[AnyMiddleware, ...],
        invoke: Callable[[Frame], Awaitable[Any]],
        fast: Callable[[Frame], Awaitable[Any]],
        inner: CallNext,
        recover: Recover | None,
        wrapped: bool,
    ) -> None:
        self.handler = handler
        self.middleware = middleware
        # The whole chain, for the paths where speed does not matter (follow-ups,
        # concurrent fan-out, replay).
        self.invoke = invoke
        # The hot paths run ``fast`` (the chain without an outermost OnFailure layer)
        # and, only if it raises, ``recover`` with ``inner`` as its call_next.
        self.fast = fast
        self.inner = inner
        self.recover = recover
        # When nothing stands around the handler, the bus calls it itself: an async one
        # is awaited with no wrapper coroutine, a sync one is called with none at all.
        plain = not handler.takes_context and not wrapped
        self.direct = handler.fn if plain and handler.is_async else None
        self.inline = handler.fn if plain and not handler.is_async else None


class MessageBus:
    """Routes each command to its one handler and each event to all its subscribers.

    Handlers are ``async def handler(message)`` or ``async def handler(message, ctx)``,
    where ``ctx`` is a :class:`~messagebus.Context`. Plain ``def`` handlers work too and
    run inline on the event loop thread, blocking it while they run: keep them short,
    or move blocking work to a thread with :func:`anyio.to_thread.run_sync`.

    Args:
        middleware: global middleware, wrapped around every handler, first outermost.
        fanout: ``"sequential"`` (the default) runs an event's subscribers one after
            another in registration order; ``"concurrent"`` runs them in parallel tasks.
            Either way each subscriber is isolated: its failure is logged and recorded
            as a dead letter, and the others and the publisher carry on.
        dead_letters: where failed subscriber runs are recorded; in memory by default.
        logger: a structlog logger for the bus's own log lines (``structlog.get_logger
            ("messagebus")`` by default). The bus never configures structlog.
        source: the CloudEvents ``source`` of the messages this service produces, such
            as ``"/blog"``; used by :attr:`codec`.
        strict_names: refuse, at registration, message types whose names read as the
            wrong kind (see :mod:`messagebus._naming`: events past tense, commands
            imperative); names in ``naming_allow`` pass.
        transport: where messages travel between services (see
            :mod:`messagebus.transports`); None (the default) keeps everything in this
            process. With a transport, :meth:`publish` and follow-ups hand messages to
            it, and a :class:`~messagebus.Worker` runs this service's handlers on what
            arrives in its queue; :meth:`send` still runs a local handler here and
            returns its result. The bus enters the transport when it is entered. A
            URL (``"memory://"``, ``"sqs://eu-west-1?prefix=prod-"``) is given to
            :func:`~messagebus.transports.transport_from_url`.
        service: this service's name, which names its input queue on the transport
            (see :mod:`messagebus.transports._routing` for the routing rules).
        routes: the queues (owning services) of command types handled elsewhere.
        queue: settings of the service's input queue (visibility timeout, FIFO, dead
            letter after N receives); its name must be ``service``.
        outbox: the transactional outbox (:mod:`messagebus.outbox`): enables
            :meth:`unit_of_work`, and its relay (:attr:`relay`) runs while the bus runs,
            delivering committed messages to the transport, or here without one.
        event_log: an append-only log (:mod:`messagebus.eventlog`) that every event
            this service publishes is appended to before it is delivered (in a unit of
            work, in its transaction); delivered envelopes carry its stream sequence.
        outgoing: functions ``(envelope) -> envelope`` applied, in order, to every
            envelope as it leaves the process (handed to the transport, or written to
            the outbox), for metadata such as a trace context header.

    Attributes:
        registry: the message types this bus knows (every handled type is added).
        codec: the wire codec for those types (CloudEvents JSON); dead letters keep
            their envelope in this form, and transports send it.
        dead_letters: the dead letter store.
    """

    def __init__(
        self,
        *,
        middleware: Iterable[AnyMiddleware] = (),
        fanout: Fanout = "sequential",
        dead_letters: DeadLetterStore | None = None,
        logger: Any = None,
        source: str = "/messagebus",
        strict_names: bool = False,
        naming_allow: Collection[str] = (),
        transport: Transport | str | None = None,
        service: str = "messagebus",
        routes: Mapping[type[Command[Any]], str] | None = None,
        queue: QueueSpec | None = None,
        outbox: OutboxStore | None = None,
        event_log: EventLog | None = None,
        outgoing: Iterable[Callable[[Envelope[Message]], Envelope[Message]]] = (),
    ) -> None:
        if fanout not in ("sequential", "concurrent"):
            raise ValueError(f"fanout must be 'sequential' or 'concurrent', not {fanout!r}")
        self._strict_names = strict_names
        self._naming_allow = frozenset(naming_allow)
        self.registry = MessageRegistry()
        self.codec = WireCodec(self.registry, source=source)
        self.dead_letters: DeadLetterStore = (
            InMemoryDeadLetterStore() if dead_letters is None else dead_letters
        )
        self._middleware: list[AnyMiddleware] = list(middleware)
        self._concurrent = fanout == "concurrent"
        self._log = structlog.get_logger("messagebus") if logger is None else logger
        self._commands: dict[type[Message], _Route] = {}
        self._events: dict[type[Message], tuple[_Route, ...]] = {}
        self._services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._resources = AsyncExitStack()
        self.router = Router(service, routes or {}, queue)
        if isinstance(transport, str):
            from messagebus.transports._url import transport_from_url  # noqa: PLC0415

            transport = transport_from_url(transport)
        self.transport: Transport | None = transport
        if transport is not None:
            # Instance attributes, so the in-process paths pay nothing for the check.
            self.publish = self._publish_by_drain  # type: ignore[method-assign]
            self._drain = self._forward  # type: ignore[method-assign]
        self._outgoing = tuple(outgoing)
        self.outbox = outbox
        self.relay: OutboxRelay | None = None
        if outbox is not None:
            from messagebus._outbox_delivery import deliver_rows  # noqa: PLC0415  # import cycle
            from messagebus.outbox import OutboxRelay  # noqa: PLC0415

            async def deliver(rows: Sequence[OutboxMessage]) -> Sequence[Any]:
                return await deliver_rows(self, rows)

            self.relay = OutboxRelay(outbox, deliver)
            outbox.on_commit(self.relay.notify)
            self._add_service(self.relay.run)
        self.event_log = event_log
        if event_log is not None:
            if outbox is not None and not hasattr(event_log, "append_in"):
                raise ConfigurationError(
                    "with an outbox, the event log must be an SQL log on the outbox's "
                    "database: units of work append to it in their own transaction"
                )
            if getattr(event_log, "_codec", True) is None:
                event_log.codec = self.codec  # type: ignore[attr-defined]  # see UsesCodec
            self._log_events(event_log)

    # -- registration -------------------------------------------------------------------

    @overload
    def handler(
        self,
        command_type: type[Command[Any]],
        fn: None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> Callable[[F], F]: ...

    @overload
    def handler(
        self,
        command_type: type[Command[Any]],
        fn: F,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> F: ...

    def handler(
        self,
        command_type: type[Command[Any]],
        fn: F | None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> F | Callable[[F], F]:
        """Register ``fn`` as the one handler of ``command_type``.

        Use as a decorator, ``@bus.handler(PublishPost)``, or call it,
        ``bus.handler(PublishPost, publish_post)``. ``middleware`` wraps this handler
        only, inside the global middleware. ``idempotent=True`` declares that running the
        handler twice on one message is harmless (it silences the warning about retrying
        commands). Returns ``fn`` unchanged.

        Raises:
            DuplicateHandlerError: ``command_type`` already has a handler.
            InvalidMessageTypeError: ``command_type`` is not a Command subclass.
            InvalidHandlerError: ``fn`` cannot be called as ``(message)`` or
                ``(message, ctx)``.
        """
        self._require_kind(command_type, Command, "handler", "subscriber")

        def register(fn: F) -> F:
            info = inspect_handler(fn, command_type, "command", name, idempotent=idempotent)
            existing = self._commands.get(command_type)
            if existing is not None:
                raise DuplicateHandlerError(
                    f"command {command_type.__message_name__!r} already has its handler "
                    f"{existing.handler.name}; a command has exactly one handler, so "
                    f"{info.name} cannot be registered too"
                )
            self._check_names(command_type)
            self.registry.add(command_type)
            self._commands[command_type] = self._route(info, tuple(middleware))
            return fn

        return register if fn is None else register(fn)

    @overload
    def subscriber(
        self,
        event_type: type[Event],
        fn: None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> Callable[[F], F]: ...

    @overload
    def subscriber(
        self,
        event_type: type[Event],
        fn: F,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> F: ...

    def subscriber(
        self,
        event_type: type[Event],
        fn: F | None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> F | Callable[[F], F]:
        """Subscribe ``fn`` to ``event_type``; an event type may have any number.

        Use as a decorator, ``@bus.subscriber(PostPublished)``, or call it,
        ``bus.subscriber(PostPublished, notify_followers)``. ``name`` identifies the
        subscriber in idempotency records, retries, dead letters and logs; it defaults
        to ``"<module>.<qualified name>"`` of ``fn``. Returns ``fn`` unchanged.

        Raises:
            DuplicateSubscriberError: ``event_type`` has a subscriber of that name.
            InvalidMessageTypeError: ``event_type`` is not an Event subclass.
            InvalidHandlerError: ``fn`` cannot be called as ``(message)`` or
                ``(message, ctx)``.
        """
        self._require_kind(event_type, Event, "subscriber", "handler")

        def register(fn: F) -> F:
            info = inspect_handler(fn, event_type, "event", name)
            routes = self._events.get(event_type, ())
            if any(route.handler.name == info.name for route in routes):
                raise DuplicateSubscriberError(
                    f"event {event_type.__message_name__!r} already has a subscriber named "
                    f"{info.name!r}; pass name= to tell them apart"
                )
            self._check_names(event_type)
            self.registry.add(event_type)
            self._events[event_type] = (*routes, self._route(info, tuple(middleware)))
            return fn

        return register if fn is None else register(fn)

    def add_middleware(self, middleware: AnyMiddleware) -> None:
        """Append ``middleware`` to the global list (innermost of the globals so far).

        Every handler's chain is rebuilt now, so this belongs to start-up code.
        """
        self._middleware.append(middleware)
        self._commands = {
            message_type: self._route(route.handler, route.middleware)
            for message_type, route in self._commands.items()
        }
        self._events = {
            message_type: tuple(self._route(r.handler, r.middleware) for r in routes)
            for message_type, routes in self._events.items()
        }

    def _require_kind(
        self, message_type: object, kind: type[Message], method: str, other: str
    ) -> None:
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

    def _route(self, info: HandlerInfo, middleware: tuple[AnyMiddleware, ...]) -> _Route:
        layers = (*self._middleware, *middleware)
        info = attrs.evolve(info, middleware=layers)
        terminal = self._terminal(info)
        bound = bind_all(layers, info)
        recover: Recover | None = None
        inner_layers = bound
        if bound and isinstance(bound[0], OnFailure):
            recover, inner_layers = bound[0].recover, bound[1:]
        chain, inner = link(bound, terminal), link(inner_layers, terminal)

        def invoke(frame: Frame) -> Awaitable[Any]:
            return chain(envelope_of(frame))

        def fast(frame: Frame) -> Awaitable[Any]:
            return inner(envelope_of(frame))

        return _Route(
            info,
            middleware=middleware,
            invoke=invoke,
            fast=fast,
            inner=inner,
            recover=recover,
            wrapped=bool(inner_layers),
        )

    def _terminal(self, info: HandlerInfo) -> CallNext:
        """Return the innermost link of a chain: the call of the handler itself."""
        fn = info.fn
        if info.is_async and not info.takes_context:

            def call_plain(envelope: Envelope[Message]) -> Awaitable[Any]:
                return fn(envelope.message)  # type: ignore[no-any-return]

            return call_plain
        if info.is_async:

            def call_with_context(envelope: Envelope[Message]) -> Awaitable[Any]:
                return fn(envelope.message, self._context(envelope, info))  # type: ignore[no-any-return]

            return call_with_context

        async def call_sync(envelope: Envelope[Message]) -> Any:
            if info.takes_context:
                result = fn(envelope.message, self._context(envelope, info))
            else:
                result = fn(envelope.message)
            if type(result) not in _plain_results and _is_awaitable(result):
                result = await result
            return result

        return call_sync

    def _context(self, envelope: Envelope[Message], info: HandlerInfo) -> Context[Message]:
        context = Context(self, envelope, info)
        frame = current_frame.get()
        if frame is not None:
            # Each run gets a fresh context, so a retried run's follow-ups replace those
            # of the attempt that failed.
            frame[3] = context
        return context

    # -- dispatch -----------------------------------------------------------------------

    # The metadata options are keyword-only for type checkers (the stubs under
    # TYPE_CHECKING) but positional-or-keyword at run time: CPython 3.11 takes a slower
    # call path for functions with keyword-only parameters, 10 % of a whole dispatch.
    if TYPE_CHECKING:

        async def send(
            self,
            command: Command[R],
            /,
            *,
            idempotency_key: str | None = None,
            group_key: str | None = None,
            headers: Mapping[str, str] | None = None,
            correlation_id: str | None = None,
        ) -> R: ...

        def publish(
            self,
            event: Event,
            /,
            *,
            idempotency_key: str | None = None,
            group_key: str | None = None,
            headers: Mapping[str, str] | None = None,
            correlation_id: str | None = None,
        ) -> Coroutine[Any, Any, None]: ...

    async def send(  # type: ignore[no-redef]
        self,
        command: Command[R],
        /,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> R:
        """Run ``command``'s handler and return its result.

        Follow-up messages the handler held back with ``ctx.publish`` / ``ctx.send`` are
        dispatched after it succeeds and before this returns. The handler's exceptions
        reach the caller unchanged, :class:`~messagebus.CommandRejected` included.
        Keyword arguments set the envelope's metadata; ``correlation_id`` overrides the
        one inherited from the message being handled, if any.

        Raises:
            NoHandlerError: no handler is registered for the command's type.
            MessageKindError: ``command`` is an Event, or not a message at all.
        """
        try:
            route = self._commands[type(command)]
        except KeyError:
            raise self._unsendable(command) from None
        frame: Frame = [command, _get_frame(), None, None, route.handler]
        if not (
            idempotency_key is None
            and group_key is None
            and headers is None
            and correlation_id is None
        ):
            frame[2] = self._envelope(frame, idempotency_key, group_key, headers, correlation_id)
        token = _set_frame(frame)
        try:
            direct = route.direct
            if direct is not None:
                result: R = await direct(command)
            elif route.inline is not None:
                result = route.inline(command)
                if type(result) not in _plain_results and _is_awaitable(result):
                    result = await result  # type: ignore[misc]
            else:
                result = await route.fast(frame)
        except Exception as error:
            recover = route.recover
            if recover is None:
                raise
            result = await recover(_envelope_of_run(frame), error, route.inner)
        finally:
            _reset_frame(token)
        context: Context[Message] | None = frame[3]
        if context is not None and context._pending:
            await self._drain(context._pending)
        return result

    def publish(  # type: ignore[no-redef]
        self,
        event: Event,
        /,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> Coroutine[Any, Any, None]:
        """Deliver ``event`` to every subscriber of its type; never raises their errors.

        Await the result: ``await bus.publish(event)``. A subscriber that fails is logged
        and recorded in :attr:`dead_letters`; the other subscribers still run and this
        still returns normally. An event with no subscribers is valid and goes nowhere.
        Follow-ups held back by subscribers that succeeded are dispatched before the
        awaited call returns. The message being handled, if any, is taken as the cause
        when this is called, not when the result is awaited.

        This is a plain method returning a coroutine (one coroutine frame per publish
        instead of two), so a wrong argument raises at the call, before any ``await``.

        Raises:
            MessageKindError: ``event`` is a Command, or not a message at all.
        """
        routes = self._events.get(type(event))
        if routes is None:
            self.check_publishable(event)
            routes = ()
        frame: Frame = [event, _get_frame(), None, None, None]
        if not (
            idempotency_key is None
            and group_key is None
            and headers is None
            and correlation_id is None
        ):
            frame[2] = self._envelope(frame, idempotency_key, group_key, headers, correlation_id)
        return self._deliver(routes, frame, True)  # type: ignore[return-value]

    def check_sendable(self, command: object) -> None:
        """Raise what :meth:`send` would raise before running ``command``'s handler.

        Raises:
            NoHandlerError: no handler is registered for the command's type.
            MessageKindError: ``command`` is an Event, or not a message at all.
        """
        if type(command) not in self._commands and not (
            self.transport is not None
            and isinstance(command, Command)
            and self.router.remote_queue(type(command)) is not None
        ):
            raise self._unsendable(command)

    def check_publishable(self, event: object) -> None:
        """Raise :class:`~messagebus.MessageKindError` unless ``event`` is an Event."""
        if not isinstance(event, Event):
            if isinstance(event, Command):
                raise MessageKindError(
                    f"{type(event).__qualname__} is a command: send it with bus.send(); "
                    "publish() is for events"
                )
            raise MessageKindError(f"publish() takes an Event, not {event!r}")

    def _unsendable(self, command: object) -> Exception:
        if isinstance(command, Command):
            return NoHandlerError(
                f"no handler is registered for command {type(command).__message_name__!r} "
                f"({type(command).__qualname__}); register one with @bus.handler"
                + ("" if self.transport is None else ", or route it to its owner's queue")
            )
        if isinstance(command, Event):
            return MessageKindError(
                f"{type(command).__qualname__} is an event: publish it with bus.publish(); "
                "send() is for commands"
            )
        return MessageKindError(f"send() takes a Command, not {command!r}")

    def _envelope(
        self,
        frame: Frame,
        idempotency_key: str | None,
        group_key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
    ) -> Envelope[Message]:
        parent = frame[1]
        return Envelope(
            frame[0],
            parent=None if parent is None else envelope_of(parent),
            correlation_id=correlation_id,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )

    async def _deliver(
        self, routes: Sequence[_Route], frame: Frame, drain: bool
    ) -> list[Envelope[Message]] | None:
        """Run every subscriber in ``routes`` on ``frame``.

        With ``drain``, dispatch the follow-ups they held back before returning;
        otherwise return them (the drain loop queues them breadth first).
        """
        if self._concurrent and len(routes) > 1:
            pending = await self._deliver_concurrently(routes, frame)
            if drain and pending:
                await self._drain(pending)
                return None
            return pending
        pending = None
        event = frame[0]
        token = _set_frame(frame)
        try:
            for route in routes:
                frame[4] = route.handler
                try:
                    direct = route.direct
                    if direct is not None:
                        await direct(event)
                    elif route.inline is not None:
                        result = route.inline(event)
                        if type(result) not in _plain_results and _is_awaitable(result):
                            await result
                    else:
                        await route.fast(frame)
                except Exception as exc:  # noqa: BLE001  # isolation is the contract
                    if not await self._recovered(route, frame, exc):
                        frame[3] = None
                        continue
                context: Context[Message] | None = frame[3]
                if context is not None:
                    frame[3] = None
                    if context._pending:
                        if pending is None:
                            pending = []
                        pending.extend(context._pending)
        finally:
            frame[4] = None
            _reset_frame(token)
        if drain and pending:
            await self._drain(pending)
            return None
        return pending

    async def _deliver_concurrently(
        self, routes: Sequence[_Route], frame: Frame
    ) -> list[Envelope[Message]] | None:
        # Every subscriber sees the same envelope, so ids must exist before the split.
        envelope = envelope_of(frame)
        outcomes: list[list[Envelope[Message]] | None] = [None] * len(routes)

        async def run(index: int, route: _Route) -> None:
            own_frame = [frame[0], frame[1], envelope, None, route.handler]
            outcomes[index] = await self._run_isolated(route, own_frame)

        async with anyio.create_task_group() as tasks:
            for index, route in enumerate(routes):
                tasks.start_soon(run, index, route)
        # Follow-ups keep subscriber registration order, whatever order runs finished in.
        pending = [held for outcome in outcomes if outcome for held in outcome]
        return pending or None

    async def _run_isolated(self, route: _Route, frame: Frame) -> list[Envelope[Message]] | None:
        """Run one handler on ``frame``; record a failure instead of raising it."""
        token = _set_frame(frame)
        try:
            await route.invoke(frame)
        except Exception as exc:  # noqa: BLE001  # isolation is the contract
            await self._record_failure(route.handler, frame, exc)
            return None
        finally:
            _reset_frame(token)
        context: Context[Message] | None = frame[3]
        return context._pending if context is not None else None

    async def _drain(self, pending: list[Envelope[Message]]) -> None:
        """Dispatch held-back follow-ups breadth first, with theirs after them."""
        queue = deque(pending)
        while queue:
            envelope = queue.popleft()
            message = envelope.message
            if isinstance(message, Command):
                route = self._commands[type(message)]
                more = await self._run_isolated(
                    route, [message, None, envelope, None, route.handler]
                )
            else:
                routes = self._events.get(type(message))
                frame: Frame = [message, None, envelope, None, None]
                more = await self._deliver(routes, frame, False) if routes else None
            if more:
                queue.extend(more)

    async def _recovered(self, route: _Route, frame: Frame, exc: Exception) -> bool:
        """Give a failed subscriber run to its recovery; record it if that fails too."""
        recover = route.recover
        if recover is not None:
            try:
                await recover(_envelope_of_run(frame), exc, route.inner)
            except Exception as final:  # noqa: BLE001  # isolation is the contract
                exc = final
            else:
                return True
        await self._record_failure(route.handler, frame, exc)
        return False

    async def _record_failure(self, handler: HandlerInfo, frame: Frame, exc: Exception) -> None:
        envelope = _envelope_of_run(frame)
        await self._add_dead_letter(
            DeadLetter.from_failure(self.codec, envelope, handler.name, exc),
            causation_id=envelope.causation_id,
        )

    async def _add_dead_letter(self, letter: DeadLetter, causation_id: str | None = None) -> None:
        self._log.error(
            "handler failed; message dead-lettered",
            handler=letter.handler,
            message_type=letter.message_type,
            message_id=letter.message_id,
            correlation_id=letter.correlation_id,
            causation_id=causation_id,
            attempts=letter.attempts,
            error=f"{letter.error_type}: {letter.error_message}",
            dead_letter_id=letter.id,
        )
        await self.dead_letters.add(letter)

    # -- transport ----------------------------------------------------------------------

    def declare(self, *message_types: type[Message]) -> None:
        """Make message types known that this service publishes or sends but does not handle.

        Declared types are in :attr:`registry` (so :attr:`codec` decodes them and
        ``messagebus schema`` exports them), and a declared event type's topic is part of
        :meth:`topology`.

        Raises:
            InvalidMessageTypeError: a type is not a Command or Event subclass.
            DuplicateMessageTypeError: another class has its wire name and version.
        """
        for message_type in message_types:
            self._require_kind(message_type, Message, "declare", "declare")
            self._check_names(message_type)
            self.registry.add(message_type)

    def topology(self) -> Topology:
        """Return the queues, topics and subscriptions this service needs on a transport.

        Its input queue; the topic of every event type it subscribes to or declared;
        its queue subscribed to the topics of the event types it subscribes to.
        """
        events = [kind for kind in self.registry if issubclass(kind, Event)]
        return self.router.topology(subscribed=list(self._events), published=events)

    async def provision(self) -> None:
        """Create :meth:`topology` on the transport, where missing (development and tests).

        Raises:
            BusStateError: the bus has no transport, or is not running.
        """
        await self._running_transport().provision(self.topology())

    async def enqueue(
        self,
        command: Command[Any],
        /,
        *,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Hand ``command`` to its owner's queue; its handler runs later, in a worker.

        Returns once the transport holds the command; nobody waits for its result, and
        a failure of its handler becomes a dead letter there. Without a transport the
        handler runs now, in this process, exactly as a follow-up sent with
        ``ctx.send`` would (its failure a dead letter here, not an exception).

        Raises:
            NoHandlerError: no handler here and no route to another service's queue.
            MessageKindError: ``command`` is an Event, or not a message at all.
            TransportError: the transport did not take it (see its subclasses).
        """
        self.check_sendable(command)
        frame: Frame = [command, _get_frame(), None, None, None]
        envelope = self._envelope(frame, idempotency_key, group_key, headers, correlation_id)
        await self._drain([envelope])

    def _publish_by_drain(
        self,
        event: Event,
        /,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> Coroutine[Any, Any, None]:
        """:meth:`publish` where follow-ups do not run here directly: through :meth:`_drain`.

        On a transport that hands ``event`` to its topic; with an event log it appends
        first. The in-process :meth:`publish` keeps its own faster path.
        """
        self.check_publishable(event)
        frame: Frame = [event, _get_frame(), None, None, None]
        envelope = self._envelope(frame, idempotency_key, group_key, headers, correlation_id)
        return self._drain([envelope])

    async def _forward(self, pending: list[Envelope[Message]]) -> None:
        """Hand messages to the transport: :meth:`_drain` when the bus has one.

        Every message is encoded before anything is sent, so an unencodable one stops
        the whole lot. Messages are grouped by destination, in order within each.
        """
        transport = self._running_transport()
        batches: dict[Destination, list[Outgoing]] = {}
        for envelope in pending:
            for hook in self._outgoing:
                envelope = hook(envelope)  # noqa: PLW2901
            local = type(envelope.message) in self._commands
            destination = self.router.destination(envelope, local=local)
            batches.setdefault(destination, []).append(outgoing(self.codec, envelope))
        for destination, batch in batches.items():
            if destination.kind == "queue":
                await transport.send(destination.name, batch)
            else:
                await transport.publish(destination.name, batch)

    def _running_transport(self) -> Transport:
        if self.transport is None:
            raise BusStateError("this bus has no transport; pass transport= to MessageBus")
        if self._task_group is None:
            raise BusStateError(
                "a bus on a transport moves messages only while it runs: use 'async with bus'"
            )
        return self.transport

    async def handle_delivered(self, envelope: Envelope[Message]) -> None:
        """Run this service's handlers on a message that arrived through the transport.

        What a :class:`~messagebus.Worker` calls for each decoded delivery. A command
        goes to its handler, an event to every subscriber here (or only to the one named
        in its ``messagebus-handler`` header: a deferred retry), each run isolated as a
        follow-up is: a failure (after its retry policy) is a dead letter, not an
        exception. A command this service has no handler for (misrouted) is a dead
        letter too. Follow-ups of successful runs are then handed to the transport.

        Raises:
            TransportError: the follow-ups could not be handed on; the message should
                return to the queue (its handlers may run again: be idempotent).
        """
        message = envelope.message
        if isinstance(message, Command):
            route = self._commands.get(type(message))
            if route is None:
                error = NoHandlerError(
                    f"service {self.router.service!r} received command "
                    f"{envelope.message_type!r} but has no handler for it (misrouted)"
                )
                await self._add_dead_letter(
                    DeadLetter.from_failure(self.codec, envelope, "<no handler>", error)
                )
                return
            more = await self._run_isolated(route, [message, None, envelope, None, route.handler])
            if more:
                await self._drain(more)
            return
        routes = self._events.get(type(message))
        target = envelope.headers.get(HANDLER_HEADER)
        if routes and target is not None:
            # A redelivered copy for one subscriber: the others have handled it already.
            routes = tuple(route for route in routes if route.handler.name == target)
        if routes:
            await self._deliver(routes, [message, None, envelope, None, None], True)

    # -- unit of work and event log ------------------------------------------------------

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """Open a unit of work on the outbox's database; see :mod:`messagebus._unit_of_work`.

        ``async with bus.unit_of_work() as uow:`` runs ``uow.execute(...)`` (your SQL)
        and ``uow.publish(...)`` / ``uow.send(...)`` (outbox rows) in one transaction:
        committed together when the block ends, rolled back together if it raises. The
        relay delivers the messages after the commit (the bus must be running).

        Raises:
            BusStateError: the bus has no outbox.
        """
        if self.outbox is None:
            raise BusStateError("this bus has no outbox; pass outbox= to MessageBus")
        async with self.outbox.transaction() as transaction:
            unit = UnitOfWork(self, transaction)
            token = enter(unit)
            try:
                yield unit
                await unit._write()
            finally:
                leave(token)
        if unit.logged:
            self.event_log.notify_appended()  # type: ignore[union-attr]

    def _outbox_row(self, envelope: Envelope[Message]) -> OutboxMessage:
        """Return ``envelope`` as an outbox row for where it goes (transport or here)."""
        from messagebus.outbox import OutboxMessage  # noqa: PLC0415

        for hook in self._outgoing:
            envelope = hook(envelope)
        if self.transport is None:
            destination = Destination.local()
        else:
            destination = self.router.destination(
                envelope, local=type(envelope.message) in self._commands
            )
        return OutboxMessage.from_envelope(
            envelope, destination, self.codec, deduplication_id=envelope.idempotency_key
        )

    def _log_events(self, log: EventLog) -> None:
        """Append every event published here to ``log`` before it is delivered."""
        drain = self._drain

        async def drain_logged(pending: list[Envelope[Message]]) -> None:
            events = [envelope for envelope in pending if envelope.kind == "event"]
            if events:
                records = await log.append(events)
                logged = {
                    id(event): record.envelope
                    for event, record in zip(events, records, strict=True)
                }
                pending = [logged.get(id(envelope), envelope) for envelope in pending]
            await drain(pending)

        # Every path now goes through drain_logged: publish() and the follow-ups.
        self.publish = self._publish_by_drain  # type: ignore[method-assign]
        self._drain = drain_logged  # type: ignore[method-assign]

    # -- dead letters --------------------------------------------------------------------

    async def replay(self, dead_letter_id: str) -> Any:
        """Run a dead letter's handler again on its message; forget the letter if it works.

        The message is decoded from the record with :attr:`codec` and handed to the one
        handler named in the record, through that handler's whole chain (so retries
        apply again), with ``attempt`` back at 1 and its ids and correlation unchanged.
        On success the record is deleted, follow-ups are dispatched, and the handler's
        result is returned. On failure the record stays, updated with the new error,
        the attempts added and the new failure time, and the error is raised.

        A record made before any handler ran (a body that did not decode, handler
        ``"<decode:QUEUE>"``; a misrouted command, ``"<no handler>"``) is handled as a
        fresh arrival by :meth:`handle_delivered` once it decodes: the record is
        deleted, and a handler that fails then makes a dead letter of its own.

        Raises:
            DeadLetterNotFoundError: no record has this id.
            DecodeError: the record's body no longer decodes (its type was removed).
            NoHandlerError: no handler of that name handles that type any more.
        """
        store = self.dead_letters
        letter = await store.get(dead_letter_id)
        if letter is None:
            raise DeadLetterNotFoundError(f"no dead letter has id {dead_letter_id!r}")
        envelope = self.codec.decode(letter.body).replace(attempt=1)
        if letter.handler.startswith("<"):
            # Recorded before any handler ran ("<decode:QUEUE>", "<no handler>"): it decodes
            # now, so it goes where it would have gone, each handler isolated as ever.
            await self.handle_delivered(envelope)
            await store.delete(letter.id)
            return None
        message = envelope.message
        route = self._route_named(type(message), letter.handler)
        frame: Frame = [message, None, envelope, None, route.handler]
        token = _set_frame(frame)
        try:
            result = await route.invoke(frame)
        except Exception as exc:
            failed = DeadLetter.from_failure(
                self.codec, _envelope_of_run(frame), letter.handler, exc
            )
            # add() replaces the record in one step: no moment without it.
            await store.add(
                attrs.evolve(
                    failed,
                    id=letter.id,
                    attempts=letter.attempts + failed.attempts,
                    first_failed_at=letter.first_failed_at,
                )
            )
            raise
        finally:
            _reset_frame(token)
        await store.delete(letter.id)
        context: Context[Message] | None = frame[3]
        if context is not None and context._pending:
            await self._drain(context._pending)
        return result

    def _route_named(self, message_type: type[Message], name: str) -> _Route:
        command_route = self._commands.get(message_type)
        routes = (
            (command_route,) if command_route is not None else self._events.get(message_type, ())
        )
        for route in routes:
            if route.handler.name == name:
                return route
        raise NoHandlerError(
            f"no handler named {name!r} handles {message_type.__message_name__!r} any more"
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between entering and leaving ``async with bus``."""
        return self._task_group is not None

    def _add_service(self, service: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``service`` in the bus's task group while the bus runs (from its start).

        For the library's own background work (consumers, the outbox relay); the
        service is cancelled when the bus stops.
        """
        self._services.append(service)
        if self._task_group is not None:
            self._task_group.start_soon(service)

    async def __aenter__(self) -> MessageBus:
        if self._task_group is not None:
            raise BusStateError("this bus is already running; enter it once")
        # The bus opens what it was given (transport, outbox, event log) and closes it
        # when it stops, outermost first.
        async with AsyncExitStack() as resources:
            for resource in (self.transport, self.outbox, self.event_log):
                if hasattr(resource, "__aenter__"):
                    await resources.enter_async_context(resource)  # type: ignore[arg-type]
            # Opened: keep them past this block (a failure above closed those opened).
            self._resources = resources.pop_all()
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._task_group = tasks
        for service in self._services:
            tasks.start_soon(service)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tasks, self._task_group = self._task_group, None
        assert tasks is not None  # __aexit__ follows a successful __aenter__
        tasks.cancel_scope.cancel()
        try:
            if isinstance(exc, anyio.get_cancelled_exc_class()):
                return await tasks.__aexit__(exc_type, exc, tb)
            # The block's own exception is the caller's business: let it propagate as it
            # is, not wrapped in the task group's ExceptionGroup. Failures of background
            # services still surface (with the block's exception as their context).
            await tasks.__aexit__(None, None, None)
            return None
        finally:
            # Not in a shielding scope of ours: a transport may hold a task group, which
            # must be left from the scope it was entered in; the stores shield their own
            # closing.
            await self._resources.aclose()
