"""Peer adapter: ``lato`` (https://github.com/pgorecki/lato, PyPI ``lato``).

Usage follows lato's README ("Example of a modular monolith") and its
"Concurrency" doc page (``docs/concurrency.rst``): handlers are registered on an
``ApplicationModule`` with ``@module.handler(MessageType)``, the module is added
with ``app.include_submodule(module)``, and the async API is used:
``await app.execute_async(command)`` for commands and
``await app.publish_async(event)`` for events.  Every call opens a lato
``TransactionContext`` (copy of the dependency provider, signature-based
argument resolution) -- that is lato's normal per-message cost.

Messages are lato ``Command`` / ``Event`` classes, i.e. pydantic models (each
instance also gets a ``uuid4`` id); they are built before the runner starts.

- S4: three no-op ``@app.transaction_middleware`` async middlewares.
- S5: lato ships no logging middleware; the README *documents* one written by
  the user (``logging_middleware`` reading ``ctx[logging.Logger]`` and logging
  an f-string with ``repr`` of the current message).  S5 uses that README
  middleware, made async, with the logger level at WARNING so the DEBUG lines
  are filtered out.  Drop S5 for lato if only built-in middlewares should count.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ._common import (
    S3_SUBSCRIBERS,
    S4_MIDDLEWARES,
    Counter,
    Runner,
    check_calls,
    run_blocking,
)

NAME = "lato"
SYNC = False


def available() -> bool:
    try:
        import lato  # noqa: F401
    except ImportError:
        return False
    return True


def build(scenario: str, n: int) -> Runner | None:
    import lato

    counter = Counter()
    module = lato.ApplicationModule("bench_module")

    if scenario in ("S1", "S4", "S5"):

        class BenchCommand(lato.Command):
            seq: int

        @module.handler(BenchCommand)
        async def handle_command(command: BenchCommand) -> None:
            counter.calls += 1

        if scenario == "S5":
            logger = logging.getLogger("messagebus.bench.peers.lato")
            logger.setLevel(logging.WARNING)
            # README: the logger is an application-level dependency.
            app = lato.Application("bench", logger=logger)
            app.transaction_middleware(_readme_logging_middleware)  # type: ignore[no-untyped-call]
        else:
            app = lato.Application("bench")
        if scenario == "S4":
            for _ in range(S4_MIDDLEWARES):
                app.transaction_middleware(_make_noop_middleware())  # type: ignore[no-untyped-call]

        app.include_submodule(module)
        messages: list[Any] = [BenchCommand(seq=i) for i in range(n)]
        dispatch: Callable[[Any], Awaitable[Any]] = app.execute_async
        per_message = 1
        probe: Any = BenchCommand(seq=-1)

    elif scenario in ("S2", "S3"):

        class BenchEvent(lato.Event):
            seq: int

        app = lato.Application("bench")

        subscribers = 1 if scenario == "S2" else S3_SUBSCRIBERS
        for _ in range(subscribers):
            module.handler(BenchEvent)(_make_event_handler(counter))

        app.include_submodule(module)
        messages = [BenchEvent(seq=i) for i in range(n)]
        dispatch = app.publish_async
        per_message = subscribers
        probe = BenchEvent(seq=-1)

    else:
        return None

    run_blocking(dispatch(probe))
    check_calls(NAME, scenario, counter, per_message)

    async def run() -> None:
        for message in messages:
            await dispatch(message)

    return run


def _make_event_handler(counter: Counter) -> Callable[[Any], Awaitable[None]]:
    # A fresh function object per subscriber: lato de-duplicates handlers
    # registered twice with the same function.
    async def on_event(event: Any) -> None:
        counter.calls += 1

    return on_event


def _make_noop_middleware() -> Callable[[Any, Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    async def noop_middleware(ctx: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
        return await call_next()

    return noop_middleware


async def _readme_logging_middleware(ctx: Any, call_next: Callable[[], Awaitable[Any]]) -> Any:
    # lato README "logging_middleware", async form (as required by execute_async).
    logger = ctx[logging.Logger]
    description = (
        f"{ctx.current_action[1]} -> {ctx.current_action[0]!r}" if ctx.current_action else ""
    )
    logger.debug(f"Executing {description}...")
    result = await call_next()
    logger.debug(f"Finished executing {description}")
    return result
