"""Rows and records for a reader (messagebus/cli/_table.py): aligned, styled, cut on a terminal."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import click
import pytest
from click.testing import CliRunner, Result
from structlog.testing import capture_logs

from messagebus import MessageBus
from messagebus.cli import cli
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
from messagebus.dead_letters import SQLiteDeadLetterStore
from messagebus.outbox import SQLiteOutbox
from tests.conftest import Cli
from tests.messages import PostPublished
from tests.test_cli_outbox import seed

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


LONG = "search cluster timed out after 30 s waiting for a healthy node in eu-west-1"


@pytest.fixture
def dead(tmp_path: Path) -> str:
    """An SQLite store of two dead letters of handlers with names of different lengths."""
    path = tmp_path / "dead.sqlite3"
    bus = MessageBus()

    @bus.subscriber(PostPublished, name="index")
    async def index(event: PostPublished) -> None:
        raise ConnectionError(LONG)

    @bus.subscriber(PostPublished, name="notify-followers")
    async def notify(event: PostPublished) -> None:
        raise ValueError("no such user")

    async def fail() -> None:
        async with SQLiteDeadLetterStore(path) as store:
            bus.dead_letters = store
            with capture_logs():
                await bus.publish(PostPublished(1, "one"))

    anyio.run(fail)
    return str(path)


@pytest.fixture
def outbox(tmp_path: Path) -> str:
    """An SQLite outbox with two pending rows, one dead and one sent (see ``seed``)."""
    path = tmp_path / "outbox.sqlite3"

    async def fill() -> None:
        async with SQLiteOutbox(path) as store:
            await seed(store)

    anyio.run(fill)
    return str(path)


def invoke(*argv: str, color: bool = False, env: dict[str, str] | None = None) -> Result:
    """Run the command with click's runner, stdout apart from stderr (on click 8.1 too)."""
    apart: dict[str, Any] = {}
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        apart["mix_stderr"] = False  # click < 8.2 mixes stderr into stdout by default
    result = CliRunner(**apart).invoke(cli, list(argv), color=color, env=env)
    assert result.exit_code == 0, result.output
    return result


class TestCommandsOffATerminal:
    """Piped or captured: no escape codes, columns aligned, nothing cut."""

    def test_dead_letters_list(self, dead: str) -> None:
        """The header's columns start where each row's do; the long error is whole."""
        header, *rows = invoke("dead-letters", "list", "--store", dead).stdout.splitlines()
        assert ANSI.search(header + "".join(rows)) is None
        assert header.split("  ")[0] == "id"
        columns = starts(header)
        assert len(columns) == 6
        end = header.index("attempts") + len("attempts")
        for row in rows:
            # Every left-aligned column starts after a gap; attempts end under theirs.
            for start in columns[1:4] + columns[5:]:
                assert row[start - 2 : start] == "  "
                assert row[start] != " "
            assert row[end - 1].isdigit()
            assert row[end : end + 2] == "  "
        assert any(row.endswith(f"builtins.ConnectionError: {LONG}") for row in rows)
        assert {row.split()[3] for row in rows} == {"index", "notify-followers"}

    def test_outbox_status(self, outbox: str) -> None:
        """Aligned key-value lines, plain."""
        out = invoke("outbox", "status", "--store", outbox).stdout
        assert ANSI.search(out) is None
        assert out.splitlines()[:5] == [
            "pending         2",
            "in flight       0",
            "dead            1",
            "sent            1",
            "scheduled       0",
        ]

    def test_the_count_stays_on_stderr(self, outbox: str) -> None:
        """The count line is not part of the table."""
        result = invoke("outbox", "list", "--store", outbox)
        assert result.stderr == "1 dead message(s)\n"
        assert "dead message" not in result.stdout


class TestCommandsInColour:
    """With colour (a terminal, or color=True): styles; NO_COLOR turns them off."""

    def test_dead_letters_list(self, dead: str) -> None:
        """A bold header, yellow ids, red errors; unstyled, the same text as without."""
        out = invoke("dead-letters", "list", "--store", dead, color=True).stdout
        first = click.unstyle(out).splitlines()[1]
        first_id = first.split()[0]
        assert out.startswith(click.style("id".ljust(len(first_id)), bold=True))
        assert click.style(first_id, fg="yellow") in out
        assert click.style(f"builtins.ConnectionError: {LONG}", fg="red") in out
        assert click.unstyle(out) == invoke("dead-letters", "list", "--store", dead).stdout

    def test_outbox_status(self, outbox: str) -> None:
        """Dead rows red and bold, zero counts dim."""
        out = invoke("outbox", "status", "--store", outbox, color=True).stdout
        lines = out.splitlines()
        assert lines[2] == click.style("dead          ", bold=True) + "  " + click.style(
            "1", fg="red", bold=True
        )
        assert lines[1].endswith(click.style("0", dim=True))

    @pytest.mark.parametrize(
        ("no_color", "coloured"), [("1", False), ("", True)], ids=["NO_COLOR=1", "NO_COLOR="]
    )
    def test_no_color(self, outbox: str, no_color: str, coloured: bool) -> None:
        """NO_COLOR set and not empty: plain text even where colour would show."""
        out = invoke(
            "outbox", "status", "--store", outbox, color=True, env={"NO_COLOR": no_color}
        ).stdout
        assert (ANSI.search(out) is not None) is coloured


class TestCommandsOnATerminal:
    """On a terminal the long last column is cut to its width; key-value blocks never are."""

    @pytest.fixture
    def columns(self, monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
        """Make stdout a terminal this wide, as the table reads it (isatty, then COLUMNS)."""

        def terminal(width: int) -> None:
            monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
            monkeypatch.setenv("COLUMNS", str(width))

        return terminal

    def rows(self, cli: Cli, dead: str) -> list[str]:
        status, out, _ = cli("dead-letters", "list", "--store", dead)
        assert status == 0
        return click.unstyle(out).splitlines()

    def test_cut_to_the_width(self, cli: Cli, dead: str, columns: Callable[[int], None]) -> None:
        """The long error ends in an ellipsis at the terminal's edge; a short one is whole."""
        whole = {line.split()[0]: line for line in self.rows(cli, dead)}
        columns(150)
        lines = self.rows(cli, dead)
        assert all(len(line) <= 150 for line in lines)
        long, short = sorted(lines[1:], key=lambda line: "ConnectionError" not in line)
        assert len(long) == 150
        assert long == whole[long.split()[0]][:149] + "…"
        assert short == whole[short.split()[0]]
        assert short.endswith("builtins.ValueError: no such user")

    def test_narrow_terminal(self, cli: Cli, dead: str, columns: Callable[[int], None]) -> None:
        """Narrower than the other columns: the error keeps its first KEPT characters."""
        columns(80)
        for row in self.rows(cli, dead)[1:]:
            error = row.rpartition("  ")[2]
            assert error.startswith("builtins.")
            assert len(error) == KEPT + 1
            assert error.endswith("…")

    def test_records_are_whole(self, cli: Cli, dead: str, columns: Callable[[int], None]) -> None:
        """dead-letters show is the whole record: its error is never cut."""
        (letter,) = [line.split()[0] for line in self.rows(cli, dead)[1:] if "Connection" in line]
        columns(40)
        status, out, _ = cli("dead-letters", "show", letter, "--store", dead)
        assert status == 0
        assert f"builtins.ConnectionError: {LONG}\n" in click.unstyle(out)
