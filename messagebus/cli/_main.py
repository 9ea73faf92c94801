"""The ``messagebus`` command: the group and its entry point.

Every subcommand explains itself with ``--help``. A mistake of the user's (a bad
argument, an unknown id, an unreachable store, a failed replay) prints a one-line reason
and exits with status 1 (2 for bad usage), never a traceback. Text for a reader is
styled on a terminal and plain otherwise (:mod:`messagebus.cli._table`), and plain
wherever ``NO_COLOR`` is set and not empty; ``--json`` output is never styled.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import click

from messagebus._errors import MessageBusError
from messagebus._version import __version__
from messagebus.cli import _bench
from messagebus.cli._dead_letters import dead_letters
from messagebus.cli._lint import lint
from messagebus.cli._offered import OfferingGroup
from messagebus.cli._outbox import outbox
from messagebus.cli._schema import asyncapi, schema
from messagebus.cli._worker import worker
from messagebus.demo import configure_logging
from messagebus.demo import main as tell_the_story
from messagebus.transports import transport_from_url

__all__ = ["cli", "main"]


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"messagebus {__version__}")
    ctx.exit()


@click.group(cls=OfferingGroup)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Commands to exactly one handler, events to every subscriber: tools for messagebus."""
    # https://no-color.org: click does not read NO_COLOR itself. Subcommands' contexts
    # are made after this runs and inherit the setting; a colour the caller chose
    # (main(color=...)) stands.
    if os.environ.get("NO_COLOR") and ctx.color is None:
        ctx.color = False


@cli.command()
@click.option(
    "--database",
    type=click.Path(dir_okay=False, path_type=Path),
    help="keep the demo's posts, outbox, dead letters, idempotency records and processes "
    "in this SQLite file (default: a temporary one)",
)
@click.option(
    "--transport",
    metavar="URL",
    help="the transport, such as sqs://eu-west-1?prefix=demo- (default: memory://)",
)
def demo(database: Path | None, transport: str | None) -> None:
    """Run the blog demo on the embedded defaults and tell what happens."""
    chosen = None if transport is None else transport_from_url(transport)
    configure_logging()
    anyio.run(tell_the_story, database, chosen)


# Only a checkout has the benchmark: elsewhere `bench` is not a command at all.
cli.offer(_bench.bench, when=_bench.available, why_not=_bench.WHY_NOT)
cli.add_command(dead_letters)
cli.add_command(schema)
cli.add_command(asyncapi)
cli.add_command(lint)
cli.add_command(outbox)
cli.add_command(worker)


def main(argv: list[str] | None = None) -> Any:
    """Run the command line; turn expected failures into a one-line reason."""
    try:
        return cli.main(args=argv, prog_name="messagebus", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (MessageBusError, OSError) as exc:
        click.echo(f"error: {_one_line(exc)}", err=True)
        sys.exit(1)
    except Exception as exc:
        if type(exc).__module__.startswith(("psycopg", "sqlite3")):
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(1)
        raise


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
