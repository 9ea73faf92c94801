"""A handler in inbox mode that writes its post, then hangs until a test kills it (SIGKILL).

    python -m tests.inbox_crash sqlite PATH
    python -m tests.inbox_crash postgres DSN SCHEMA

It sends ``PublishPost("crash")`` with idempotency key ``post-1`` to a bus in inbox mode
(:func:`tests.inbox_support.blog`); the handler inserts the post and publishes its event
in the unit of work, prints ``written``, and waits forever: the transaction never
commits.
"""

from __future__ import annotations

import sys

import anyio

from tests.inbox_support import blog, database_at
from tests.messages import PublishPost


async def hang() -> None:
    print("written", flush=True)
    await anyio.sleep_forever()


async def main(kind: str, location: str, schema: str | None) -> None:
    database = database_at(kind, location, schema)
    store = database.idempotency()
    app = blog(database.outbox(), store, after_write=hang)
    # The store first: its table exists before the unit of work, so the test can look.
    async with store, app.bus:
        await app.bus.send(PublishPost("crash"), idempotency_key="post-1")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
