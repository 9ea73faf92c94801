"""An application module for the CLI tests: a bus whose subscriber fails until fixed."""

from __future__ import annotations

from messagebus import MessageBus
from tests.messages import PostPublished

search_is_up = False
indexed: list[int] = []

bus = MessageBus()


@bus.subscriber(PostPublished, name="index")
async def index(event: PostPublished) -> None:
    if not search_is_up:
        raise ConnectionError("search cluster timed out")
    indexed.append(event.post_id)


def make_bus() -> MessageBus:
    """A factory, as ``--app tests.cli_app:make_bus`` would name it."""
    return bus


def make_bus_for(service: str, *, debug: bool = False) -> MessageBus:
    """A factory that needs an argument: --app cannot call it."""
    return bus


not_a_bus = 42
