"""Rows and records for a reader (messagebus/cli/_table.py): aligned, styled, cut on a terminal."""

from __future__ import annotations

import re
import sys

import click
import pytest

from messagebus.cli._table import (
    KEPT,
    Cell,
    Column,
    count,
    muted,
    render_pairs,
    render_table,
    terminal_width,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def starts(header: str) -> list[int]:
    """Where each column of a plain header line starts (headers may hold one space)."""
    return [match.start(1) for match in re.finditer(r"(?:^|  )(\S)", header)]


class TestTable:
    """render_table pads columns to their widest cell and styles after padding."""

    COLUMNS = ("id", Column("attempts", right=True), "error")
    ROWS = (
        ("a-1", "1", "short"),
        ("b-12345", "12", Cell("a longer error", fg="red")),
    )

    def test_columns_line_up(self) -> None:
        """Every left column starts where its header does; counts end where theirs does."""
        lines = [click.unstyle(line) for line in render_table(self.COLUMNS, self.ROWS)]
        assert lines == [
            "id       attempts  error",
            "a-1             1  short",
            "b-12345        12  a longer error",
        ]
        first, _, last = starts(lines[0])
        assert all(line[first] != " " and line[last] != " " for line in lines)
        end = lines[0].index("attempts") + len("attempts")
        assert all(line[end - 1] != " " and line[end] == " " for line in lines)

    def test_styles_wrap_padded_cells(self) -> None:
        """The header is bold, a styled cell keeps its colour; unstyled cells are bare."""
        header, plain, styled = render_table(self.COLUMNS, self.ROWS)
        assert header.startswith(click.style("id     ", bold=True))
        assert ANSI.search(plain) is None
        assert styled.endswith(click.style("a longer error", fg="red"))

    def test_no_trailing_spaces(self) -> None:
        """The last column is not padded."""
        lines = render_table(["error", "x"], [["long text", "1"], ["a", "22222"]])
        assert all(click.unstyle(line) == click.unstyle(line).rstrip() for line in lines)

    def test_no_rows_no_header(self) -> None:
        """An empty table prints nothing at all."""
        assert render_table(self.COLUMNS, []) == []

    def test_a_row_is_one_line(self) -> None:
        """Line breaks and tabs in a cell become spaces."""
        (_, row) = render_table(["id", "error"], [["a", "first\nsecond\tthird"]])
        assert row == "a   first second third"


class TestCut:
    """A width cuts the last column with an ellipsis; no width cuts nothing."""

    ERROR = "ConnectionError: search cluster timed out after 30 s waiting for a node"

    def test_cut_to_width(self) -> None:
        """Each line fits the width; the cut cell ends in the ellipsis."""
        lines = render_table(["id", "error"], [["a-1", self.ERROR], ["b-2", "short"]], width=40)
        plain = [click.unstyle(line) for line in lines]
        assert all(len(line) <= 40 for line in plain)
        assert plain[1] == "a-1  " + self.ERROR[:34] + "…"
        assert plain[2] == "b-2  short"

    def test_no_width_no_cut(self) -> None:
        """Without a width the whole text stays."""
        (_, row) = render_table(["id", "error"], [["a-1", self.ERROR]])
        assert row == "a-1  " + self.ERROR

    def test_fits_exactly(self) -> None:
        """A line exactly as wide as the terminal is not cut."""
        (_, row) = render_table(["id", "error"], [["a-1", self.ERROR]], width=5 + len(self.ERROR))
        assert row.endswith(self.ERROR)

    def test_narrow_terminal_keeps_some(self) -> None:
        """However narrow the terminal, KEPT characters of the last column stay."""
        (_, row) = render_table(["id", "error"], [["a" * 50, self.ERROR]], width=30)
        assert row == "a" * 50 + "  " + self.ERROR[:KEPT] + "…"

    def test_no_pointless_cut(self) -> None:
        """A text one longer than what would be kept is left whole: the cut saves nothing."""
        text = "x" * (KEPT + 1)
        (_, row) = render_table(["id", "error"], [["a" * 50, text]], width=30)
        assert row.endswith(text)

    def test_terminal_width(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """On a terminal, its width (COLUMNS, as shutil reads it); off one, None."""
        monkeypatch.setenv("COLUMNS", "57")
        monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
        assert terminal_width() is None
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        assert terminal_width() == 57


class TestPairs:
    """render_pairs aligns the values of key-value lines."""

    def test_aligned(self) -> None:
        """Values start in one column, keys are bold, no cut."""
        lines = render_pairs([("pending", count(2)), ("oldest pending", muted("none"))])
        assert [click.unstyle(line) for line in lines] == [
            "pending         2",
            "oldest pending  none",
        ]
        assert lines[0].startswith(click.style("pending       ", bold=True))
        assert lines[1].endswith(click.style("none", dim=True))

    @pytest.mark.parametrize(
        ("cell", "expected"),
        [
            (count(0), Cell("0", dim=True)),
            (count(0, alarming=True), Cell("0", dim=True)),
            (count(3), Cell("3")),
            (count(3, alarming=True), Cell("3", fg="red", bold=True)),
        ],
    )
    def test_counts(self, cell: Cell, expected: Cell) -> None:
        """Zero is dim; an alarming count that is not zero is red and bold."""
        assert cell == expected
