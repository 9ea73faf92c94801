"""Points in time on the command line: ISO times, dates and relative times.

``--since`` and ``--until`` take an ISO 8601 time with its time zone
(``2026-12-01T09:30:00+01:00``, ``...Z``), a date (``2026-12-01``: its midnight in
UTC), or a time ago: a number and a unit, ``s``, ``m``, ``h``, ``d`` or ``w``
(``90s``, ``15m``, ``1h``, ``2d``). A value that is none of these is a usage error
naming the option.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import click

__all__ = ["moment_option", "parse_moment"]

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_moment(text: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> datetime:
    """Return the aware datetime ``text`` names (see the module).

    Raises:
        click.BadParameter: ``text`` names no time, or a time without its zone.
    """
    text = text.strip()
    ago = _AGO.fullmatch(text)
    if ago is not None:
        amount, unit = ago.groups()
        return now() - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: give an ISO time with its zone (2026-12-01T09:30:00Z), "
            "a date (2026-12-01) or a time ago (90s, 15m, 1h, 2d, 1w)"
        ) from None
    if moment.utcoffset() is None:
        if not _is_date(text):
            raise click.BadParameter(f"{text!r} needs a time zone, such as +00:00 or Z")
        moment = moment.replace(tzinfo=UTC)
    return moment


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _convert(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    # click names the option in the error: it fills in the parameter of a BadParameter
    # raised by a callback.
    return None if value is None else parse_moment(value)


def moment_option(
    name: str, help_text: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Return the option ``name`` taking a point in time (see the module), None if not given."""
    return click.option(name, callback=_convert, metavar="TIME", help=help_text)
