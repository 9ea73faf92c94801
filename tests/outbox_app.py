"""An application module for ``messagebus outbox flush``: a bus on an SQLite outbox.

The outbox file is ``OUTBOX_APP_DB``; the bus has no transport, so its relay hands the
rows to its own subscriber, which keeps the post ids in ``indexed``.
"""

from __future__ import annotations

import os

from messagebus import MessageBus
from messagebus.outbox import SQLiteOutbox
from tests.messages import PostPublished

indexed: list[int] = []


async def index(event: PostPublished) -> None:
    indexed.append(event.post_id)


def make_bus() -> MessageBus:
    """A new bus on the outbox file OUTBOX_APP_DB names."""
    bus = MessageBus(outbox=SQLiteOutbox(os.environ["OUTBOX_APP_DB"]))
    bus.subscriber(PostPublished, index, name="index")
    return bus
