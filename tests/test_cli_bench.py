"""`messagebus bench`: the dispatch benchmark from the checkout, as a table and a chart."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

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

    def test_no_checkout(self, cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        """Without the repository's benchmarks/ the command says it needs a checkout."""
        monkeypatch.setattr(_bench, "SCRIPT", Path("benchmarks") / "missing.py")
        monkeypatch.chdir(tmp_path)
        status, _, err = cli(*TINY)
        assert status == 1
        assert "the benchmark runs from a checkout of the repository" in err
