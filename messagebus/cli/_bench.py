"""``messagebus bench``: the dispatch benchmark, with a progress bar, a table and a chart.

The benchmark itself is ``benchmarks/dispatch.py`` of the repository (with its peers'
adapters beside it): it measures the bus against the floor and against other libraries,
which are no business of the installed package. So the command needs a checkout: it
finds the script beside the package (an editable install) or in the current directory,
loads it, and runs its scenarios one by one in this process (the figures are those
``python benchmarks/dispatch.py`` gives). ``--chart`` draws the ratios to the floor
with matplotlib (``pip install 'anyio-messagebus[chart]'``).

Where there is no script (an installed wheel, anywhere but in a checkout) the command
is not offered at all: :func:`available` is the check ``messagebus`` asks (see
:mod:`messagebus.cli._offered`).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import structlog

import messagebus

__all__ = ["WHY_NOT", "available", "bench", "find_script"]

SCRIPT = Path("benchmarks") / "dispatch.py"
WHY_NOT = (
    f"the benchmark runs from a checkout of the repository (no {SCRIPT} beside the package or here)"
)


def find_script() -> Path | None:
    """Return the checkout's ``benchmarks/dispatch.py``: beside the package, else here.

    None when neither has one. Two ``stat`` calls: cheap enough for every ``--help``.
    """
    for root in (Path(messagebus.__file__).resolve().parent.parent, Path.cwd()):
        if (root / SCRIPT).is_file():
            return root / SCRIPT
    return None


def available() -> bool:
    """Tell whether the benchmark can run here: whether :func:`find_script` finds it."""
    return find_script() is not None


def load_script(path: Path) -> ModuleType:
    """Import the benchmark script (and make its peers' package importable)."""
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("messagebus_dispatch_benchmark", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # attrs and dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@click.command()
@click.option("--quick", is_flag=True, help="fewer messages and rounds (N=5000, 3 runs)")
@click.option("--n", type=click.IntRange(min=1), help="messages per run [default: 50000]")
@click.option("--runs", type=click.IntRange(min=1), help="timed rounds, median [default: 7]")
@click.option("--scenario", "scenarios", multiple=True, help="only this scenario (repeatable)")
@click.option("--no-peers", is_flag=True, help="measure the bus only")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the figures here",
)
@click.option(
    "--chart",
    type=click.Path(dir_okay=False, path_type=Path),
    help="draw the ratios to the floor as a PNG bar chart (needs matplotlib)",
)
def bench(  # click passes options by name
    *,
    quick: bool,
    n: int | None,
    runs: int | None,
    scenarios: tuple[str, ...],
    no_peers: bool,
    json_path: Path | None,
    chart: Path | None,
) -> None:
    """Measure dispatch: the bus against the least any dispatcher can do, and peers.

    Prints a Markdown table of ops/s and (xR), the runner's cost relative to the floor
    (1.0 is the floor). Peers are measured when installed (pip install -e '.[bench]').
    """
    if chart is not None:
        _pyplot()  # refuse before measuring for minutes
    path = find_script()
    if path is None:  # only when called directly: messagebus does not offer it then
        raise click.ClickException(WHY_NOT)
    script = load_script(path)
    unknown = sorted(set(scenarios) - set(script.SCENARIOS))
    if unknown:
        raise click.BadParameter(
            f"{', '.join(unknown)}; choose from {', '.join(script.SCENARIOS)}",
            param_hint="--scenario",
        )
    report = script.new_report(n or (5_000 if quick else 50_000), runs or (3 if quick else 7))
    chosen: tuple[str, ...] = scenarios or tuple(script.SCENARIOS)
    script.configure_quiet_logging()
    try:
        with click.progressbar(
            chosen, label="measuring", file=sys.stderr, item_show_func=_shown
        ) as bar:
            for scenario in bar:
                script.measure_scenario(report, scenario, peers=not no_peers)
    finally:
        structlog.reset_defaults()
    click.echo(script.render(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
    if chart is not None:
        draw(report, chart)
        click.echo(f"wrote the chart to {chart}", err=True)


def _shown(scenario: str | None) -> str | None:
    return scenario


def _pyplot() -> Any:
    try:
        import matplotlib  # noqa: PLC0415  # optional: only --chart needs it

        matplotlib.use("Agg")  # a file, never a window
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as error:
        raise click.ClickException(
            f"--chart needs matplotlib: pip install 'anyio-messagebus[chart]' ({error})"
        ) from error
    return plt


def draw(report: dict[str, Any], path: Path) -> None:
    """Write a bar chart of each runner's ratio to the floor, per scenario, to ``path``."""
    plt = _pyplot()
    scenarios = list(report["scenarios"])
    series: dict[str, list[float]] = {
        "messagebus": [report["scenarios"][s]["ratio_to_floor"] for s in scenarios],
        "messagebus, sync handlers": [
            report["scenarios"][s]["sync_handlers"]["ratio_to_floor"] for s in scenarios
        ],
    }
    for peer, figures in report["peers"].items():
        # A peer that cannot express a scenario has no bar there (nan is drawn as none).
        series[peer] = [figures.get(s, {}).get("ratio_to_floor", float("nan")) for s in scenarios]
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(scenarios)), 4.5))
    for index, (name, ratios) in enumerate(series.items()):
        axes.bar([i + index * width for i in range(len(scenarios))], ratios, width, label=name)
    axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--", label="floor")
    axes.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(scenarios))], scenarios, rotation=30, ha="right"
    )
    # Ratios span 1 to 100 and more (the idempotency store): a log scale shows them all.
    axes.set_yscale("log")
    axes.set_ylabel("cost relative to the floor (1.0 = floor)")
    axes.set_title(f"dispatch, N={report['n']}, median of {report['runs']} runs")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
