"""``messagebus lint``: check that events read as facts and commands as intentions."""

from __future__ import annotations

import json

import click

from messagebus._naming import lint_names
from messagebus.cli._app import APP, load_bus
from messagebus.cli._table import echo_table, problem

__all__ = ["lint"]


@click.command()
@APP
@click.option(
    "--allow",
    multiple=True,
    help="a class or wire name the heuristic gets wrong (repeatable)",
)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per finding")
def lint(app: str, allow: tuple[str, ...], as_json: bool) -> None:
    """Check message names: events in the past tense, commands as imperatives.

    Exits 1 when a name reads as the wrong kind of message; each finding says why.
    """
    findings = lint_names(load_bus(app).registry, allow=allow)
    if as_json:
        for finding in findings:
            row = {
                "message_type": finding.message_type.__message_name__,
                "class": finding.message_type.__qualname__,
                "which": finding.which,
                "name": finding.name,
                "problem": finding.problem,
            }
            click.echo(json.dumps(row))
    else:
        echo_table(
            ["class", "which", "name", "problem"],
            [
                [
                    finding.message_type.__qualname__,
                    finding.which,
                    finding.name,
                    problem(finding.problem),
                ]
                for finding in findings
            ],
            # The problem says how to fix the name: a terminal wraps it, never cuts it.
            fit=False,
        )
    if findings:
        raise click.ClickException(f"{len(findings)} naming finding(s)")
    click.echo("message names read right")
