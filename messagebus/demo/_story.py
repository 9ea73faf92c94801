"""The demo's story: each scenario of the blog service, told through its log lines."""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import structlog

from messagebus import CommandRejected, MessageBus, Worker
from messagebus.dead_letters import SQLiteDeadLetterStore
from messagebus.demo._app import (
    POSTS_TABLE,
    Blog,
    ProcessPayment,
    PublishPost,
    RegisterUser,
    build_bus,
)
from messagebus.demo._billing import (
    PAYMENT_WINDOW,
    Billing,
    PaymentReceived,
    SubscriptionRequested,
    build_billing,
    subscriptions,
)
from messagebus.demo._narrated import NarratedTransport
from messagebus.extension import Transport
from messagebus.idempotency import SQLiteIdempotencyStore
from messagebus.outbox import SQLiteOutbox
from messagebus.sqlite import SQLiteDatabase
from messagebus.testing import FakeClock
from messagebus.transports.memory import InMemoryTransport

ID_FIELDS = frozenset({"message_id", "correlation_id", "causation_id", "dead_letter_id"})


def short_ids(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Shorten ids to their last 8 characters, and leave out ids that are None.

    Ids are UUIDv7: the start is the time, the end is random, so the end tells two
    messages apart in a short story. A service logs them whole.
    """
    for field in ID_FIELDS & event_dict.keys():
        value = event_dict[field]
        if value is None:
            del event_dict[field]
        elif isinstance(value, str) and len(value) > 8:
            event_dict[field] = "..." + value[-8:]
    return event_dict


def one_line_errors(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """Put an exception on its line as ``error=Type: message`` instead of a traceback.

    The story's failures are expected; their tracebacks would bury it. A service keeps
    them (``structlog.processors.dict_tracebacks`` in JSON).
    """
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is None or exc_info is False:
        return event_dict
    error = sys.exc_info()[1] if exc_info is True else exc_info
    if isinstance(error, tuple):
        error = error[1]
    if isinstance(error, BaseException):
        # The retry layer's own error says how it gave up; its cause says why.
        cause = error.__cause__ or error
        event_dict.setdefault("error", f"{type(cause).__name__}: {cause}")
    return event_dict


def configure_logging() -> None:
    """Configure structlog for a terminal: the application decides this, never the library."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            short_ids,
            one_line_errors,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


async def main(database: Path | None = None, transport: Transport | None = None) -> None:
    """Tell the story of commands and events, one step at a time.

    The embedded defaults: messages travel on the in-memory transport (give
    ``transport`` for another, such as SQS), and the posts, the outbox, the dead
    letters and the idempotency records share one SQLite file: ``database``, or a file
    in a temporary directory.
    """
    say = structlog.get_logger("demo").info
    with tempfile.TemporaryDirectory() as scratch:
        path = database or Path(scratch) / "blog.sqlite3"
        chosen = InMemoryTransport() if transport is None else transport
        async with (
            SQLiteDeadLetterStore(path) as dead_letters,
            SQLiteIdempotencyStore(path) as idempotency,
        ):
            blog = Blog(followers={"ada": ["grace", "linus"]})
            bus = build_bus(
                blog,
                outbox=SQLiteOutbox(path),
                transport=NarratedTransport(chosen, say),
                dead_letters=dead_letters,
                idempotency=idempotency,
            )
            await tell(say, blog, bus)
        await tell_billing(say, path)
        if database is None:
            say("posts, outbox, dead letters, idempotency records and processes were in a")
            say("   scratch file, removed now: keep them with --database PATH")
    if database is not None:
        say(
            "posts, outbox, dead letters, idempotency records and processes are in SQLite",
            path=str(path),
        )
    say("done")


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str) -> None:
    """Wait until ``check()`` holds: messages travel through a queue, so effects come later."""
    with anyio.fail_after(30):
        while True:
            outcome = check()
            if not isinstance(outcome, bool):
                outcome = await outcome
            if outcome:
                return
            await anyio.sleep(0.01)  # a demo polls; the tests wait on events instead
    raise AssertionError(what)  # pragma: no cover - fail_after raises first


async def tell(say: Any, blog: Blog, bus: MessageBus) -> None:
    """Run the scenarios on ``bus`` with a worker beside it, saying what happens to ``blog``."""
    async with bus:
        await bus.provision()
        async with bus.unit_of_work() as uow:
            await uow.execute(POSTS_TABLE)
        worker = Worker(bus, concurrency=4, wait=1.0)
        async with anyio.create_task_group() as tasks:
            await tasks.start(worker.run)
            await scenarios(say, blog, bus)
            worker.stop()


async def count_posts(bus: MessageBus) -> int:
    async with bus.unit_of_work() as uow:
        ((count,),) = await uow.fetch("SELECT count(*) FROM posts")
    return int(count)


async def scenarios(say: Any, blog: Blog, bus: MessageBus) -> None:
    """Tell the story itself, while a worker handles what arrives in the blog's queue."""
    say("1. ada publishes a post: the post and its event commit together (the outbox);")
    say("   the relay hands the event to the transport; a worker runs both subscribers")
    post_id = await bus.send(PublishPost("ada", "Hello messagebus"))
    await eventually(lambda: "hello" in blog.search_index, "the post reached the search index")
    say("   post published", post_id=post_id, grace_inbox=blog.inboxes["grace"])

    say("2. a post without a title: the handler rejects the command, the sender sees why")
    try:
        await bus.send(PublishPost("ada", "   "))
    except CommandRejected as rejected:
        say("   rejected", reason=rejected.reason, posts=await count_posts(bus))

    say("3. grace registers; the mail server fails twice, the third attempt works")
    blog.mail_server_failures_left = 2
    await bus.send(RegisterUser("grace", "grace@example.org"))
    await eventually(lambda: bool(blog.sent_emails), "the welcome email was sent")
    say("   registered, and welcomed", users=sorted(blog.users), emails=blog.sent_emails)

    say("4. grace pays twice with one idempotency key (her client retried): one charge")
    payment = ProcessPayment("grace", 500)
    first = await bus.send(payment, idempotency_key="grace-2026-11")
    again = await bus.send(payment, idempotency_key="grace-2026-11")
    say("   paid", first=first.receipt_id, again=again.receipt_id, charges=blog.charges)

    say("5. the search cluster is down: that subscriber fails, the other one still runs")
    blog.search_is_down = True
    post_id = await bus.send(PublishPost("ada", "Events are facts"))

    async def dead_lettered() -> bool:
        return len(await bus.dead_letters.list()) == 1

    await eventually(dead_lettered, "the search index update was dead-lettered")
    say("   the publisher carried on", post_id=post_id, linus_inbox=blog.inboxes["linus"])

    say("6. after its retries the failure is kept as a dead letter, not just a log line")
    (letter,) = await bus.dead_letters.list()
    say(
        "   dead letter",
        handler=letter.handler,
        attempts=letter.attempts,
        error=f"{letter.error_type}: {letter.error_message}",
        message=bus.codec.decode(letter.body).message,
    )

    say("7. the cluster is back: replay the dead letter to that one subscriber")
    blog.search_is_down = False
    await bus.replay(letter.id)
    say(
        "   replayed",
        words=sorted(blog.search_index),
        dead_letters=len(await bus.dead_letters.list()),
    )


async def tell_billing(say: Any, path: Path) -> None:
    """Tell the story of a process manager: the billing service's subscriptions.

    Its clock is a :class:`~messagebus.testing.FakeClock` (the outbox, where the
    deadlines wait, and the process store run on it), so half an hour passes at once.
    Its process state joins the blog's file.
    """
    clock = FakeClock()
    billing = Billing()
    database = SQLiteDatabase(path)
    bus = build_billing(billing, database, clock=clock)
    processes = database.processes()
    relay, outbox = bus.relay, bus.outbox
    assert relay is not None  # the billing bus has an outbox
    assert outbox is not None

    async def stage(key: str) -> str:
        record = await processes.get(subscriptions.name, key)
        if record is None:  # pragma: no cover - each one started
            return "none"
        return "completed" if record.completed else "waiting for payment"

    async with database, bus:
        say("8. a process manager: linus and grace ask for paid subscriptions to ada; each")
        say("   subscription's process sends an invoice and sets a 30-minute payment deadline")
        say("   (a timeout, waiting in the outbox); billing runs on a fake clock: no one waits")
        await bus.publish(SubscriptionRequested("sub-linus", "linus", "ada", 500))
        await bus.publish(SubscriptionRequested("sub-grace", "grace", "ada", 500))
        await relay.drain()
        say(
            "   invoices sent",
            invoices=list(billing.invoices),
            deadlines_waiting=(await outbox.status()).scheduled,
            linus_process=await stage("sub-linus"),
        )
        await bus.publish(PaymentReceived("sub-grace", 500))
        await relay.drain()
        say(
            "   grace paid in time",
            notices=list(billing.notices),
            grace_process=await stage("sub-grace"),
        )
        minutes = int(PAYMENT_WINDOW.total_seconds() // 60)
        say(f"   {minutes} minutes pass on the fake clock: both deadlines fall due")
        await clock.advance(PAYMENT_WINDOW.total_seconds())
        await relay.drain()
        say(
            "   linus never paid: cancelled; grace's deadline met a completed process: ignored",
            notices=billing.notices[1:],
            linus_process=await stage("sub-linus"),
            deadlines_waiting=(await outbox.status()).scheduled,
        )
