"""Process managers: state per correlation value, changed by messages, in one transaction."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import attrs

from messagebus._context import Context
from messagebus._dispatch._run import discard_follow_ups
from messagebus._envelope import Envelope
from messagebus._errors import (
    ArgumentTypeError,
    BusStateError,
    ConfigurationError,
    DatabaseMismatchError,
    InvalidArgumentError,
    ProcessConflictError,
    ProcessNotFoundError,
)
from messagebus._log import get_logger
from messagebus._messages import Command, Event, Message, wire_name
from messagebus._middleware import CallNext
from messagebus._schedule import ScheduleId
from messagebus._sql._database import database_of
from messagebus.middleware import IdempotencyMiddleware, UnitOfWorkMiddleware
from messagebus.process._state import StateCodec, Upcaster
from messagebus.process._store import ProcessRecord, ProcessStore

if TYPE_CHECKING:
    from messagebus._bus import MessageBus
    from messagebus.extension import InboxStore

__all__ = ["Process", "ProcessManager", "WhenMissing"]

S = TypeVar("S")
M = TypeVar("M", bound=Message)

WhenMissing = Literal["dead-letter", "ignore"]
"""What a continuing message does when its instance does not exist (never started, or
its tombstone expired): become a dead letter (:class:`~messagebus.ProcessNotFoundError`),
or be ignored quietly (one debug line)."""

Starter = Callable[[M, "Process[S]"], Awaitable[S]]
Continuer = Callable[[S, M, "Process[S]"], Awaitable[S | None]]


class Process(Generic[S]):
    """What a process manager's handler gets beside the message: its instance's handle.

    Messages given to :meth:`publish`, :meth:`send` and :meth:`schedule` (a timeout: a
    message due later, which comes back to a handler when due) are written to the
    outbox in the transaction that saves the instance's state, and leave only once it
    commits. :meth:`complete` ends the instance.
    """

    def __init__(self, name: str, key: str, ctx: Context[Message]) -> None:
        self.name = name
        """The process manager's name."""
        self.key = key
        """The correlation value of this instance."""
        self.ctx = ctx
        """The bus's context of the message being handled (envelope, ids)."""
        self.completed = False
        """Whether :meth:`complete` was called in this run."""

    def publish(self, event: Event, **options: Any) -> None:
        """Publish ``event`` once the instance's change commits (as ``ctx.publish``)."""
        self.ctx.publish(event, **options)

    def send(self, command: Command[Any], **options: Any) -> None:
        """Send ``command`` once the instance's change commits (as ``ctx.send``)."""
        self.ctx.send(command, **options)

    def schedule(
        self,
        message: Message,
        *,
        at: datetime | None = None,
        delay: timedelta | float | None = None,
        **options: Any,
    ) -> ScheduleId:
        """Schedule ``message`` (a timeout) in the instance's transaction; return its id.

        Give it a handler of this process manager to come back here when due; a timeout
        that finds the instance completed is ignored.
        """
        return self.ctx.schedule(message, at=at, delay=delay, **options)

    def complete(self) -> None:
        """End the instance: its state is removed and a tombstone kept (see the manager)."""
        self.completed = True


@attrs.frozen
class _Starts(Generic[M, S]):
    correlate: Callable[[M], object]
    fn: Starter[M, S]


@attrs.frozen
class _Handles(Generic[M, S]):
    correlate: Callable[[M], object]
    fn: Continuer[S, M]
    when_missing: WhenMissing


class ProcessManager(Generic[S]):
    """A long-running business process: attrs state per correlation value.

    ``orders = ProcessManager("shop.order", OrderState)``, then handlers::

        @orders.starts(OrderPlaced, correlate=lambda event: event.order_id)
        async def placed(event: OrderPlaced, process: Process[OrderState]) -> OrderState:
            process.schedule(PaymentOverdue(event.order_id), delay=timedelta(minutes=30))
            return OrderState(event.order_id)

        @orders.handles(PaymentReceived, correlate=lambda event: event.order_id)
        async def paid(state: OrderState, event: PaymentReceived, process: Process[OrderState]):
            state.paid = True
            process.publish(OrderConfirmed(state.order_id))
            process.complete()

        orders.register(bus, store=database.processes(), inbox=database.idempotency())

    The guarantees (each run of a message, on SQLite or PostgreSQL):

    - **One transaction** holds the state change, every message the handler publishes,
      sends or schedules, and the inbox record of the message it handled: nothing
      leaves before the commit, and a redelivered message is a no-op.
    - **One instance per key:** two starting messages racing resolve to one instance;
      the loser runs again and finds it (then it is handled by the ``handles`` handler
      of its type, if any, else ignored).
    - **Concurrent messages of one instance are serialised** (a row lock on PostgreSQL,
      the write lock on SQLite); a version check guards every save, and a conflict is
      run again at once, up to ``max_conflicts`` times, never dead-lettered before.
    - **A missing instance** is declared per message type (``when_missing``).
    - **Completion** removes the state and keeps a tombstone for ``retention``
      seconds, so a late message (a timeout after completion) is recognised and
      ignored instead of starting a new instance.
    - **State versions:** ``version`` and ``upcasters`` (``{1: v1_to_v2}``, dicts in
      and out) carry stored state up, as message upcasters do.

    Args:
        name: the process type, stable across deploys (it keys the store).
        state_type: the attrs class of the state, encoded with the bus codec's rules.
        version: the state type's version.
        upcasters: from each older version to the next.
        retention: seconds a completed instance's tombstone is kept (7 days).
        max_conflicts: runs of one message after conflicts before the error is raised to
            the handler's retry policy.
    """

    def __init__(
        self,
        name: str,
        state_type: type[S],
        *,
        version: int = 1,
        upcasters: Mapping[int, Upcaster] | None = None,
        retention: float = 7 * 24 * 3600.0,
        max_conflicts: int = 20,
    ) -> None:
        codec: StateCodec[S] = StateCodec(name, state_type, version, upcasters)
        if not name or not isinstance(name, str):
            raise InvalidArgumentError(f"a process manager needs a name, not {name!r}")
        if not attrs.has(state_type):
            raise ArgumentTypeError(
                f"process {name!r}: the state must be an attrs class, not {state_type!r}"
            )
        if retention < 0 or max_conflicts < 1:
            raise InvalidArgumentError(
                f"process {name!r}: retention must be >= 0 and max_conflicts >= 1"
            )
        self.name = name
        self.state = codec
        self.retention = retention
        self.max_conflicts = max_conflicts
        self._starts: dict[type[Message], _Starts[Any, S]] = {}
        self._handles: dict[type[Message], _Handles[Any, S]] = {}
        self._log = get_logger("messagebus.process")

    def starts(
        self, message_type: type[M], *, correlate: Callable[[M], object]
    ) -> Callable[[Starter[M, S]], Starter[M, S]]:
        """Declare that ``message_type`` starts an instance: ``fn(message, process) -> state``.

        A message of this type that finds its instance already there goes to the
        ``handles`` handler of its type if there is one, and is ignored otherwise.
        """

        def register(fn: Starter[M, S]) -> Starter[M, S]:
            self._check(message_type, fn, self._starts)
            self._starts[message_type] = _Starts(correlate, fn)
            return fn

        return register

    def handles(
        self,
        message_type: type[M],
        *,
        correlate: Callable[[M], object],
        when_missing: WhenMissing = "dead-letter",
    ) -> Callable[[Continuer[S, M]], Continuer[S, M]]:
        """Declare that ``message_type`` continues an instance: ``fn(state, message, process)``.

        ``fn`` changes ``state`` in place (returning None) or returns the new state.
        """
        if when_missing not in ("dead-letter", "ignore"):
            raise InvalidArgumentError(
                f"when_missing must be 'dead-letter' or 'ignore', not {when_missing!r}"
            )

        def register(fn: Continuer[S, M]) -> Continuer[S, M]:
            self._check(message_type, fn, self._handles)
            self._handles[message_type] = _Handles(correlate, fn, when_missing)
            return fn

        return register

    def _check(self, message_type: type[Message], fn: object, table: Mapping[Any, Any]) -> None:
        if not (isinstance(message_type, type) and issubclass(message_type, Command | Event)):
            raise ArgumentTypeError(
                f"process {self.name!r}: {message_type!r} is not a Command or Event class"
            )
        if not inspect.iscoroutinefunction(fn):
            raise ArgumentTypeError(f"process {self.name!r}: handlers are async functions")
        if message_type in table:
            raise ConfigurationError(
                f"process {self.name!r} already declares {message_type.__qualname__} here"
            )

    def register(
        self,
        bus: MessageBus,
        *,
        store: ProcessStore,
        inbox: InboxStore,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        """Register this manager's handlers on ``bus``: one per declared message type.

        Commands get a handler, events a subscriber named ``"<name>:<wire name>"``, each
        run in a unit of work of the bus's outbox with ``inbox`` in inbox mode, so the
        state, the messages and the inbox record commit together.

        Raises:
            BusStateError: nothing is declared.
            DatabaseMismatchError: ``store`` and ``inbox`` are not on the outbox's
                database object (checked at the first message: the bus makes its
                outbox's database known when entered).
            DuplicateHandlerError: a command type already has a handler.
        """
        if not self._starts and not self._handles:
            raise BusStateError(f"process {self.name!r} declares no message it handles")
        self.state.bind(bus.codec)
        for message_type in {**self._starts, **self._handles}:
            run = self._runner(bus, store, message_type)
            middleware: list[Any] = [
                _RerunOnConflict(self.max_conflicts, sleep),
                UnitOfWorkMiddleware(bus),
                IdempotencyMiddleware(inbox, inbox=True),
            ]
            name = f"{self.name}:{wire_name(message_type)}"
            # The runner takes any declared type: registration is typed for one type.
            registering: Any = bus.handler if issubclass(message_type, Command) else bus.subscriber
            registering(message_type, run, name=name, middleware=middleware)

    def _runner(
        self, bus: MessageBus, store: ProcessStore, message_type: type[Message]
    ) -> Callable[[Any, Context[Any]], Awaitable[None]]:
        starts = self._starts.get(message_type)
        handles = self._handles.get(message_type)
        correlate = (starts or handles).correlate  # type: ignore[union-attr]
        name, codec, log = self.name, self.state, self._log

        async def run(message: Message, ctx: Context[Message]) -> None:
            unit = ctx.unit_of_work
            if store.database is not database_of(unit.transaction):
                raise DatabaseMismatchError(
                    f"process {name!r}: its store is not on the outbox's database object"
                )
            key = str(correlate(message))
            record: ProcessRecord | None = await unit.run(
                lambda connection: store.load_in(connection, name, key)
            )
            process: Process[Any] = Process(name, key, ctx)
            if record is not None and record.completed:
                log.info("message for a completed process ignored", process=name, key=key)
                return
            if record is None:
                if starts is not None:
                    state = await starts.fn(message, process)
                    text = codec.encode(state)
                    started = await unit.run(
                        lambda connection: store.start_in(
                            connection, name, key, text, codec.version
                        )
                    )
                    if not started:
                        raise ProcessConflictError(
                            f"process {name!r} instance {key!r} was started by another message"
                        )
                    if process.completed:
                        await self._complete(unit, store, key, 1)
                    return
                assert handles is not None  # a type is declared by starts or handles
                if handles.when_missing == "ignore":
                    log.debug("no process instance; message ignored", process=name, key=key)
                    return
                raise ProcessNotFoundError(
                    f"process {name!r} has no instance {key!r} for "
                    f"{type(message).__qualname__} (never started, or its tombstone expired)"
                )
            if handles is None:
                log.debug("process already started; message ignored", process=name, key=key)
                return
            assert record.state is not None  # not completed
            state = codec.decode(record.state, record.state_version)
            changed = await handles.fn(state, message, process)
            if changed is not None:
                state = changed
            if process.completed:
                await self._complete(unit, store, key, record.version)
                return
            text = codec.encode(state)
            await unit.run(
                lambda connection: store.save_in(
                    connection,
                    name,
                    key,
                    state=text,
                    state_version=codec.version,
                    expected_version=record.version,
                )
            )

        return run

    async def _complete(self, unit: Any, store: ProcessStore, key: str, version: int) -> None:
        name, retention = self.name, self.retention
        await unit.run(
            lambda connection: store.complete_in(
                connection, name, key, expected_version=version, retention=retention
            )
        )


@attrs.frozen
class _RerunOnConflict:
    """Runs the rest of the chain again after a :class:`ProcessConflictError`.

    Outermost of a process manager's handler, so each run has a new transaction (the
    unit of work inside); follow-ups held by a failed run are discarded with it.
    """

    max_conflicts: int
    sleep: Callable[[float], Awaitable[None]]

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        conflicts = 0
        while True:
            try:
                return await call_next(envelope)
            except ProcessConflictError:
                conflicts += 1
                if conflicts >= self.max_conflicts:
                    raise
                discard_follow_ups()
                await self.sleep(0)  # let the run that won commit
