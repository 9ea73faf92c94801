#!/usr/bin/env python3
"""Set up and run the project with nothing but Python >= 3.11 installed.

    python3 dev.py demo     # the demo service on the embedded defaults
    python3 dev.py test     # every check CI runs: ruff, mypy --strict, pytest + coverage
    python3 dev.py bench    # the dispatch benchmark, with the peers installed

Each command first makes ``.venv`` (once) and installs the project into it in editable
mode, again only when ``pyproject.toml`` has changed since the last install.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"


def ensure_venv(extras: str) -> None:
    """Make the virtual environment and install the project with ``extras`` if stale."""
    if not PYTHON.exists():
        print(f"dev.py: creating {VENV.name}/", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    print(f"dev.py: installing anyio-messagebus[{extras}] into {VENV.name}/", flush=True)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "--editable", f".[{extras}]")
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
    run(PYTHON, "-m", "coverage", "run", "-m", "pytest", *pytest_args)
    run(PYTHON, "-m", "coverage", "report")


def demo(args: list[str]) -> None:
    """Run the blog demo."""
    ensure_venv("dev")
    run(BIN / "messagebus", "demo", *args)


def bench(args: list[str]) -> None:
    """Run the dispatch benchmark with the peers installed."""
    ensure_venv("dev,bench")
    run(PYTHON, "benchmarks/dispatch.py", *args)


COMMANDS = {"test": test, "demo": demo, "bench": bench}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
