"""A producer that schedules a message in a unit of work, then hangs until a test kills it.

    python -m tests.schedule_crash sqlite PATH DUE
    python -m tests.schedule_crash postgres DSN DUE

In one unit of work it writes a post ("scheduled") and schedules ``IndexPost(1)`` for
``DUE`` (seconds since the Unix epoch), then prints ``committed <schedule id>`` and
waits forever: its bus never runs, so nothing is delivered.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import anyio

from messagebus import MessageBus
from messagebus.outbox import PostgresOutbox, SQLiteOutbox
from tests.messages import IndexPost


async def main(kind: str, location: str, due: float) -> None:
    store = SQLiteOutbox(location) if kind == "sqlite" else PostgresOutbox(location)
    placeholder = "?" if kind == "sqlite" else "%s"
    bus = MessageBus(outbox=store)
    bus.handler(IndexPost, lambda message: None)
    async with store:
        async with bus.unit_of_work() as uow:
            await uow.execute(f"INSERT INTO posts (title) VALUES ({placeholder})", ["scheduled"])
            schedule_id = await bus.schedule(IndexPost(1), at=datetime.fromtimestamp(due, UTC))
        print("committed", schedule_id, flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], float(sys.argv[3]))
