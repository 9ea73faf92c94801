"""One test's view of the application's bus: recorder, fake clock, replacements, idle.

:class:`BusHarness` bundles what the kit offers for a bus that is running (inside
``async with bus``, provisioned): the :class:`~messagebus.testing.BusRecorder` of what
leaves its handlers, the :class:`~messagebus.testing.FakeClock` its timed parts were
given, :func:`~messagebus.testing.run_until_idle` on that clock, handler replacement
for one block, and an assertion on its dead letters. The pytest plugin's
``messagebus_harness`` fixture makes one around the application's bus (see
docs/testing.md); without pytest, ``BusHarness.running(bus, clock)`` does the same.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

from messagebus._bus import MessageBus
from messagebus._messages import Command, Event, Message, wire_name
from messagebus.dead_letters import DeadLetter
from messagebus.testing._clock import FakeClock
from messagebus.testing._idle import Idle, run_until_idle
from messagebus.testing._recorder import BusRecorder
from messagebus.testing._replace import replace_handler, replace_subscriber

__all__ = ["BusHarness"]


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

    def replace_handler(
        self, command_type: type[Command[Any]], fn: Callable[..., Any]
    ) -> AbstractContextManager[None]:
        """:func:`~messagebus.testing.replace_handler` on this bus."""
        return replace_handler(self.bus, command_type, fn)

    def replace_subscriber(
        self, event_type: type[Event], name: str, fn: Callable[..., Any]
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
