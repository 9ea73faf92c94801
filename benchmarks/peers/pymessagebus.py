"""Peer adapter: ``pymessagebus`` (https://github.com/DrBenton/pymessagebus,
PyPI ``pymessagebus``).

Usage follows the project README ("Synopsis", "API", "Middlewares",
"Logging middleware"): messages are ``typing.NamedTuple`` classes, handlers are
plain functions registered with ``bus.add_handler(MessageClass, handler)``.

pymessagebus is synchronous (``SYNC = True``): the async runner calls
``bus.handle(message)`` in a plain loop, never awaiting.

- S1/S4/S5: ``CommandBus`` (one handler per message class, ``handle`` returns
  the handler's result).
- S2/S3: ``MessageBus`` (any number of handlers, ``handle`` returns the list
  of results).
- S4: three no-op ``(message, next_) -> next_(message)`` middlewares.
- S5: the bundled ``pymessagebus.middleware.logger.get_logger_middleware``
  (DEBUG by default) with its logger at WARNING.  It formats its f-strings
  before calling ``logger.log`` even when the level is filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from ._common import (
    S3_SUBSCRIBERS,
    S4_MIDDLEWARES,
    Counter,
    Runner,
    check_calls,
)

NAME = "pymessagebus"
SYNC = True


class BenchCommand(NamedTuple):
    seq: int


class BenchEvent(NamedTuple):
    seq: int


def available() -> bool:
    try:
        import pymessagebus  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def build(scenario: str, n: int) -> Runner | None:
    from pymessagebus import CommandBus, MessageBus

    counter = Counter()
    handle: Callable[[Any], Any]

    if scenario in ("S1", "S4", "S5"):
        middlewares: list[Callable[[Any, Callable[[Any], Any]], Any]] = []
        if scenario == "S4":
            middlewares = [_make_noop_middleware() for _ in range(S4_MIDDLEWARES)]
        elif scenario == "S5":
            from pymessagebus.middleware.logger import (  # type: ignore[import-untyped]
                get_logger_middleware,
            )

            logger = logging.getLogger("messagebus.bench.peers.pymessagebus")
            logger.setLevel(logging.WARNING)
            middlewares = [get_logger_middleware(logger)]

        def handle_command(command: BenchCommand) -> None:
            counter.calls += 1

        command_bus = CommandBus(middlewares=middlewares)
        command_bus.add_handler(BenchCommand, handle_command)
        handle = command_bus.handle
        messages: list[Any] = [BenchCommand(i) for i in range(n)]
        probe: Any = BenchCommand(-1)
        per_message = 1

    elif scenario in ("S2", "S3"):
        per_message = 1 if scenario == "S2" else S3_SUBSCRIBERS
        message_bus = MessageBus()
        for _ in range(per_message):
            message_bus.add_handler(BenchEvent, _make_event_handler(counter))
        handle = message_bus.handle
        messages = [BenchEvent(i) for i in range(n)]
        probe = BenchEvent(-1)

    else:
        return None

    handle(probe)
    check_calls(NAME, scenario, counter, per_message)

    async def run() -> None:
        for message in messages:
            handle(message)

    return run


def _make_event_handler(counter: Counter) -> Callable[[BenchEvent], None]:
    def on_event(event: BenchEvent) -> None:
        counter.calls += 1

    return on_event


def _make_noop_middleware() -> Callable[[Any, Callable[[Any], Any]], Any]:
    def noop_middleware(message: Any, next_: Callable[[Any], Any]) -> Any:
        return next_(message)

    return noop_middleware
