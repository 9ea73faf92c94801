"""Rows and records for a reader: aligned columns, styled on a terminal, plain otherwise.

The commands that print rows for a person (``dead-letters list``, ``outbox list``,
``lint``) print them with :func:`echo_table`, under a header; those that print one
record (``outbox status``, ``dead-letters show``) print ``key  value`` lines with
:func:`echo_pairs`. ``--json`` output never comes here. Contract:

- Columns are padded with spaces to their widest cell (the header included) and kept
  two spaces apart; a column made with ``right=True`` (counts) is padded on the left.
  The last column is never padded, so no line ends in spaces. Widths count characters
  (code points): a wide East Asian character counts as one.
- A cell's line breaks and tabs become spaces, so that a row is one line.
- Styles (:func:`click.style`) wrap each padded cell, so alignment never depends on
  them, and every line is written with :func:`click.echo`, which drops them when stdout
  is not a terminal or the context's ``color`` is False (``NO_COLOR``: see
  :mod:`messagebus.cli._main`).
- With ``fit=True`` and stdout a terminal, the last column is cut so that each line
  fits the terminal's width (:func:`shutil.get_terminal_size`: ``COLUMNS`` first), and
  ends in "…". At least :data:`KEPT` of its characters stay, so a narrow terminal wraps
  a line rather than hide what it says. Off a terminal nothing is cut: a pipe or a file
  gets every character.
- A table without rows prints nothing, not even its header: no rows is empty output.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence

import attrs
import click

__all__ = [
    "KEPT",
    "Cell",
    "Column",
    "count",
    "echo_pairs",
    "echo_table",
    "ident",
    "muted",
    "problem",
    "render_pairs",
    "render_table",
    "terminal_width",
]

KEPT = 20
"""The fewest characters of a cut last column that stay (see the module)."""

_GAP = "  "
_BREAKS = re.compile(r"[\t\n\r\v\f]")


@attrs.frozen
class Cell:
    """A cell's text and how it looks on a terminal (:func:`click.style`'s arguments)."""

    text: str
    fg: str | None = None
    bold: bool = False
    dim: bool = False


@attrs.frozen
class Column:
    """A column's header and its alignment (``right=True`` for counts)."""

    header: str
    right: bool = False


def ident(text: str) -> Cell:
    """Return an id's cell: yellow, as git shows commit ids."""
    return Cell(text, fg="yellow")


def problem(text: str) -> Cell:
    """Return an error's or a finding's cell: red."""
    return Cell(text, fg="red")


def muted(text: str) -> Cell:
    """Return the cell of a value saying nothing is there ("none"): dim."""
    return Cell(text, dim=True)


def count(number: int, *, alarming: bool = False) -> Cell:
    """Return a count's cell: dim when zero; red and bold when ``alarming`` and not zero."""
    if number == 0:
        return muted("0")
    if alarming:
        return Cell(str(number), fg="red", bold=True)
    return Cell(str(number))


def terminal_width() -> int | None:
    """Return the width to fit lines to: the terminal's if stdout is one, else None."""
    stream = sys.stdout
    if stream is None or not stream.isatty():
        return None
    return shutil.get_terminal_size().columns


def render_table(
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Cell | str]],
    *,
    width: int | None = None,
) -> list[str]:
    """Return the lines of ``rows`` under a bold header, aligned (see the module).

    ``width`` is the width to cut the last column to, None for no cut. Each row has one
    cell per column.
    """
    if not rows:
        return []
    heads = [column if isinstance(column, Column) else Column(column) for column in columns]
    header = [Cell(column.header, bold=True) for column in heads]
    cells = [header, *([_cell(cell) for cell in row] for row in rows)]
    return _lines(cells, right=[column.right for column in heads], width=width)


def render_pairs(pairs: Sequence[tuple[str, Cell | str]]) -> list[str]:
    """Return ``key  value`` lines, values aligned, keys bold; nothing is ever cut."""
    cells = [[Cell(key, bold=True), _cell(value)] for key, value in pairs]
    return _lines(cells, right=[False, False], width=None)


def echo_table(
    columns: Sequence[Column | str],
    rows: Sequence[Sequence[Cell | str]],
    *,
    fit: bool = True,
) -> None:
    """Write :func:`render_table`'s lines to stdout; ``fit`` cuts to a terminal's width."""
    for line in render_table(columns, rows, width=terminal_width() if fit else None):
        click.echo(line)


def echo_pairs(pairs: Sequence[tuple[str, Cell | str]]) -> None:
    """Write :func:`render_pairs`'s lines to stdout."""
    for line in render_pairs(pairs):
        click.echo(line)


def _cell(cell: Cell | str) -> Cell:
    if isinstance(cell, str):
        cell = Cell(cell)
    return attrs.evolve(cell, text=_BREAKS.sub(" ", cell.text))


def _lines(cells: list[list[Cell]], *, right: list[bool], width: int | None) -> list[str]:
    widths = [max(len(row[index].text) for row in cells) for index in range(len(right))]
    # The last column starts after the others and their gaps; only it is ever cut.
    start = sum(widths[:-1]) + len(_GAP) * (len(widths) - 1)
    lines = []
    for row in cells:
        texts = [cell.text for cell in row]
        if width is not None:
            texts[-1] = _cut(texts[-1], width - start)
        padded = [
            text if index == len(texts) - 1 else _pad(text, widths[index], right[index])
            for index, text in enumerate(texts)
        ]
        lines.append(_GAP.join(_styled(text, cell) for text, cell in zip(padded, row, strict=True)))
    return lines


def _pad(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)


def _cut(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    kept = max(room - 1, KEPT)  # one place for the ellipsis
    # Swapping a last character for the ellipsis would hide it and save nothing.
    return text if len(text) <= kept + 1 else text[:kept] + "…"


def _styled(text: str, cell: Cell) -> str:
    if cell.fg is None and not cell.bold and not cell.dim:
        return text
    # None, not False: click.style writes a reset code for a False it is given.
    return click.style(text, fg=cell.fg, bold=cell.bold or None, dim=cell.dim or None)
