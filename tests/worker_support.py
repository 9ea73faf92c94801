"""Running a worker beside a test: started before the block, stopped after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from messagebus import MessageBus, Worker


@asynccontextmanager
async def working(bus: MessageBus) -> AsyncIterator[Worker]:
    """Run a worker of ``bus`` for the block (the bus must be running)."""
    worker = Worker(bus)
    async with anyio.create_task_group() as tasks:
        await tasks.start(worker.run)
        yield worker
        worker.stop()
