"""``messagebus schema``: export the message contracts, or check them against a saved export."""

from __future__ import annotations

import json
from pathlib import Path

import click

from messagebus._schema import breaking_changes, export_schemas
from messagebus.cli._app import APP, load_bus

__all__ = ["schema"]


@click.command()
@APP
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the export to this file instead of printing it",
)
@click.option(
    "--check",
    "saved",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="compare with this saved export; exit 1 on a breaking change",
)
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
        try:
            changes = breaking_changes(json.loads(saved.read_text()), current)
        except (ValueError, KeyError, TypeError) as exc:
            raise click.ClickException(f"{saved}: {exc}") from exc
        for change in changes:
            click.echo(f"breaking: {change}")
        if changes:
            raise click.ClickException(f"{len(changes)} breaking change(s) against {saved}")
        click.echo(f"no breaking changes against {saved}")
        return
    text = json.dumps(current, indent=2, sort_keys=True)
    if output is None:
        click.echo(text)
    else:
        output.write_text(text + "\n")
        click.echo(f"wrote {sum(len(v) for v in current['types'].values())} type(s) to {output}")
