#!/usr/bin/env python3
"""Set up and run the project with nothing but Python >= 3.11 installed.

    python3 dev.py demo         # the demo service on the embedded defaults (no extras)
    python3 dev.py test         # ruff, ruff format, mypy --strict, the docs site built
                                # strictly, pytest + coverage
    python3 dev.py test-lowest  # the tests at the lowest versions pyproject allows
    python3 dev.py bench        # the dispatch benchmark, with the peers installed

Each command first makes ``.venv`` (once) and installs the project into it in editable
mode, again only when ``pyproject.toml`` has changed since the last install. CI
(``.ci/run``) runs ``test`` then ``test-lowest``.

``test-lowest`` proves the dependency floors: in a second environment, ``.venv-lowest``,
uv installs the runtime extras and the test tools with ``--resolution lowest-direct``
(each of our direct dependencies at its floor, what they need at its newest) and runs
the tests, LocalStack's and the DynamoDB server's included, but for those of the dev
tools (see ``LOWEST_SKIPS``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
LOWEST = ROOT / ".venv-lowest"
LOWEST_PYTHON = LOWEST / ("Scripts" if os.name == "nt" else "bin") / "python"
# Every runtime extra but chart (matplotlib draws the benchmark's chart), with the test
# tools: the AWS extras too, so the SQS, EventBridge and Lambda tests run against
# LocalStack and the DynamoDB stores' against moto's server at the floors of aiobotocore
# and boto3.
LOWEST_EXTRAS = "postgres,sqs,dynamodb,aws-lambda,otel,test"
# Left out of the lowest-versions run (a module, or a test class by its node id): the
# tests that run dev tools .venv-lowest does not install, tools no user of the package
# meets through it: mypy on snippets, and the wheel built with pip and hatchling without
# build isolation. The chart tests of `messagebus bench` skip themselves without
# matplotlib (the chart extra).
LOWEST_SKIPS = (
    "tests/test_packaging.py::TestWheel",
    "tests/test_typing_registration.py",
)


def ensure_venv(extras: str) -> None:
    """Make the virtual environment and install the project with ``extras`` if stale."""
    if not PYTHON.exists():
        print(f"dev.py: creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f".[{extras}]" if extras else "."
    print(f"dev.py: installing anyio-messagebus{target[1:]} into {VENV.name}/", flush=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--editable", target)
    stamp.write_text(digest)


def ensure_lowest() -> None:
    """Make ``.venv-lowest`` with uv's lowest-direct resolution, if pyproject changed."""
    ensure_venv("dev")  # for uv
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    stamp = LOWEST / ".installed-lowest"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"dev.py: installing the lowest direct versions into {LOWEST.name}/", flush=True)
    uv = BIN / "uv"
    run(uv, "venv", "--quiet", "--allow-existing", "--python", sys.executable, LOWEST)
    run(
        uv, "pip", "install", "--quiet", "--python", LOWEST_PYTHON,
        "--resolution", "lowest-direct", "--editable", f".[{LOWEST_EXTRAS}]",
    )  # fmt: skip
    stamp.write_text(digest)


def run(*argv: object) -> None:
    """Run a command from the project root; stop with its exit code if it fails."""
    completed = subprocess.run([str(arg) for arg in argv], cwd=ROOT, check=False)
    if completed.returncode:
        sys.exit(completed.returncode)


def test(pytest_args: list[str]) -> None:
    """Run every check CI runs; extra arguments go to pytest."""
    ensure_venv("dev")
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    build_docs()
    run(PYTHON, "-m", "coverage", "run", "-m", "pytest", *pytest_args)
    run(PYTHON, "-m", "coverage", "report")


def build_docs() -> None:
    """Build the documentation site with every warning an error (into a scratch folder)."""
    with tempfile.TemporaryDirectory() as site:
        completed = subprocess.run(
            [str(BIN / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", site],
            cwd=ROOT,
            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            check=False,
        )
    if completed.returncode:
        sys.exit(completed.returncode)


def test_lowest(pytest_args: list[str]) -> None:
    """Run the unit tests at the lowest versions pyproject.toml allows (see the module)."""
    ensure_lowest()
    skips = [f"--{'deselect' if '::' in skip else 'ignore'}={skip}" for skip in LOWEST_SKIPS]
    run(LOWEST_PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", *skips, *pytest_args)


def demo(args: list[str]) -> None:
    """Run the blog demo (the core package only: the demo needs no extra)."""
    ensure_venv("")
    run(BIN / "messagebus", "demo", *args)


def bench(args: list[str]) -> None:
    """Run the dispatch benchmark with the peers installed."""
    ensure_venv("dev,bench")
    run(PYTHON, "benchmarks/dispatch.py", *args)


COMMANDS = {"test": test, "test-lowest": test_lowest, "demo": demo, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
