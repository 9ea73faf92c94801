"""A local DynamoDB-compatible server for the DynamoDB store tests: moto, on loopback.

LocalStack's DynamoDB does not run on these machines without a container: it downloads
a Java 21 runtime and DynamoDB Local at start, and there is no internet (measured with
localstack-core 2026.3.0: "Installation of java 21 failed"). moto's server mode does:
``tests/dynamodb_server.py`` runs it in a subprocess of the test session's interpreter,
one request at a time (its docstring says why), on a free port of 127.0.0.1; it is
ready in well under a second.

If it cannot start (moto not installed), the tests that need it are skipped on a
workstation and fail when ``CI`` is set.

Environment:
    MESSAGEBUS_TEST_DYNAMODB_URL: use a DynamoDB-compatible server already running at
        this loopback URL instead of starting one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localstack import LocalStackUnavailableError, require_loopback

URL_ENV = "MESSAGEBUS_TEST_DYNAMODB_URL"
SERVER = Path(__file__).with_name("dynamodb_server.py")
STOP_TIMEOUT = 10.0


class DynamoDBUnavailableError(Exception):
    """The local DynamoDB server could not be started here (the message says why)."""


@contextlib.contextmanager
def dynamodb_server() -> Iterator[str]:
    """Start moto's DynamoDB on a free loopback port, yield its URL, stop it."""
    server = subprocess.Popen(
        [sys.executable, str(SERVER)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()  # blocks until it listens, or exits
        if not first.startswith("PORT "):
            server.wait(STOP_TIMEOUT)
            stderr = server.stderr.read() if server.stderr is not None else ""
            raise DynamoDBUnavailableError(
                f"the moto DynamoDB server did not start ({server.returncode}):\n{stderr[-2000:]}"
            )
        yield f"http://127.0.0.1:{int(first.split()[1])}"
    finally:
        _stop(server)


def _stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    for stream in (server.stdout, server.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """The URL of a DynamoDB-compatible server on 127.0.0.1, one per test session."""
    if given := os.environ.get(URL_ENV):
        try:
            endpoint = require_loopback(given.rstrip("/"))
        except LocalStackUnavailableError as error:
            _unavailable(str(error))
        yield endpoint
        return
    server = dynamodb_server()
    try:
        endpoint = server.__enter__()
    except DynamoDBUnavailableError as error:
        _unavailable(str(error))
    try:
        yield endpoint
    finally:
        server.__exit__(None, None, None)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}\nCI must run the DynamoDB store tests.", pytrace=False)
    pytest.skip(f"{reason} (set {URL_ENV} to use a running server)")
