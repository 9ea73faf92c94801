"""A click group some of whose commands are offered only where they can run.

``messagebus bench`` runs the repository's ``benchmarks/dispatch.py``: from an installed
wheel there is none, and a command that can only fail is noise in ``--help``.
:class:`OfferingGroup` keeps such a command apart from the group's ordinary ones and
asks its check whenever the group lists or looks up commands, never at import, so
``messagebus --help`` costs the check (a few ``stat`` calls), nothing more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import click

__all__ = ["OfferingGroup"]


@attrs.frozen
class _Offer:
    command: click.Command
    when: Callable[[], bool]
    why_not: str


class OfferingGroup(click.Group):
    """A group with commands offered only while a check passes.

    Contract: a command added with :meth:`offer` is listed in the help, found by name
    and completed exactly while its ``when()`` is true; ``when`` is called on each such
    use, so it must be cheap. While it is false the command is not a command: its name
    is a usage error (exit status 2), ``No such command 'NAME': WHY_NOT``, and no
    "did you mean" ever suggests it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Apart from self.commands: click suggests close names from that one.
        self._offers: dict[str, _Offer] = {}

    def offer(self, command: click.Command, *, when: Callable[[], bool], why_not: str) -> None:
        """Offer ``command`` while ``when()`` is true; ``why_not`` says why it is not."""
        assert command.name is not None
        self._offers[command.name] = _Offer(command, when, why_not)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the ordinary commands' names and the offered ones', sorted."""
        offered = [name for name, offer in self._offers.items() if offer.when()]
        return sorted([*super().list_commands(ctx), *offered])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the command named ``cmd_name``, None if there is none or it is not offered."""
        found = super().get_command(ctx, cmd_name)
        offer = self._offers.get(cmd_name)
        if found is None and offer is not None and offer.when():
            return offer.command
        return found

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Resolve as click does; a command not offered here is a usage error saying why."""
        offer = self._offers.get(args[0]) if args else None
        if offer is not None and not ctx.resilient_parsing and not offer.when():
            raise click.UsageError(f"No such command {args[0]!r}: {offer.why_not}", ctx)
        return super().resolve_command(ctx, args)
