"""A process manager whose start requests a timeout, then a hang until a test kills it.

    python -m tests.process_crash sqlite PATH [claim]
    python -m tests.process_crash postgres DSN SCHEMA [claim]

The bus runs :func:`payment_process` on the database with a fake clock standing at
``EPOCH``: ``OrderOpened("o-1")`` starts the instance, which requests a
``PaymentTimedOut`` due ``TIMEOUT`` seconds later, all in one transaction. Once that
committed it prints ``committed``; with ``claim``, a relay's store whose clock reads the
due time then leases the timeout's row (``LEASE`` seconds) as a relay about to deliver
it would, and it prints ``claimed``. Then it waits forever: the bus's clock never moves,
so its relay never delivers the timeout. The test kills it with SIGKILL there.
"""

from __future__ import annotations

import sys

import anyio
import attrs

from messagebus import Command, Event, MessageBus
from messagebus.process import Process, ProcessManager
from messagebus.testing import FakeClock
from tests.inbox_support import database_at

PROCESS = "test.crash.payment"
TIMEOUT = 1800.0
LEASE = 30.0


@attrs.frozen
class OrderOpened(Event, name="test.pm-crash.order-opened"):
    order_id: str


@attrs.frozen
class PaymentTimedOut(Command[None], name="test.pm-crash.payment-timed-out"):
    order_id: str


@attrs.frozen
class OrderCancelled(Event, name="test.pm-crash.order-cancelled"):
    order_id: str


@attrs.define
class Payment:
    order_id: str


def payment_process(timed_out: list[str]) -> ProcessManager[Payment]:
    """Return the process: a start that requests the timeout, and the timeout's handler.

    ``timed_out`` gets the order id each time the timeout's handler runs.
    """
    payments = ProcessManager(PROCESS, Payment)

    @payments.starts(OrderOpened, correlate=lambda event: event.order_id)
    async def opened(event: OrderOpened, process: Process[Payment]) -> Payment:
        process.schedule(PaymentTimedOut(event.order_id), delay=TIMEOUT)
        return Payment(event.order_id)

    @payments.handles(PaymentTimedOut, correlate=lambda command: command.order_id)
    async def timed_out_(
        state: Payment, command: PaymentTimedOut, process: Process[Payment]
    ) -> None:
        timed_out.append(state.order_id)
        process.publish(OrderCancelled(state.order_id))
        process.complete()

    return payments


async def main(kind: str, location: str, schema: str | None, claim: bool) -> None:
    clock = FakeClock()
    database = database_at(kind, location, schema)
    bus = MessageBus(outbox=database.outbox(clock=clock))
    payment_process([]).register(
        bus, store=database.processes(clock=clock), inbox=database.idempotency(clock=clock)
    )
    async with database, bus:
        await bus.publish(OrderOpened("o-1"))  # returns once the run committed
        print("committed", flush=True)
        if claim:
            due = FakeClock(start=clock.time() + TIMEOUT)
            leased = await database.outbox(clock=due).claim("doomed-relay", lease=LEASE, limit=10)
            assert len(leased) == 1, leased  # the timeout, and nothing else
            print("claimed", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if arg != "claim"]
    schema = args[2] if len(args) > 2 else None
    anyio.run(main, args[0], args[1], schema, "claim" in sys.argv[1:])
