"""``messagebus dead-letters``: list, show, replay and purge dead letters."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import anyio
import click

from messagebus.cli._app import APP, load_bus
from messagebus.cli._moments import moment_option
from messagebus.cli._stores import open_dead_letter_store
from messagebus.cli._table import Cell, Column, echo_pairs, echo_table, ident, problem
from messagebus.dead_letters import DeadLetter
from messagebus.extension import DeadLetterStore

__all__ = ["dead_letters"]

T = TypeVar("T")

STORE = click.option(
    "--store",
    "url",
    envvar=["MESSAGEBUS_DEAD_LETTERS", "MESSAGEBUS_DATABASE"],
    required=True,
    help="the database: postgresql://..., sqlite:///relative.db, sqlite:////absolute.db or "
    "a file path [env: MESSAGEBUS_DEAD_LETTERS, else MESSAGEBUS_DATABASE]",
)


def _with_store(url: str, work: Callable[[DeadLetterStore], Awaitable[T]]) -> T:
    store = open_dead_letter_store(url)

    async def run() -> T:
        async with store:
            return await work(store)

    return anyio.run(run)


JSON = click.option("--json", "as_json", is_flag=True, help="JSON instead of text")


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect and act on messages handlers gave up on."""


@dead_letters.command("list")
@STORE
@click.option("--type", "message_type", help="only this message type (wire name)")
@click.option("--handler", help="only this handler or subscriber")
@moment_option(
    "--since",
    "last failure at or after this time: ISO (2026-12-01T09:30Z), a date "
    "(2026-12-01, UTC) or a time ago (90s, 15m, 1h, 2d, 1w)",
)
@moment_option("--until", "last failure before this time (as --since)")
@click.option("--limit", type=click.IntRange(min=0), help="at most this many")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
def list_letters(  # click passes options by name
    *,
    url: str,
    message_type: str | None,
    handler: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List dead letters, oldest last failure first."""
    letters = _with_store(
        url,
        lambda store: store.list(
            message_type=message_type, handler=handler, since=since, until=until, limit=limit
        ),
    )
    if as_json:
        for letter in letters:
            click.echo(json.dumps(_summary(letter)))
        return
    echo_table(
        ["id", "last failure", "handler", "type", Column("attempts", right=True), "error"],
        [
            [
                ident(letter.id),
                f"{letter.last_failed_at:%Y-%m-%d %H:%M:%S}",
                letter.handler,
                letter.message_type,
                str(letter.attempts),
                problem(f"{letter.error_type}: {letter.error_message}"),
            ]
            for letter in letters
        ],
    )
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@dead_letters.command()
@STORE
@click.argument("dead_letter_id")
@JSON
def show(url: str, dead_letter_id: str, as_json: bool) -> None:
    """Show one dead letter: its message, its error and traceback."""
    letter = _with_store(url, lambda store: store.get(dead_letter_id))
    if letter is None:
        raise click.ClickException(f"no dead letter has id {dead_letter_id!r}")
    if as_json:
        whole = {
            **_summary(letter),
            "message": json.loads(letter.body),
            "traceback": letter.traceback,
        }
        click.echo(json.dumps(whole))
        return
    # The --json fields, spelt as words: one list of fields for both outputs.
    styles: dict[str, Callable[[str], Cell]] = {"id": ident, "error": problem}
    echo_pairs(
        [
            (key.replace("_", " "), styles.get(key, Cell)(str(value)))
            for key, value in _summary(letter).items()
        ]
    )
    click.echo()
    click.echo(click.style("message", bold=True))
    click.echo(json.dumps(json.loads(letter.body), indent=2))
    click.echo()
    click.echo(letter.traceback.rstrip())


@dead_letters.command()
@STORE
@click.argument("dead_letter_id")
@APP
def replay(url: str, dead_letter_id: str, app: str) -> None:
    """Run a dead letter's handler again; forget the letter if it succeeds."""
    bus = load_bus(app)

    async def work(store: DeadLetterStore) -> Any:
        bus.dead_letters = store
        return await bus.replay(dead_letter_id)

    result = _with_store(url, work)
    click.echo(f"replayed {dead_letter_id}" + ("" if result is None else f": {result!r}"))


@dead_letters.command()
@STORE
@click.option("--type", "message_type", help="only this message type (wire name)")
@click.option("--handler", help="only this handler or subscriber")
@moment_option(
    "--until", "only letters whose last failure is before this time: ISO, a date or a time ago"
)
@click.option("--yes", is_flag=True, help="do it without asking")
def purge(
    url: str, message_type: str | None, handler: str | None, until: datetime | None, yes: bool
) -> None:
    """Delete dead letters matching every filter given (all of them without filters)."""
    if not yes:
        click.confirm("Delete the matching dead letters for good?", abort=True)
    count = _with_store(
        url,
        lambda store: store.purge(message_type=message_type, handler=handler, until=until),
    )
    click.echo(f"purged {count} dead letter(s)")


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "handler": letter.handler,
        "message_type": letter.message_type,
        "message_id": letter.message_id,
        "correlation_id": letter.correlation_id,
        "attempts": letter.attempts,
        "first_failed_at": letter.first_failed_at.isoformat(),
        "last_failed_at": letter.last_failed_at.isoformat(),
        "error": f"{letter.error_type}: {letter.error_message}",
    }
