"""One test's view of the application's bus: recorder, fake clock, replacements, idle.

:class:`BusHarness` bundles what the kit offers for a bus that is running (inside
``async with bus``, provisioned): the :class:`~messagebus.testing.BusRecorder` of what
leaves its handlers, the :class:`~messagebus.testing.FakeClock` its timed parts were
given, :func:`~messagebus.testing.run_until_idle` on that clock, handler replacement
for one block, and an assertion on its dead letters. For process managers it adds
:meth:`BusHarness.process` (a :class:`~messagebus.testing.ProcessUnderTest`),
:meth:`BusHarness.settle`, :meth:`BusHarness.advance` (move the fake clock and deliver
what fell due: timeouts) and :meth:`BusHarness.assert_scheduled`. The pytest plugin's
``messagebus_harness`` fixture makes one around the application's bus (see
docs/testing.md); without pytest, ``BusHarness.running(bus, clock)`` does the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

from messagebus._bus import MessageBus
from messagebus._envelope import Envelope
from messagebus._errors import InvalidArgumentError
from messagebus._handler_types import CommandClass, CommandHandler, EventSubscriber
from messagebus._messages import Command, Event, Message, wire_name
from messagebus.dead_letters import DeadLetter
from messagebus.process import ProcessManager, ProcessStore
from messagebus.testing._clock import FakeClock
from messagebus.testing._idle import Idle, run_until_idle
from messagebus.testing._process import ProcessUnderTest
from messagebus.testing._recorder import BusRecorder
from messagebus.testing._replace import replace_handler, replace_subscriber

__all__ = ["BusHarness"]

S = TypeVar("S")
C = TypeVar("C", bound=Command[Any])
E = TypeVar("E", bound=Event)
R = TypeVar("R")


class BusHarness:
    """The kit around one running bus, for one test; see the module.

    Args:
        bus: the application's bus, running.
        clock: the fake clock its timed parts were given (a new one if None: then
            nothing of the bus follows it unless the bus was built with it).
        recorder: the recorder, entered, of what leaves the bus's handlers.
    """

    def __init__(
        self, bus: MessageBus, recorder: BusRecorder, clock: FakeClock | None = None
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.clock = FakeClock() if clock is None else clock

    @classmethod
    @asynccontextmanager
    async def running(
        cls, bus: MessageBus, clock: FakeClock | None = None
    ) -> AsyncIterator[BusHarness]:
        """Enter ``bus``, provision its transport if it has one, and record for the block."""
        async with bus:
            if bus.transport is not None:
                await bus.provision()
            with BusRecorder(bus) as recorder:
                yield cls(bus, recorder, clock)

    async def run_until_idle(self, **options: Any) -> Idle:
        """:func:`~messagebus.testing.run_until_idle` on this bus and this clock."""
        return await run_until_idle(self.bus, clock=self.clock, **options)

    async def settle(self) -> None:
        """Deliver what committed and is due: run until idle, or drain the outbox relay.

        On the memory transport, :meth:`run_until_idle`; on a bus with an outbox and no
        transport, the relay's :meth:`~messagebus.outbox.OutboxRelay.drain` (rows go to
        this process's handlers, round after round until none is left); otherwise
        nothing (in-process dispatch is done when ``send`` or ``publish`` returns).
        Messages scheduled for later stay scheduled: only :meth:`advance` brings them.

        Raises:
            InvalidArgumentError: the bus runs on a transport other than the memory one.
            AssertionError: as :func:`~messagebus.testing.run_until_idle`, not idle.
        """
        if self.bus.transport is not None:
            await self.run_until_idle()
            return
        relay = self.bus.relay
        if relay is not None:
            while await relay.drain():
                pass  # what the delivered rows' handlers committed is the next round

    async def advance(self, by: timedelta | float) -> None:
        """Move the fake clock ``by`` (seconds or a timedelta), then :meth:`settle`.

        A scheduled message (a process manager's timeout) that fell due is delivered,
        and its handler's reaction recorded, before this returns. The outbox's store
        must run on this clock for that (``database.outbox(clock=clock)``).

        Raises:
            InvalidArgumentError: ``by`` is negative (or as :meth:`settle`).
        """
        seconds = by.total_seconds() if isinstance(by, timedelta) else float(by)
        await self.clock.advance(seconds)
        await self.settle()

    def assert_scheduled(
        self,
        message_type: type[Message],
        /,
        *,
        due_in: timedelta | float | None = None,
        **fields: Any,
    ) -> Envelope[Message]:
        """Return the first message of ``message_type`` scheduled with these ``fields``.

        ``due_in`` (seconds or a timedelta), if given, is its due time counted from the
        clock's present time: ``due_in=timedelta(minutes=30)`` right after the message
        that scheduled it. See :meth:`BusRecorder.assert_scheduled
        <messagebus.testing.BusRecorder.assert_scheduled>`.

        Raises:
            AssertionError: none was recorded; the message lists what was, with due times.
        """
        due = None
        if due_in is not None:
            seconds = due_in.total_seconds() if isinstance(due_in, timedelta) else due_in
            due = self.clock.time() + seconds
        return self.recorder.assert_scheduled(message_type, due=due, **fields)

    def process(self, manager: ProcessManager[S], store: ProcessStore) -> ProcessUnderTest[S]:
        """Return ``manager`` (registered on this bus with ``store``) to drive in a test.

        Raises:
            InvalidArgumentError: the bus has no outbox (a process manager needs one).
        """
        if self.bus.outbox is None:
            raise InvalidArgumentError("a process manager runs on a bus with an outbox")
        return ProcessUnderTest(self, manager, store)

    def replace_handler(
        self, command_type: CommandClass[C, R], fn: CommandHandler[C, R]
    ) -> AbstractContextManager[None]:
        """:func:`~messagebus.testing.replace_handler` on this bus (type-checked alike)."""
        return replace_handler(self.bus, command_type, fn)

    def replace_subscriber(
        self, event_type: type[E], name: str, fn: EventSubscriber[E]
    ) -> AbstractContextManager[None]:
        """:func:`~messagebus.testing.replace_subscriber` on this bus."""
        return replace_subscriber(self.bus, event_type, name, fn)

    async def assert_dead_lettered(
        self, message_type: type[Message], *, handler: str | None = None
    ) -> DeadLetter:
        """Return the one dead letter of ``message_type`` (by ``handler`` if given).

        Raises:
            AssertionError: there is none, or more than one; the message lists every
                dead letter the bus holds.
        """
        found = await self.bus.dead_letters.list(
            message_type=wire_name(message_type), handler=handler
        )
        if len(found) == 1:
            return found[0]
        everything = await self.bus.dead_letters.list()
        by = "" if handler is None else f" by {handler}"
        listing = "".join(f"\n  {line}" for line in _lines(everything)) or " none"
        raise AssertionError(
            f"expected one dead letter of {message_type.__qualname__}{by}, found "
            f"{len(found)}; dead letters:{listing}"
        )


def _lines(dead_letters: Sequence[DeadLetter]) -> list[str]:
    return [
        f"{letter.message_type} by {letter.handler} after {letter.attempts} attempt(s): "
        f"{letter.error_type}: {letter.error_message}"
        for letter in dead_letters
    ]
