"""`messagebus bench`: the dispatch benchmark from the checkout, as a table and a chart.

Offered only where the checkout's benchmarks/dispatch.py is found (TestOffered).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from messagebus.cli import _bench
from tests.conftest import Cli

TINY = ("bench", "--quick", "--n", "200", "--runs", "1", "--no-peers")


class TestBench:
    """A tiny run prints the table and writes the figures."""

    def test_table_and_json(self, cli: Cli, tmp_path: Path) -> None:
        """One column per scenario, the floor and both bus rows; --json has the figures."""
        figures = tmp_path / "dispatch.json"
        status, out, err = cli(
            *TINY, "--scenario", "S1", "--scenario", "S2", "--json", str(figures)
        )
        assert status == 0
        lines = out.splitlines()
        assert lines[0] == "| runner | S1 | S2 |"
        assert lines[1] == "|---|---|---|"
        assert [line.split(" | ")[0] for line in lines[2:5]] == [
            "| floor",
            "| floor, await dispatch(m)",
            "| **messagebus**",
        ]
        assert all(line.count("|") == 4 for line in lines[:6])
        assert lines[-1].startswith("N=200 per run, median of 1 interleaved runs")
        assert "measuring" in err
        report = json.loads(figures.read_text())
        assert (report["n"], report["runs"], list(report["scenarios"])) == (200, 1, ["S1", "S2"])
        assert report["scenarios"]["S1"]["ratio_to_floor"] > 0
        # The second floor, await dispatch(m), is reported beside the first.
        s1 = report["scenarios"]["S1"]
        assert s1["api_floor_ops_per_s"] > 0
        ratio = s1["api_floor_ops_per_s"] / s1["ops_per_s"]
        assert s1["ratio_to_api_floor"] == pytest.approx(ratio, abs=0.02)

    def test_chart(self, cli: Cli, tmp_path: Path) -> None:
        """--chart writes a PNG of the ratios."""
        pytest.importorskip("matplotlib")
        chart = tmp_path / "ratios.png"
        status, _, err = cli(*TINY, "--scenario", "S1+retry", "--chart", str(chart))
        assert status == 0
        assert chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert f"wrote the chart to {chart}" in err

    def test_chart_with_peers(self, tmp_path: Path) -> None:
        """Peers get bars of their own; a scenario a peer cannot express gets none."""
        pytest.importorskip("matplotlib")
        chart = tmp_path / "peers.png"
        ratio = {"ops_per_s": 1, "ratio_to_floor": 2.0}
        report = {
            "n": 1,
            "runs": 1,
            "scenarios": {s: {**ratio, "sync_handlers": ratio} for s in ("S1", "S2")},
            "peers": {"peer": {"S1": ratio}},
        }
        _bench.draw(report, chart)
        assert chart.read_bytes().startswith(b"\x89PNG")


class TestBenchMistakes:
    """What cannot run says why, before measuring."""

    def test_chart_without_matplotlib(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """--chart without matplotlib names the extra to install."""
        monkeypatch.setitem(sys.modules, "matplotlib", None)
        status, out, err = cli(*TINY, "--chart", "x.png")
        assert status == 1
        assert "--chart needs matplotlib: pip install 'anyio-messagebus[chart]'" in err
        assert out == ""

    def test_unknown_scenario(self, cli: Cli) -> None:
        """An unknown scenario lists the known ones."""
        status, _, err = cli(*TINY, "--scenario", "S9")
        assert status == 2
        assert "S9; choose from S1, S2" in err

    def test_called_directly_without_a_checkout(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The command itself, run without the script (messagebus would not offer it)."""
        monkeypatch.setattr(_bench, "find_script", lambda: None)
        result = CliRunner().invoke(_bench.bench, list(TINY[1:]))
        assert result.exit_code == 1
        assert _bench.WHY_NOT in result.output


def listed(help_text: str) -> list[str]:
    """The command names `messagebus --help` lists."""
    commands = help_text.split("Commands:\n", 1)[1]
    return [line.split()[0] for line in commands.splitlines() if line.startswith("  ")]


class TestOffered:
    """`bench` is a command in a checkout only; elsewhere it is not one at all."""

    @pytest.fixture
    def checks(self, monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], list[int]]:
        """Make the finder find the script or not; return the list of its calls."""
        calls: list[int] = []

        def finder(found: bool) -> list[int]:
            def find_script() -> Path | None:
                calls.append(1)
                return Path("benchmarks/dispatch.py") if found else None

            monkeypatch.setattr(_bench, "find_script", find_script)
            return calls

        return finder

    def test_offered_in_a_checkout(self, cli: Cli, checks: Callable[[bool], list[int]]) -> None:
        """The finder finds the script: listed in the help, and runs (its --help here)."""
        checks(True)
        status, out, _ = cli("--help")
        assert status == 0
        assert "bench" in listed(out)
        status, out, _ = cli("bench", "--help")
        assert (status, out.startswith("Usage: messagebus bench")) == (0, True)

    def test_not_offered_elsewhere(self, cli: Cli, checks: Callable[[bool], list[int]]) -> None:
        """No script: not in the help, and `messagebus bench` is no command, saying why."""
        checks(False)
        status, out, _ = cli("--help")
        assert status == 0
        assert "bench" not in listed(out)
        assert {"dead-letters", "outbox", "worker"} <= set(listed(out))
        for argv in (TINY, ("bench", "--help")):
            status, out, err = cli(*argv)
            assert (status, out) == (2, "")
            assert err.splitlines()[-1] == f"Error: No such command 'bench': {_bench.WHY_NOT}"

    def test_never_suggested_elsewhere(self, cli: Cli, checks: Callable[[bool], list[int]]) -> None:
        """A near miss is not answered with "did you mean 'bench'" where there is none."""
        checks(False)
        status, _, err = cli("benc")
        assert status == 2
        assert "No such command 'benc'" in err
        assert "bench" not in err.replace("'benc'", "")

    def test_the_real_finder(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Neither beside the package nor here: not offered (the finder, not a stand-in)."""
        monkeypatch.setattr(_bench, "SCRIPT", Path("benchmarks") / "missing.py")
        monkeypatch.chdir(tmp_path)
        assert _bench.find_script() is None
        status, _, err = cli(*TINY)
        assert status == 2
        assert "No such command 'bench'" in err
        (tmp_path / "benchmarks").mkdir()
        (tmp_path / "benchmarks" / "missing.py").touch()
        assert _bench.find_script() == tmp_path / "benchmarks" / "missing.py"

    def test_decided_lazily(self, cli: Cli, checks: Callable[[bool], list[int]]) -> None:
        """Other commands never ask the finder; only listing or naming `bench` does."""
        calls = checks(False)
        assert cli("--version")[0] == 0
        assert cli("outbox", "--help")[0] == 0
        assert cli("lint", "--app", "tests.cli_app:bus")[0] == 0
        assert calls == []
        cli("--help")
        assert calls
