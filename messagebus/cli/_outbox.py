"""``messagebus outbox``: watch the outbox, requeue what it parked, flush it by hand."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from messagebus.cli._app import APP, load_bus
from messagebus.cli._stores import open_outbox_store
from messagebus.cli._table import Column, count, echo_pairs, echo_table, ident, muted, problem
from messagebus.extension import OutboxStore
from messagebus.outbox import OutboxEntry, OutboxStatus

__all__ = ["outbox"]

T = TypeVar("T")

STORE = click.option(
    "--store",
    "url",
    envvar=["MESSAGEBUS_OUTBOX", "MESSAGEBUS_DATABASE"],
    required=True,
    help="the database: postgresql://..., sqlite:///relative.db, sqlite:////absolute.db or "
    "a file path [env: MESSAGEBUS_OUTBOX, else MESSAGEBUS_DATABASE]",
)
JSON = click.option("--json", "as_json", is_flag=True, help="JSON instead of text")


class _CheckFailed(click.ClickException):
    """``status --check`` found dead rows: exit status 3 (1 and 2 mean errors)."""

    exit_code = 3


def _with_store(url: str, work: Callable[[OutboxStore], Awaitable[T]]) -> T:
    store = open_outbox_store(url)

    async def run() -> T:
        async with store:
            return await work(store)

    return anyio.run(run)


@click.group()
def outbox() -> None:
    """Inspect the transactional outbox and act on it."""


@outbox.command()
@STORE
@JSON
@click.option(
    "--check", is_flag=True, help="exit with status 3 when there are dead rows (for alerting)"
)
def status(url: str, as_json: bool, check: bool) -> None:
    """Count the rows: pending, in flight, dead, sent, scheduled; the oldest pending's age."""
    counts = _with_store(url, lambda store: store.status())
    if as_json:
        click.echo(json.dumps(_counts(counts)))
    else:
        age = counts.oldest_pending_age
        echo_pairs(
            [
                ("pending", count(counts.pending)),
                ("in flight", count(counts.in_flight)),
                ("dead", count(counts.dead, alarming=True)),
                ("sent", count(counts.sent)),
                ("scheduled", count(counts.scheduled)),
                ("oldest pending", muted("none") if age is None else f"{age:.1f} s ago"),
            ]
        )
    if check and counts.dead:
        raise _CheckFailed(f"check failed: {counts.dead} dead row(s)")


@outbox.command("list")
@STORE
@click.option(
    "--limit", type=click.IntRange(min=0), default=100, show_default=True, help="at most this many"
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_dead(url: str, limit: int, as_json: bool) -> None:
    """List the dead (parked) rows, in commit order."""
    entries = _with_store(url, lambda store: store.list("dead", limit=limit))
    rows = [_row(entry) for entry in entries]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    echo_table(
        ["id", "destination", Column("attempts", right=True), "last error"],
        [
            [
                ident(row["id"]),
                row["destination"],
                str(row["attempts"]),
                problem(row["last_error"] or ""),
            ]
            for row in rows
        ],
    )
    click.echo(f"{len(rows)} dead message(s)", err=True)


@outbox.command()
@STORE
@click.argument("message_id")
def requeue(url: str, message_id: str) -> None:
    """Make a dead row pending again (attempts reset), for the relay to deliver."""
    if not _with_store(url, lambda store: store.requeue(message_id)):
        raise click.ClickException(f"no dead outbox message has id {message_id!r}")
    click.echo(f"requeued {message_id}")


@outbox.command()
@APP
def flush(app: str) -> None:
    """Run the app's outbox relay once: deliver every claimable row now.

    The bus is entered (so its transport is open), its relay flushes, then the bus
    stops. The bus's own relay runs meanwhile too; rows it delivers first are not in
    the count, but the counts left are exact.
    """
    bus = load_bus(app)
    if bus.relay is None:
        raise click.UsageError(f"{app} has no outbox: give its MessageBus outbox=")
    relay = bus.relay

    async def run() -> tuple[int, OutboxStatus]:
        async with bus:
            return await relay.flush(), await relay.store.status()

    delivered, left = anyio.run(run)
    click.echo(
        f"delivered {delivered} message(s); left: {left.pending} pending, "
        f"{left.in_flight} in flight, {left.dead} dead"
    )


def _counts(counts: OutboxStatus) -> dict[str, Any]:
    return {
        "pending": counts.pending,
        "in_flight": counts.in_flight,
        "dead": counts.dead,
        "sent": counts.sent,
        "scheduled": counts.scheduled,
        "oldest_pending_age": counts.oldest_pending_age,
    }


def _row(entry: OutboxEntry) -> dict[str, Any]:
    destination = entry.message.destination
    return {
        "id": entry.message.id,
        "destination": f"{destination.kind}:{destination.name}",
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "group_key": entry.message.group_key,
        "created_at": entry.message.created_at,
    }
