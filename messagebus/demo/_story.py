"""The demo's story: each scenario of the blog service, told through its log lines."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import structlog

from messagebus import CommandRejected, MessageBus
from messagebus.dead_letters import SQLiteDeadLetterStore
from messagebus.demo._app import Blog, ProcessPayment, PublishPost, RegisterUser, build_bus
from messagebus.idempotency import SQLiteIdempotencyStore


def configure_logging() -> None:
    """Configure structlog for a terminal: the application decides this, never the library."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


async def main(database: Path | None = None) -> None:
    """Tell the story of commands and events, one step at a time.

    Dead letters go to SQLite, the embedded default: ``database`` or a file in a
    temporary directory.
    """
    say = structlog.get_logger("demo").info
    with tempfile.TemporaryDirectory() as scratch:
        path = database or Path(scratch) / "blog.sqlite3"
        async with (
            SQLiteDeadLetterStore(path) as dead_letters,
            SQLiteIdempotencyStore(path) as idempotency,
        ):
            blog = Blog(followers={"ada": ["grace", "linus"]})
            await tell(say, blog, build_bus(blog, dead_letters, idempotency))
            say("dead letters and idempotency records are kept in SQLite", path=str(path))
    say("done")


async def tell(say: Any, blog: Blog, bus: MessageBus) -> None:
    """Run the scenarios on ``bus``, saying what happens to ``blog``."""
    async with bus:
        say("1. ada publishes a post: one command, one handler, then an event to two subscribers")
        post_id = await bus.send(PublishPost("ada", "Hello messagebus"))
        say("   post published", post_id=post_id, grace_inbox=blog.inboxes["grace"])

        say("2. a post without a title: the handler rejects the command, the sender sees why")
        try:
            await bus.send(PublishPost("ada", "   "))
        except CommandRejected as rejected:
            say("   rejected", reason=rejected.reason, posts=len(blog.posts))

        say("3. grace registers; the mail server fails twice, the third attempt works")
        blog.mail_server_failures_left = 2
        await bus.send(RegisterUser("grace", "grace@example.org"))
        say("   registered, and welcomed", users=sorted(blog.users), emails=blog.sent_emails)

        say("4. grace pays twice with one idempotency key (her client retried): one charge")
        payment = ProcessPayment("grace", 500)
        first = await bus.send(payment, idempotency_key="grace-2026-11")
        again = await bus.send(payment, idempotency_key="grace-2026-11")
        say("   paid", first=first.receipt_id, again=again.receipt_id, charges=blog.charges)

        say("5. the search cluster is down: that subscriber fails, the other one still runs")
        blog.search_is_down = True
        post_id = await bus.send(PublishPost("ada", "Events are facts"))
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
