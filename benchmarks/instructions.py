"""Instructions per dispatch, counted by valgrind: ratios that do not move with load.

    python benchmarks/instructions.py [--n 5000] [--scenario S1 ...]

The companion of ``dispatch.py`` for shared, noisy machines: wall-clock ratios there
move by tens of percent between runs, instruction counts do not (callgrind counts the
same total for the same code and inputs, whatever else the machine does). Each runner of
``dispatch.py`` (the floor, the ``await dispatch(m)`` floor, the bus, the bus with sync
handlers) runs in a child process under
``valgrind --tool=callgrind`` once with one pass over its N messages and once with three;
the difference divided by 2N is the cost of one dispatch, with start-up and message
construction cancelled out. Instructions are not time (allocation and cache behaviour
differ), so this tracks regressions; ``dispatch.py`` remains the throughput figure.
Needs valgrind (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import gc
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

HERE = Path(__file__).resolve().parent
RUNNERS = ("floor", "api_floor", "bus", "bus_sync")
SCENARIOS = ("S1", "S2", "S3", "S4", "S5")
# Measured only when asked for (--scenario): dispatch.py's scenarios that extend another.
EXTENDED = ("S1+retry", "S3+retry", "S1+idempotency", "S1+duplicates")


def child(scenario: str, runner: str, n: int, passes: int) -> None:
    """Build one runner and run it ``passes`` times (in the process valgrind watches)."""
    sys.path.insert(0, str(HERE))
    import dispatch

    dispatch.configure_quiet_logging()
    if runner == "floor":
        run = dispatch.floor_runner(scenario, n)
    elif runner == "api_floor":
        run = dispatch.api_floor_runner(scenario, n)
    else:
        run = dispatch.bus_runner(scenario, n, sync=runner == "bus_sync")

    # Everything built so far (modules, the bus, the messages) goes to the permanent
    # generation: a full collection landing in one pass and not the other would scan
    # the whole heap and add hundreds of instructions per message at random (seen:
    # the same floor at 1,235 and 1,694 in two runs). Young collections still count.
    gc.collect()
    gc.freeze()

    async def main() -> None:
        for _ in range(passes):
            await run()

    anyio.run(main)


def count(scenario: str, runner: str, n: int, passes: int) -> int:
    """Return the instructions a child running ``passes`` passes executes."""
    with tempfile.TemporaryDirectory() as tmp:
        completed = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                __file__,
                "--child",
                scenario,
                runner,
                str(n),
                str(passes),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if completed.returncode:
        raise RuntimeError(f"{scenario}/{runner} failed under valgrind:\n{completed.stderr}")
    match = re.search(r"Collected : (\d+)", completed.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{completed.stderr}")
    return int(match.group(1))


def cell(value: float, floor: float, second: float) -> str:
    """Return ``value`` with its ratios to both floors."""
    return f"{value:,.0f} (x{value / floor:.2f} / x{value / second:.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5_000, help="messages per pass")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS + EXTENDED)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario, runner, n, passes = args.child
        child(scenario, runner, int(n), int(passes))
        return 0
    if shutil.which("valgrind") is None:
        print("instructions.py needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    print(
        "| scenario | floor instr/op | await dispatch(m) floor | bus instr/op (x floor / x second)"
        " | sync handlers (x floor / x second) |"
    )
    print("|---|---|---|---|---|")
    for scenario in args.scenario or SCENARIOS:
        per_op = {
            runner: (count(scenario, runner, args.n, 3) - count(scenario, runner, args.n, 1))
            / (2 * args.n)
            for runner in RUNNERS
        }
        floor, second = per_op["floor"], per_op["api_floor"]

        bus, bus_sync = cell(per_op["bus"], floor, second), cell(per_op["bus_sync"], floor, second)
        print(f"| {scenario} | {floor:,.0f} | {second:,.0f} | {bus} | {bus_sync} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
