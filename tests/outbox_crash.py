"""A producer that commits a unit of work, then hangs until a test kills it (SIGKILL).

    python -m tests.outbox_crash sqlite PATH [claim]
    python -m tests.outbox_crash postgres DSN [claim]

In one unit of work it writes a post ("crash") and three messages, then prints
``committed``; with ``claim`` it then leases the rows as a relay about to deliver them
would, and prints ``claimed``. Then it waits forever: nothing is ever delivered.
"""

from __future__ import annotations

import sys

import anyio

from messagebus.outbox import PostgresOutbox, SQLiteOutbox
from tests.outbox_support import message


async def main(kind: str, location: str, claim: bool) -> None:
    store = SQLiteOutbox(location) if kind == "sqlite" else PostgresOutbox(location)
    placeholder = "?" if kind == "sqlite" else "%s"
    async with store:
        async with store.transaction() as tx:
            await tx.execute(f"INSERT INTO posts (title) VALUES ({placeholder})", ["crash"])
            tx.add([message(n, group="g") for n in range(3)])
        print("committed", flush=True)
        if claim:
            await store.claim("doomed-relay", lease=30.0, limit=10)
            print("claimed", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3:] == ["claim"])
