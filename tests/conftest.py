"""Every async test runs on asyncio and on trio, through anyio's pytest plugin."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from messagebus.cli import main
from tests import lambda_events

CliResult = tuple[int, str, str]
Cli = Callable[..., CliResult]

pytest_plugins = [
    "tests.databases",
    "tests.eventlog_fixtures",
    "tests.localstack",
    # After tests.localstack, whose loopback check it imports.
    "tests.dynamodb_local",
]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run the ``messagebus`` command in-process; return (exit status, stdout, stderr)."""

    def run(*argv: str) -> CliResult:
        try:
            main(list(argv))
            status = 0
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture(autouse=True)
def _close_lambda_functions() -> Iterator[None]:
    """Stop the event loops of the Lambda functions a test made (tests/lambda_events.py)."""
    yield
    while lambda_events.made:
        lambda_events.made.pop().close()
