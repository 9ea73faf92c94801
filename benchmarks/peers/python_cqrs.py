"""Peer adapter: ``python-cqrs`` (https://github.com/vadikko2/python-cqrs,
PyPI ``python-cqrs``, import name ``cqrs``).

Usage follows the project README ("Quick Start", "DI container / di library",
"Bootstrap", "Event Handlers") and the docstrings of ``RequestMediator``,
``cqrs.bootstrap.requests.setup_mediator`` and ``cqrs.bootstrap.events.bootstrap``:

- Commands are ``cqrs.Request[None]`` (dataclass-based by default in 5.x),
  handled by a ``cqrs.RequestHandler`` subclass bound with ``RequestMap.bind``;
  dispatch is ``await mediator.send(command)``.
- Events are ``cqrs.DomainEvent`` (frozen dataclasses) handled by
  ``cqrs.EventHandler`` subclasses bound with ``EventMap.bind``; dispatch is
  ``await event_mediator.send(event)`` on an ``EventMediator`` built with
  ``cqrs.bootstrap.events.bootstrap`` (the documented entry point for events
  that are not produced by a command handler).
- The container is the default one, a plain ``di.Container()`` wrapped in
  ``cqrs.DIContainer`` (what ``bootstrap`` does).  Handler *classes* are
  registered, so every dispatch resolves and instantiates the handler through
  the DI container -- that is how python-cqrs works, not an adapter choice.

Scenarios:

- S1: ``setup_event_emitter`` + ``setup_mediator(middlewares=[])`` -- the
  lightest documented request-mediator wiring.  Note: ``bootstrap()`` (the
  README quick start) *always* appends ``LoggingMiddleware``, so "README
  default" commands cost what S5 measures.
- S4: same as S1 with three no-op ``cqrs.middlewares.Middleware`` objects.
- S5: ``cqrs.bootstrap.requests.bootstrap(...)`` as in the README, which
  installs the built-in ``LoggingMiddleware`` (logger ``"cqrs"``, DEBUG calls);
  the ``"cqrs"`` logger level is set to WARNING here so output is filtered.
  The middleware still builds ``request.to_dict()`` for the ``extra=`` argument
  before the level check.
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

NAME = "python-cqrs"
SYNC = False


def available() -> bool:
    try:
        import cqrs  # noqa: F401
        import di  # noqa: F401
    except ImportError:
        return False
    return True


def build(scenario: str, n: int) -> Runner | None:
    if scenario in ("S1", "S4", "S5"):
        return _build_command(scenario, n)
    if scenario in ("S2", "S3"):
        return _build_event(scenario, n)
    return None


def _build_command(scenario: str, n: int) -> Runner:
    import cqrs
    import di
    from cqrs.bootstrap import requests as request_bootstrap

    counter = Counter()

    class BenchCommand(cqrs.Request[None]):
        seq: int

    class BenchCommandHandler(cqrs.RequestHandler[BenchCommand]):
        async def handle(self, request: BenchCommand) -> None:
            counter.calls += 1

    def commands_mapper(mapper: cqrs.RequestMap[Any]) -> None:
        mapper.bind(BenchCommand, BenchCommandHandler)

    mediator: cqrs.RequestMediator
    if scenario == "S5":
        logging.getLogger("cqrs").setLevel(logging.WARNING)
        mediator = request_bootstrap.bootstrap(
            di_container=di.Container(), commands_mapper=commands_mapper
        )
    else:
        container = cqrs.DIContainer()
        container.attach_external_container(di.Container())
        middlewares: list[Any] = []
        if scenario == "S4":
            middlewares = [_NoopMiddleware() for _ in range(S4_MIDDLEWARES)]
        emitter = request_bootstrap.setup_event_emitter(container)
        mediator = request_bootstrap.setup_mediator(
            emitter, container, middlewares=middlewares, commands_mapper=commands_mapper
        )

    messages = [BenchCommand(seq=i) for i in range(n)]
    send: Callable[[Any], Awaitable[Any]] = mediator.send
    run_blocking(send(BenchCommand(seq=-1)))
    check_calls(NAME, scenario, counter, 1)

    async def run() -> None:
        for message in messages:
            await send(message)

    return run


def _build_event(scenario: str, n: int) -> Runner:
    import cqrs
    import di
    from cqrs.bootstrap import events as event_bootstrap

    counter = Counter()

    class BenchEvent(cqrs.DomainEvent):
        seq: int

    subscribers = 1 if scenario == "S2" else S3_SUBSCRIBERS
    # EventMap.bind rejects the same handler class twice: one class per subscriber.
    handler_classes = [_make_event_handler(counter, i) for i in range(subscribers)]

    def events_mapper(mapper: cqrs.EventMap[Any]) -> None:
        for handler_class in handler_classes:
            mapper.bind(BenchEvent, handler_class)

    mediator = event_bootstrap.bootstrap(di_container=di.Container(), events_mapper=events_mapper)

    messages = [BenchEvent(seq=i) for i in range(n)]
    send: Callable[[Any], Awaitable[None]] = mediator.send
    run_blocking(send(BenchEvent(seq=-1)))
    check_calls(NAME, scenario, counter, subscribers)

    async def run() -> None:
        for message in messages:
            await send(message)

    return run


def _make_event_handler(counter: Counter, index: int) -> type[Any]:
    import cqrs

    class BenchEventHandler(cqrs.EventHandler[Any]):
        async def handle(self, event: Any) -> None:
            counter.calls += 1

    BenchEventHandler.__name__ = BenchEventHandler.__qualname__ = f"BenchEventHandler{index}"
    return BenchEventHandler


class _NoopMiddleware:
    """A ``cqrs.middlewares.Middleware`` (structural protocol) that only forwards."""

    async def __call__(self, request: Any, handle: Callable[[Any], Any]) -> Any:
        return await handle(request)
