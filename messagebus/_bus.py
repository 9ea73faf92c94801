"""The message bus: the composition root and the lifecycle.

:class:`MessageBus` builds its parts once, in its constructor, from what it is given:
the handler table (:mod:`messagebus._registration`), the dispatcher it is
(:mod:`messagebus._dispatch`), and the outlets its messages leave through
(:mod:`messagebus._outlets`: the dispatcher itself or the transport, the outbox around
it, the event log around that). ``async with bus:`` opens what it was given and runs
its background services (the outbox relay) in a task group; leaving it stops them and
closes the resources. Its other public methods are thin: each hands its work to the
part that owns it.
"""

from __future__ import annotations

from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
)
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

import anyio
import anyio.abc

from messagebus import _scheduled as scheduled
from messagebus._clock import Clock
from messagebus._codec import WireCodec
from messagebus._dispatch._dispatcher import Dispatcher
from messagebus._envelope import Envelope
from messagebus._errors import BusStateError, InvalidArgumentError
from messagebus._handler_types import (
    CommandClass,
    CommandHandler,
    EventSubscriber,
    HandlerDecorator,
    SubscriberDecorator,
)
from messagebus._log import get_logger
from messagebus._messages import Command, Event, Message
from messagebus._outlets import (
    Departure,
    EventLogOutlet,
    OutboxOutlet,
    Outlet,
    StagingEventLogOutlet,
    StagingOutlet,
    TransactionalLog,
    TransportOutlet,
)
from messagebus._registration import AnyMiddleware, HandlerTable
from messagebus._registry import MessageRegistry
from messagebus._schedule import ScheduleId, Scheduling
from messagebus._sql import require_same_database
from messagebus._unit_of_work import UnitOfWork, open_unit_of_work
from messagebus.dead_letters import InMemoryDeadLetterStore
from messagebus.dead_letters._store import DeadLetterStore
from messagebus.outbox import OutboxRelay
from messagebus.transports._protocol import QueueSpec, Topology, Transport
from messagebus.transports._routing import Router
from messagebus.transports._url import transport_from_url

if TYPE_CHECKING:
    from messagebus.extension import EventLog, OutboxStore

__all__ = ["Fanout", "MessageBus"]

C = TypeVar("C", bound=Command[Any])
E = TypeVar("E", bound=Event)
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

Fanout = Literal["sequential", "concurrent"]


class MessageBus(Dispatcher):
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
        logger: a structlog-style logger for the bus's own log lines; by default the
            application's structlog if it configured structlog, else the standard
            ``logging`` logger ``messagebus`` (see :mod:`messagebus._log`). The bus
            configures neither.
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
        clock: what the bus's own services wait by: the outbox relay's polling, its
            cleanups and its sleep until the next scheduled row is due (anyio's clock by
            default). Give a test's :class:`~messagebus.testing.FakeClock`, the one the
            outbox was made with, and advancing it delivers what fell due.

    Attributes:
        registry: the message types this bus knows (every handled type is added).
        codec: the wire codec for those types (CloudEvents JSON); dead letters keep
            their envelope in this form, and transports send it.
        dead_letters: the dead letter store.
        router: the routing table (this service's queue, the routes of its commands).
        relay: the outbox relay, with an outbox; None without.
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
        clock: Clock | None = None,
    ) -> None:
        if fanout not in ("sequential", "concurrent"):
            raise InvalidArgumentError(
                f"fanout must be 'sequential' or 'concurrent', not {fanout!r}"
            )
        self.registry = MessageRegistry()
        self.router = Router(service, routes or {}, queue)
        if isinstance(transport, str):
            transport = transport_from_url(transport)
        self.transport: Transport | None = transport
        router = None if transport is None else self.router
        table = HandlerTable(
            self.registry,
            middleware,
            self.terminal,
            router,
            strict_names=strict_names,
            naming_allow=naming_allow,
        )
        super().__init__(
            table,
            codec=WireCodec(self.registry, source=source),
            dead_letters=InMemoryDeadLetterStore() if dead_letters is None else dead_letters,
            logger=get_logger("messagebus") if logger is None else logger,
            concurrent=fanout == "concurrent",
            service=service,
        )
        self._services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._task_group: anyio.abc.TaskGroup | None = None
        self._resources = AsyncExitStack()
        self.outbox = outbox
        self.event_log = event_log
        self._clock = clock
        self.relay: OutboxRelay | None = None
        self._staging: StagingOutlet | None = None
        self._set_outlet(self._compose_outlets(router, tuple(outgoing)))

    def _compose_outlets(
        self,
        router: Router | None,
        hooks: tuple[Callable[[Envelope[Message]], Envelope[Message]], ...],
    ) -> Outlet:
        """Build the outlets, innermost first; see :mod:`messagebus._outlets`."""
        departure = Departure(self.codec, hooks, router, self._table.commands)
        outlet: Outlet = self
        if self.transport is not None:
            outlet = TransportOutlet(self.running_transport, departure)
        outbox = self.outbox
        if outbox is not None:
            staging = OutboxOutlet(
                outlet,
                departure,
                transport=self.running_transport,
                handle=self.handle_delivered,
                outbox=outbox,
            )
            self.relay = OutboxRelay(outbox, staging.deliver, clock=self._clock)
            outbox.on_commit(self.relay.notify)
            self._add_service(self.relay.run)
            self._staging = outlet = staging
        log = self.event_log
        self._table.scheduling = Scheduling.of(outbox, events=log is None)
        if log is not None:
            log.lend_codec(self.codec)
            if self._staging is None:
                outlet = EventLogOutlet(log, outlet)
            else:
                require_same_database(outbox, log)
                # An SQL event log on the outbox's database object: it has append_in.
                staged = cast(TransactionalLog, log)
                self._staging = outlet = StagingEventLogOutlet(staged, self._staging)
        return outlet

    # -- registration -------------------------------------------------------------------

    @overload
    def handler(
        self,
        command_type: CommandClass[C, R],
        fn: CommandHandler[C, R],
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> CommandHandler[C, R]: ...

    @overload
    def handler(
        self,
        command_type: CommandClass[C, R],
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> HandlerDecorator[C, R]: ...

    def handler(
        self,
        command_type: CommandClass[C, R],
        fn: CommandHandler[C, R] | None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
        idempotent: bool = False,
    ) -> Any:
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
        self._table.require_kind(command_type, Command, "handler", "subscriber")
        # A command class: CommandClass is how type checkers see one (it exists for them).
        message_type = cast("type[Command[Any]]", command_type)

        def register(fn: F) -> F:
            self._table.add_handler(
                message_type, fn, name=name, middleware=middleware, idempotent=idempotent
            )
            return fn

        return register if fn is None else register(fn)

    @overload
    def subscriber(
        self,
        event_type: type[E],
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> SubscriberDecorator[E]: ...

    @overload
    def subscriber(
        self,
        event_type: type[E],
        fn: EventSubscriber[E],
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> EventSubscriber[E]: ...

    def subscriber(
        self,
        event_type: type[E],
        fn: EventSubscriber[E] | None = None,
        *,
        name: str | None = None,
        middleware: Iterable[AnyMiddleware] = (),
    ) -> Any:
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
        self._table.require_kind(event_type, Event, "subscriber", "handler")

        def register(fn: F) -> F:
            self._table.add_subscriber(event_type, fn, name=name, middleware=middleware)
            return fn

        return register if fn is None else register(fn)

    def add_middleware(self, middleware: AnyMiddleware) -> None:
        """Append ``middleware`` to the global list (innermost of the globals so far).

        Every handler's chain is rebuilt now, so this belongs to start-up code.
        """
        self._table.add_middleware(middleware)

    @overload
    def replace_handler(
        self, message_type: CommandClass[C, R], fn: CommandHandler[C, R], *, name: None = None
    ) -> Callable[[], None]: ...

    @overload
    def replace_handler(
        self, message_type: type[E], fn: EventSubscriber[E], *, name: str
    ) -> Callable[[], None]: ...

    def replace_handler(
        self, message_type: Any, fn: Callable[..., Any], *, name: str | None = None
    ) -> Callable[[], None]:
        """Run ``fn`` instead of a registered handler; return the function that restores it.

        For tests (:func:`messagebus.testing.replace_handler` wraps it in a ``with``):
        ``fn`` keeps the original's name and middleware. For an event type, ``name`` is
        the registered name of the subscriber to replace.

        Raises:
            NoHandlerError: nothing of that type (and name) is registered.
            InvalidHandlerError: ``fn`` cannot be called as a handler.
        """
        return self._table.replace(message_type, fn, name=name)

    def declare(self, *message_types: type[Message]) -> None:
        """Make message types known that this service publishes or sends but does not handle.

        Declared types are in :attr:`registry` (so :attr:`codec` decodes them and
        ``messagebus schema`` exports them), and a declared event type's topic is part of
        :meth:`topology`.

        Raises:
            InvalidMessageTypeError: a type is not a Command or Event subclass.
            DuplicateMessageTypeError: another class has its wire name and version.
        """
        self._table.declare(message_types)

    def handled_types(self) -> tuple[type[Message], ...]:
        """Return the command types this service handles, then the event types it subscribes to."""
        return (*self._table.commands, *self._table.events)

    def check_sendable(self, command: object) -> None:
        """Raise what :meth:`send` would raise before running ``command``'s handler.

        Raises:
            NoHandlerError: no handler is registered for the command's type.
            MessageKindError: ``command`` is an Event, or not a message at all.
        """
        self._table.check_sendable(command)

    def check_publishable(self, event: object) -> None:
        """Raise :class:`~messagebus.MessageKindError` unless ``event`` is an Event."""
        self._table.check_publishable(event)

    # -- transport ----------------------------------------------------------------------

    def topology(self) -> Topology:
        """Return the queues, topics and subscriptions this service needs on a transport.

        Its input queue; the topic of every event type it subscribes to or declared;
        its queue subscribed to the topics of the event types it subscribes to.
        """
        events = [kind for kind in self.registry if issubclass(kind, Event)]
        return self.router.topology(subscribed=list(self._table.events), published=events)

    async def provision(self) -> None:
        """Create :meth:`topology` on the transport, where missing (development and tests).

        Raises:
            BusStateError: the bus has no transport, or is not running.
        """
        await self.running_transport().provision(self.topology())

    def running_transport(self) -> Transport:
        """Return the bus's transport, for code that moves messages on its behalf.

        Raises:
            BusStateError: the bus has no transport, or is not running (a transport is
                open only inside ``async with bus``).
        """
        if self.transport is None:
            raise BusStateError("this bus has no transport; pass transport= to MessageBus")
        if self._task_group is None:
            raise BusStateError(
                "a bus on a transport moves messages only while it runs: use 'async with bus'"
            )
        return self.transport

    # -- unit of work -------------------------------------------------------------------

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
        if self.outbox is None or self._staging is None:
            raise BusStateError("this bus has no outbox; pass outbox= to MessageBus")
        async with open_unit_of_work(self.outbox, self._table, self._staging) as unit:
            yield unit

    # -- scheduled messages ------------------------------------------------------------

    async def schedule(
        self,
        message: Message,
        /,
        *,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        idempotency_key: str | None = None,
        group_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ScheduleId:
        """Put ``message`` in the outbox to be delivered when due; return its id.

        Exactly one of ``at`` (an aware datetime; in the past: due now) and ``delay``
        (a timedelta or seconds, on the outbox's clock). In a unit of work of this bus
        the row joins its transaction; else it is committed now. The relay delivers it
        when due (see :mod:`messagebus._schedule`); :meth:`cancel_scheduled` cancels it.

        Raises:
            ConfigurationError: no outbox (or an event on a bus with an event log).
            InvalidArgumentError, ArgumentTypeError: bad ``at`` / ``delay``.
        """
        return await scheduled.schedule(
            self._table.scheduling,
            self.unit_of_work,
            message,
            at=at,
            delay=delay,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )

    async def cancel_scheduled(self, schedule_id: str) -> bool:
        """Cancel a scheduled message not delivered yet; return whether it was cancelled.

        False when it was delivered already, is being delivered right now, is unknown,
        or was not scheduled. In a unit of work of this bus, the cancel commits or rolls
        back with it.

        Raises:
            ConfigurationError: the bus has no outbox.
        """
        return await scheduled.cancel_scheduled(self._table.scheduling, schedule_id)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between entering and leaving ``async with bus``."""
        return self._task_group is not None

    def _add_service(self, service: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``service`` in the bus's task group while the bus runs (from its start).

        For the library's own background work (the outbox relay); the service is
        cancelled when the bus stops.
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
                if isinstance(resource, AbstractAsyncContextManager):
                    await resources.enter_async_context(resource)
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
