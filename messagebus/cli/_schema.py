"""``messagebus schema`` and ``messagebus asyncapi``: the contract documents, and checks.

Both commands print (or write) a document made from the application's bus, or with
``--check`` compare it with a saved one and exit 1 on a breaking change; they share
that behaviour here, each with its own comparison.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from messagebus._asyncapi import asyncapi_breaking_changes, asyncapi_document
from messagebus._schema import breaking_changes, export_schemas
from messagebus.cli._app import APP, load_bus

__all__ = ["asyncapi", "schema"]

_OUTPUT = click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the document to this file instead of printing it",
)
_CHECK = click.option(
    "--check",
    "saved",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="compare with this saved document; exit 1 on a breaking change",
)

Compare = Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]


def _check(saved: Path, current: Mapping[str, Any], compare: Compare) -> None:
    """Print each breaking change from ``saved`` to ``current``; fail if there is one."""
    try:
        changes = compare(json.loads(saved.read_text()), current)
    except (ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"{saved}: {exc}") from exc
    for change in changes:
        click.echo(f"{click.style('breaking:', fg='red', bold=True)} {change}")
    if changes:
        raise click.ClickException(f"{len(changes)} breaking change(s) against {saved}")
    click.echo(f"no breaking changes against {saved}")


def _emit(document: Mapping[str, Any], output: Path | None, summary: str) -> None:
    text = json.dumps(document, indent=2, sort_keys=True)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")
        click.echo(f"wrote {summary} to {output}")


@click.command()
@APP
@_OUTPUT
@_CHECK
def schema(app: str, output: Path | None, saved: Path | None) -> None:
    """Print every registered message type's name, version, kind and JSON Schema.

    The schemas (JSON Schema 2020-12) describe what the service's codec writes and
    accepts, custom types added with ``bus.codec.add_type`` included.

    With --check, compare the current types with a saved export instead: removing or
    renaming a type, removing or retyping a required field, or adding a required field
    breaks the contract (exit 1); adding an optional field does not.
    """
    bus = load_bus(app)
    current = export_schemas(bus.registry, bus.codec.custom_types)
    if saved is not None:
        _check(saved, current, breaking_changes)
        return
    _emit(current, output, f"{sum(len(v) for v in current['types'].values())} type(s)")


@click.command()
@APP
@_OUTPUT
@_CHECK
@click.option("--title", help="the document's title (default: the service's name)")
@click.option(
    "--api-version",
    default="1.0.0",
    show_default=True,
    help="the version of the service's API (info.version)",
)
def asyncapi(
    app: str, output: Path | None, saved: Path | None, title: str | None, api_version: str
) -> None:
    """Print the service's AsyncAPI 3.0 document (JSON).

    Channels: the service's queue, its event topics and the queues its commands are
    routed to, by the broker's names where the transport knows them (an SQS prefix).
    Operations: what it receives and sends. Messages: every registered type, its data's
    JSON Schema as payload and the CloudEvents attributes as headers.

    With --check, compare with a saved document instead: message payloads break as in
    ``messagebus schema --check``, and an operation that is gone or moved to another
    channel address breaks too (exit 1).
    """
    bus = load_bus(app)
    current = asyncapi_document(bus, title=title, version=api_version)
    if saved is not None:
        _check(saved, current, asyncapi_breaking_changes)
        return
    _emit(current, output, f"{len(current['operations'])} operation(s)")
