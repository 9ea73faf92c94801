"""Dispatch: send, publish, fan-out, follow-ups, isolation, recovery, replay.

The one module that makes and changes runs (:data:`~messagebus._dispatch._run.Run`, a
list ``[message, parent, envelope, context, handler]`` indexed here with literals: 0
message, 1 parent, 2 envelope, 3 context, 4 handler), and the home of the hot path's
speed tricks, each explained where it stands. The bus's constructor composes a
:class:`Dispatcher` (it is the bus's base class, so that ``bus.send`` is this module's
``send`` with no call in between, a measurable share of a dispatch); everything it needs
arrives composed: the handler table, the outlet that follow-ups leave through, the dead-
letter store and the logger.

Semantics (the contract of ``send`` and ``publish`` in the bus's docstrings):

- ``send`` runs the command's one handler through its chain and returns its result;
  the handler's exceptions reach the caller unchanged.
- ``publish`` runs every subscriber, each isolated: a failure (after its retry policy)
  is logged and becomes a dead letter, and the others and the publisher carry on.
- Follow-ups held back by a successful run leave through the outlet after the run,
  breadth first (the dispatcher itself is the outlet of a bus without a transport).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs

from messagebus._codec import WireCodec
from messagebus._context import Context
from messagebus._dispatch._run import Run, current_run, envelope_of, last_envelope
from messagebus._envelope import Envelope, lazy_envelope
from messagebus._errors import (
    DeadLetterNotFoundError,
    DuplicateInProgressError,
    NoHandlerError,
    RetriesExhausted,
)
from messagebus._handlers import HandlerInfo
from messagebus._messages import Command, Event, Message
from messagebus._middleware import CallNext
from messagebus._outlets import Outlet
from messagebus._redelivery import HANDLER_HEADER, defer
from messagebus._registration import HandlerTable, Route
from messagebus.dead_letters import DeadLetter
from messagebus.dead_letters._store import DeadLetterStore

__all__ = ["Dispatcher"]

R = TypeVar("R")

# Bound once: ``current_run.set`` makes a new method object on every call, a measurable
# share of a dispatch (instruction counts in benchmarks/instructions.py).
_get_run = current_run.get
_set_run = current_run.set
_reset_run = current_run.reset


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


def _new_envelope(
    run: Run,
    idempotency_key: str | None,
    group_key: str | None,
    headers: Mapping[str, str] | None,
    correlation_id: str | None,
) -> Envelope[Message]:
    parent = run[1]
    return Envelope(
        run[0],
        parent=None if parent is None else envelope_of(parent),
        correlation_id=correlation_id,
        idempotency_key=idempotency_key,
        group_key=group_key,
        headers=headers,
    )


def _enter(route: Route, run: Run) -> Awaitable[Any]:
    """Return the awaitable of ``route``'s chain on ``run``, entered at its first layer.

    The hot paths' way into a chain: the envelope is made here if nobody made it yet,
    and the outermost layer is called directly (one call fewer than through ``chain``).
    A plain function, not a method or an ``async def``: no bound method, no coroutine of
    its own. Kept out of ``send`` so that the frames of runs without middleware (S1)
    stay small.
    """
    envelope = run[2]
    if envelope is None:
        parent = run[1]
        envelope = run[2] = lazy_envelope(run[0], None if parent is None else envelope_of(parent))
    first = route.first
    return route.then(envelope) if first is None else first(envelope, route.then)


_IN_PROGRESS_DELAY = 1.0
"""Seconds before a run that met its key in progress elsewhere is delivered again."""


def _in_progress_elsewhere(error: Exception) -> bool:
    """Tell whether a run failed only because another delivery holds its idempotency key."""
    if isinstance(error, RetriesExhausted):
        error = error.__cause__  # type: ignore[assignment]
    return isinstance(error, DuplicateInProgressError)


class Dispatcher:
    """Runs handlers on messages; see the module. The base of :class:`~messagebus.MessageBus`.

    Args:
        table: the handler table (its dicts are read here, changed there in place).
        codec: the wire codec (dead letters keep their envelope in this form).
        dead_letters: where failed runs are recorded.
        logger: a structlog logger for the dispatcher's own lines.
        concurrent: run an event's subscribers in parallel tasks.
        service: this service's name, for log lines and dead letters.
    """

    def __init__(
        self,
        table: HandlerTable,
        *,
        codec: WireCodec,
        dead_letters: DeadLetterStore,
        logger: Any,
        concurrent: bool,
        service: str,
    ) -> None:
        self._table = table
        self._service = service
        self._commands = table.commands
        self._events = table.events
        self.codec = codec
        self.dead_letters = dead_letters
        self._log = logger
        self._concurrent = concurrent
        self._outlet: Outlet = self
        # What publish() delivers here: every subscriber on a bus whose events stay in
        # this process; nothing on one whose events leave through an outlet, so that
        # publish() finds out in its rare branch, not with a test on every call.
        self._published = table.events
        self._outward = False

    def _set_outlet(self, outlet: Outlet) -> None:
        """Send follow-ups and publishes through ``outlet`` (composed by the bus)."""
        self._outlet = outlet
        self._outward = outlet is not self
        self._published = {} if self._outward else self._table.events

    def terminal(self, info: HandlerInfo) -> CallNext:
        """Return the innermost link of ``info``'s chain: the call of the handler itself."""
        fn = info.fn
        table = self._table
        if info.is_async and not info.takes_context:

            def call_plain(envelope: Envelope[Message]) -> Awaitable[Any]:
                return fn(envelope.message)  # type: ignore[no-any-return]

            return call_plain

        def context(envelope: Envelope[Message]) -> Context[Message]:
            context = Context(table, envelope, info)
            run = _get_run()
            if run is not None:
                # Each attempt gets a fresh context, so a retried run's follow-ups replace
                # those of the attempt that failed.
                run[3] = context
            return context

        if info.is_async:

            def call_with_context(envelope: Envelope[Message]) -> Awaitable[Any]:
                return fn(envelope.message, context(envelope))  # type: ignore[no-any-return]

            return call_with_context

        async def call_sync(envelope: Envelope[Message]) -> Any:
            if info.takes_context:
                result = fn(envelope.message, context(envelope))
            else:
                result = fn(envelope.message)
            if type(result) not in _plain_results and _is_awaitable(result):
                result = await result
            return result

        return call_sync

    # -- send and publish ----------------------------------------------------------------

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
            raise self._table.unsendable(command) from None
        run: Run = [command, _get_run(), None, None, route.handler]
        if not (
            idempotency_key is None
            and group_key is None
            and headers is None
            and correlation_id is None
        ):
            run[2] = _new_envelope(run, idempotency_key, group_key, headers, correlation_id)
        token = _set_run(run)
        try:
            direct = route.direct
            if direct is not None:
                result: R = await direct(command)
            elif route.inline is not None:
                result = route.inline(command)
                if type(result) not in _plain_results and _is_awaitable(result):
                    result = await result  # type: ignore[misc]
            else:
                result = await _enter(route, run)
        except Exception as error:
            recover = route.recover
            if recover is None:
                raise
            result = await recover(last_envelope(run), error, route.inner)
        finally:
            _reset_run(token)
        context: Context[Message] | None = run[3]
        if context is not None and context._held:
            await self._outlet.emit(context._held)
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
        when this is called, not when the result is awaited. On a bus with a transport
        (or an event log) the event goes out through it instead.

        This is a plain method returning a coroutine (one coroutine frame per publish
        instead of two), so a wrong argument raises at the call, before any ``await``.

        Raises:
            MessageKindError: ``event`` is a Command, or not a message at all.
        """
        routes = self._published.get(type(event))
        if routes is None:
            self._table.check_publishable(event)
            if self._outward:
                run: Run = [event, _get_run(), None, None, None]
                envelope = _new_envelope(run, idempotency_key, group_key, headers, correlation_id)
                return self._outlet.emit([envelope])
            routes = ()
        run = [event, _get_run(), None, None, None]
        if not (
            idempotency_key is None
            and group_key is None
            and headers is None
            and correlation_id is None
        ):
            run[2] = _new_envelope(run, idempotency_key, group_key, headers, correlation_id)
        return self._deliver(routes, run, True)  # type: ignore[return-value]

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
        self._table.check_sendable(command)
        run: Run = [command, _get_run(), None, None, None]
        envelope = _new_envelope(run, idempotency_key, group_key, headers, correlation_id)
        await self._outlet.emit([envelope])

    # -- the local outlet: follow-ups handled here ---------------------------------------

    async def emit(self, envelopes: Sequence[Envelope[Message]]) -> None:
        """Handle ``envelopes`` here, breadth first, with their follow-ups after them.

        The outlet of a bus without a transport. Each handler run is isolated: a
        failure becomes a dead letter, never an exception of this call.
        """
        queue = deque(envelopes)
        while queue:
            envelope = queue.popleft()
            message = envelope.message
            run: Run = [message, None, envelope, None, None]
            if isinstance(message, Command):
                route = self._commands[type(message)]
                run[4] = route.handler
                more = await self._run_isolated(route, run)
            else:
                run[4] = None
                routes = self._events.get(type(message))
                more = await self._deliver(routes, run, False) if routes else None
            if more:
                queue.extend(more)

    # -- fan-out and isolation ------------------------------------------------------------

    async def _deliver(
        self, routes: Sequence[Route], run: Run, drain: bool
    ) -> list[Envelope[Message]] | None:
        """Run every subscriber in ``routes`` on ``run``.

        With ``drain``, send the follow-ups they held back on before returning;
        otherwise return them (the drain loop queues them breadth first).
        """
        if self._concurrent and len(routes) > 1:
            held = await self._deliver_concurrently(routes, run)
            if drain and held:
                await self._outlet.emit(held)
                return None
            return held
        held = None
        event = run[0]
        token = _set_run(run)
        try:
            for route in routes:
                run[4] = route.handler
                try:
                    direct = route.direct
                    if direct is not None:
                        await direct(event)
                    elif route.inline is not None:
                        result = route.inline(event)
                        if type(result) not in _plain_results and _is_awaitable(result):
                            await result
                    else:
                        await _enter(route, run)
                except Exception as exc:  # noqa: BLE001  # isolation is the contract
                    if not await self._recovered(route, run, exc):
                        run[3] = None
                        continue
                context: Context[Message] | None = run[3]
                if context is not None:
                    run[3] = None
                    if context._held:
                        if held is None:
                            held = []
                        held.extend(context._held)
        finally:
            run[4] = None
            _reset_run(token)
        if drain and held:
            await self._outlet.emit(held)
            return None
        return held

    async def _deliver_concurrently(
        self, routes: Sequence[Route], run: Run
    ) -> list[Envelope[Message]] | None:
        # Every subscriber sees the same envelope, so ids must exist before the split.
        envelope = envelope_of(run)
        outcomes: list[list[Envelope[Message]] | None] = [None] * len(routes)

        async def run_one(index: int, route: Route) -> None:
            own: Run = [run[0], run[1], envelope, None, route.handler]
            outcomes[index] = await self._run_isolated(route, own)

        async with anyio.create_task_group() as tasks:
            for index, route in enumerate(routes):
                tasks.start_soon(run_one, index, route)
        # Follow-ups keep subscriber registration order, whatever order runs finished in.
        held = [envelope for outcome in outcomes if outcome for envelope in outcome]
        return held or None

    async def _run_isolated(self, route: Route, run: Run) -> list[Envelope[Message]] | None:
        """Run one handler's whole chain on ``run``; record a failure instead of raising it."""
        token = _set_run(run)
        try:
            await route.chain(envelope_of(run))
        except Exception as exc:  # noqa: BLE001  # isolation is the contract
            await self._record_failure(route.handler, run, exc)
            return None
        finally:
            _reset_run(token)
        context: Context[Message] | None = run[3]
        return context._held if context is not None else None

    async def _recovered(self, route: Route, run: Run, exc: Exception) -> bool:
        """Give a failed subscriber run to its recovery; record it if that fails too."""
        recover = route.recover
        if recover is not None:
            try:
                await recover(last_envelope(run), exc, route.inner)
            except Exception as final:  # noqa: BLE001  # isolation is the contract
                exc = final
            else:
                return True
        await self._record_failure(route.handler, run, exc)
        return False

    async def _record_failure(self, handler: HandlerInfo, run: Run, exc: Exception) -> None:
        envelope = last_envelope(run)
        if _in_progress_elsewhere(exc) and defer(
            handler.name, envelope.replace(attempt=envelope.attempt + 1), _IN_PROGRESS_DELAY
        ):
            # Not poison: another delivery holds the idempotency key. Back to the queue
            # for this handler (from a worker or Lambda), to find the result later.
            return
        await self.record_dead_letter(
            DeadLetter.from_failure(self.codec, envelope, handler.name, exc),
            causation_id=envelope.causation_id,
        )

    async def record_dead_letter(self, letter: DeadLetter, causation_id: str | None = None) -> None:
        """Log ``letter`` as an error line and add it to :attr:`dead_letters`.

        For code that receives messages on the bus's behalf (a worker recording a body
        that did not decode, say); the bus records its own failed runs itself.
        """
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

    # -- messages from outside: a transport, the outbox, a dead letter -------------------

    async def handle_delivered(self, envelope: Envelope[Message]) -> None:
        """Run this service's handlers on a message that arrived through the transport.

        What a :class:`~messagebus.Worker` calls for each decoded delivery. A command
        goes to its handler, an event to every subscriber here (or only to the one named
        in its ``messagebus-handler`` header: a deferred retry), each run isolated as a
        follow-up is: a failure (after its retry policy) is a dead letter, not an
        exception. A command this service has no handler for (misrouted) is a dead
        letter too, and so is a deferred retry for a subscriber that no longer exists.
        Follow-ups of successful runs are then sent on.

        Raises:
            TransportError: the follow-ups could not be handed on; the message should
                return to the queue (its handlers may run again: be idempotent).
        """
        message = envelope.message
        run: Run = [message, None, envelope, None, None]
        if isinstance(message, Command):
            route = self._commands.get(type(message))
            if route is None:
                error = NoHandlerError(
                    f"service {self._service!r} received command "
                    f"{envelope.message_type!r} but has no handler for it (misrouted)"
                )
                await self.record_dead_letter(
                    DeadLetter.from_failure(self.codec, envelope, "<no handler>", error)
                )
                return
            run[4] = route.handler
            held = await self._run_isolated(route, run)
            if held:
                await self._outlet.emit(held)
            return
        run[4] = None
        routes = self._events.get(type(message))
        target = envelope.headers.get(HANDLER_HEADER)
        if target is not None:
            # A redelivered copy for one subscriber: the others have handled it already.
            routes = tuple(route for route in routes or () if route.handler.name == target)
            if not routes:
                # Renamed or removed by a deploy since the failure: say so, do not drop it.
                error = NoHandlerError(
                    f"service {self._service!r} received a deferred retry of "
                    f"{envelope.message_type!r} for subscriber {target!r}, which no longer "
                    "exists (renamed or removed since the failure)"
                )
                await self.record_dead_letter(
                    DeadLetter.from_failure(self.codec, envelope, target, error)
                )
                return
        if routes:
            await self._deliver(routes, run, True)

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
        route = self._table.route_named(type(message), letter.handler)
        run: Run = [message, None, envelope, None, route.handler]
        token = _set_run(run)
        try:
            result = await route.chain(envelope)
        except Exception as exc:
            failed = DeadLetter.from_failure(self.codec, last_envelope(run), letter.handler, exc)
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
            _reset_run(token)
        await store.delete(letter.id)
        context: Context[Message] | None = run[3]
        if context is not None and context._held:
            await self._outlet.emit(context._held)
        return result
