"""The blog service: its messages, its state and its handlers.

``PublishPost`` (a command) writes a post to the database and announces
``PostPublished`` (an event) through the outbox, in one transaction; two subscribers
react to it: one notifies the author's followers, one updates the search index.
``RegisterUser`` announces ``UserRegistered``, whose subscriber sends a welcome email
through a flaky mail server. Nothing here knows how messages travel (in memory or on
SQS) or where the outbox lives: :func:`build_bus`'s caller decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import attrs

from messagebus import Command, CommandRejected, Context, Envelope, Event, Message, MessageBus
from messagebus.extension import (
    Clock,
    DeadLetterStore,
    IdempotencyStore,
    OutboxStore,
    Transport,
)
from messagebus.idempotency import InMemoryIdempotencyStore
from messagebus.middleware import (
    IdempotencyMiddleware,
    LoggingMiddleware,
    RetryMiddleware,
    UnitOfWorkMiddleware,
)
from messagebus.retry import ExponentialBackoff, RetryPolicy

POSTS_TABLE = """CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY, author TEXT NOT NULL, title TEXT NOT NULL
)"""
"""The blog's own table, beside the outbox's in the same SQLite file."""


@attrs.frozen
class PublishPost(Command[int], name="blog.post.publish"):
    """Publish a post; the result is the new post's id."""

    author: str
    title: str


@attrs.frozen
class PostPublished(Event, name="blog.post.published"):
    """A post went live."""

    post_id: int
    author: str
    title: str


@attrs.frozen
class RegisterUser(Command[None], name="accounts.user.register"):
    """Open an account."""

    name: str
    email: str


@attrs.frozen
class UserRegistered(Event, name="accounts.user.registered"):
    """An account was opened."""

    name: str
    email: str


@attrs.frozen
class Receipt:
    """What a payment returns."""

    receipt_id: str
    user: str
    amount_cents: int


@attrs.frozen
class ProcessPayment(Command[Receipt], name="billing.payment.process"):
    """Charge a user; clients retry it, so it carries an idempotency key."""

    user: str
    amount_cents: int


@attrs.define
class Blog:
    """The service's state; a database in a real service."""

    followers: dict[str, list[str]] = attrs.field(factory=dict)
    inboxes: dict[str, list[str]] = attrs.field(factory=dict)
    search_index: dict[str, int] = attrs.field(factory=dict)
    search_is_down: bool = False
    users: dict[str, str] = attrs.field(factory=dict)
    sent_emails: list[str] = attrs.field(factory=list)
    mail_server_failures_left: int = 0
    charges: list[tuple[str, int]] = attrs.field(factory=list)


class SearchUnavailableError(ConnectionError):
    """The search cluster did not answer."""


class MailServerBusyError(ConnectionError):
    """The mail server refused the connection for now."""


# Short waits so the demo runs in a blink; a service would keep the defaults.
DEMO_RETRIES = RetryPolicy(max_attempts=3, backoff=ExponentialBackoff(initial=0.01))


def build_bus(
    blog: Blog,
    *,
    outbox: OutboxStore,
    transport: Transport | None = None,
    dead_letters: DeadLetterStore | None = None,
    idempotency: IdempotencyStore | None = None,
    clock: Clock | None = None,
    outgoing: Iterable[Callable[[Envelope[Message]], Envelope[Message]]] = (),
) -> MessageBus:
    """Return the blog service's bus, its handlers registered.

    Posts are written to the outbox's database (an SQLite file: table ``posts``) in the
    same transaction as the ``PostPublished`` they announce. Payments are deduplicated
    by idempotency key through ``idempotency`` (in memory if not given): only that
    handler has the idempotency layer. ``clock`` (a test's fake clock) times the
    retries and the default idempotency store; ``outgoing`` hooks go to the bus (a
    test's :func:`~messagebus.testing.record_outgoing`).
    """
    retry = RetryMiddleware(events=DEMO_RETRIES, clock=time.monotonic if clock is None else clock)
    bus = MessageBus(
        service="blog",
        transport=transport,
        outbox=outbox,
        middleware=[LoggingMiddleware(), retry],
        dead_letters=dead_letters,
        source="/blog",
        outgoing=outgoing,
    )

    @bus.handler(PublishPost, name="publish-post", middleware=[UnitOfWorkMiddleware(bus)])
    async def publish_post(command: PublishPost, ctx: Context[PublishPost]) -> int:
        if not command.title.strip():
            raise CommandRejected("a post needs a title")
        post_id: int = await ctx.unit_of_work.run(
            lambda connection: (
                connection.execute(
                    "INSERT INTO posts (author, title) VALUES (?, ?)",
                    (command.author, command.title),
                ).lastrowid
            )
        )
        # Written to the outbox in this transaction; delivered once it commits.
        ctx.publish(PostPublished(post_id, command.author, command.title))
        return post_id

    @bus.subscriber(PostPublished, name="notify-followers")
    async def notify_followers(event: PostPublished) -> None:
        for follower in blog.followers.get(event.author, []):
            blog.inboxes.setdefault(follower, []).append(f"{event.author}: {event.title}")

    @bus.subscriber(PostPublished, name="update-search-index")
    async def update_search_index(event: PostPublished) -> None:
        if blog.search_is_down:
            raise SearchUnavailableError("search cluster timed out")
        for word in event.title.lower().split():
            blog.search_index[word] = event.post_id

    @bus.handler(RegisterUser, name="register-user")
    async def register_user(command: RegisterUser, ctx: Context[RegisterUser]) -> None:
        blog.users[command.name] = command.email
        ctx.publish(UserRegistered(command.name, command.email))

    @bus.subscriber(UserRegistered, name="send-welcome-email")
    async def send_welcome_email(event: UserRegistered) -> None:
        if blog.mail_server_failures_left:
            blog.mail_server_failures_left -= 1
            raise MailServerBusyError("421 try again later")
        blog.sent_emails.append(f"welcome, {event.name} <{event.email}>")

    @bus.handler(
        ProcessPayment,
        name="process-payment",
        middleware=[
            IdempotencyMiddleware(
                idempotency or InMemoryIdempotencyStore(clock=time.time if clock is None else clock)
            )
        ],
    )
    async def process_payment(command: ProcessPayment) -> Receipt:
        blog.charges.append((command.user, command.amount_cents))
        return Receipt(f"receipt-{len(blog.charges)}", command.user, command.amount_cents)

    return bus
