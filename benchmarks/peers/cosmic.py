"""Peer adapter: ``cosmic`` -- a self-contained reference message bus written
from *Architecture Patterns with Python* ("Cosmic Python", Percival & Gregory),
chapter 10 "Commands and Command Handler" (``src/allocation/service_layer/
messagebus.py``), made async.

Shape kept from the book:

- ``Command`` / ``Event`` marker base classes (dataclasses);
- a handler table per bus: ``event_handlers: dict[type[Event], list[handler]]``
  and ``command_handlers: dict[type[Command], handler]`` (the book's
  ``EVENT_HANDLERS`` / ``COMMAND_HANDLERS``; held per bus instance, as in the
  book's chapter 13 ``MessageBus`` class, so builds do not share state);
- ``handle(message)`` runs a queue loop (``queue.pop(0)``) and dispatches on
  ``isinstance(message, Event)`` / ``isinstance(message, Command)``;
- ``handle_event`` logs and swallows each handler's exception, ``handle_command``
  logs and re-raises; both keep the book's ``logger.debug`` calls.

Differences: handlers are ``async def`` and awaited; there is no unit of work,
so ``uow.collect_new_events()`` is omitted (nothing would ever be queued).

No middleware concept in the book: S4 and S5 are not supported.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._common import S3_SUBSCRIBERS, Counter, Runner, check_calls, run_blocking

NAME = "cosmic"
SYNC = False

logger = logging.getLogger(__name__)


# --- the message bus (book shape) -------------------------------------------


class Command:
    pass


class Event:
    pass


Message = Command | Event
Handler = Callable[[Any], Awaitable[Any]]


class MessageBus:
    def __init__(
        self,
        event_handlers: dict[type[Event], list[Handler]],
        command_handlers: dict[type[Command], Handler],
    ) -> None:
        self.event_handlers = event_handlers
        self.command_handlers = command_handlers

    async def handle(self, message: Message) -> list[Any]:
        results = []
        queue: list[Message] = [message]
        while queue:
            message = queue.pop(0)
            if isinstance(message, Event):
                await self.handle_event(message, queue)
            elif isinstance(message, Command):
                cmd_result = await self.handle_command(message, queue)
                results.append(cmd_result)
            else:
                # The book raises a bare Exception here.
                raise TypeError(f"{message} was not an Event or Command")
        return results

    async def handle_event(self, event: Event, queue: list[Message]) -> None:
        for handler in self.event_handlers[type(event)]:
            try:
                logger.debug("handling event %s with handler %s", event, handler)
                await handler(event)
            except Exception:
                logger.exception("Exception handling event %s", event)
                continue

    async def handle_command(self, command: Command, queue: list[Message]) -> Any:
        logger.debug("handling command %s", command)
        try:
            handler = self.command_handlers[type(command)]
            result = await handler(command)
        except Exception:
            logger.exception("Exception handling command %s", command)
            raise
        return result


# --- benchmark adapter -------------------------------------------------------


@dataclass
class BenchCommand(Command):
    seq: int


@dataclass
class BenchEvent(Event):
    seq: int


def available() -> bool:
    return True


def build(scenario: str, n: int) -> Runner | None:
    counter = Counter()
    messages: list[Message]

    if scenario == "S1":

        async def handle_command(command: BenchCommand) -> None:
            counter.calls += 1

        bus = MessageBus(event_handlers={}, command_handlers={BenchCommand: handle_command})
        messages = [BenchCommand(i) for i in range(n)]
        probe: Message = BenchCommand(-1)
        per_message = 1
    elif scenario in ("S2", "S3"):
        per_message = 1 if scenario == "S2" else S3_SUBSCRIBERS
        handlers = [_make_event_handler(counter) for _ in range(per_message)]
        bus = MessageBus(event_handlers={BenchEvent: handlers}, command_handlers={})
        messages = [BenchEvent(i) for i in range(n)]
        probe = BenchEvent(-1)
    else:
        return None

    run_blocking(bus.handle(probe))
    check_calls(NAME, scenario, counter, per_message)
    handle = bus.handle

    async def run() -> None:
        for message in messages:
            await handle(message)

    return run


def _make_event_handler(counter: Counter) -> Handler:
    async def on_event(event: BenchEvent) -> None:
        counter.calls += 1

    return on_event
