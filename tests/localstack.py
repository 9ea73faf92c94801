"""LocalStack on the host, for the SQS tests and the SQS benchmark: install, start, stop.

LocalStack (SQS and SNS; see /work/shared/SQS-LOCAL.md for why this server and these
settings) runs from its own Python 3.13 virtual environment, made once in
``~/.cache/messagebus-localstack-<version>`` (about 30 s, 500 MB; later runs reuse it),
and listens on a free port of 127.0.0.1 only. :func:`localstack_server` is the plain
context manager (the benchmark uses it); the ``localstack_endpoint`` fixture starts one
server per test session. If LocalStack cannot be installed or started, the tests that
need it are skipped on a workstation and fail when ``CI`` is set.

Environment:
    MESSAGEBUS_TEST_LOCALSTACK_URL: use a LocalStack already running at this loopback
        URL instead of starting one (fast edit-test loops).
    MESSAGEBUS_LOCALSTACK_PYTHON: the Python >= 3.13 interpreter to make the venv with
        (default: pyenv's newest 3.13, found with or without pyenv on PATH, then
        ``python3.13`` on PATH).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

LOCALSTACK_VERSION = "2026.3.0"
# Newer transitive releases break localstack-core's runtime: cbor2>=6 drops
# cbor2._decoder, pyopenssl>=25 drops X509.add_extensions, twisted TLS needs these.
PINS = ("cbor2<6", "pyopenssl<25", "cryptography<45", "service_identity<25")
URL_ENV = "MESSAGEBUS_TEST_LOCALSTACK_URL"
PYTHON_ENV = "MESSAGEBUS_LOCALSTACK_PYTHON"
SERVICES = ("sqs", "sns", "events")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 10.0


class LocalStackUnavailableError(Exception):
    """LocalStack could not be installed or started here (the message says why)."""


def cache_dir() -> Path:
    """Where this version's virtual environment lives (kept between runs)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / f"messagebus-localstack-{LOCALSTACK_VERSION}"


def find_python313() -> Path:
    """A Python >= 3.13 interpreter: LocalStack's runtime fails on 3.11 and 3.12."""
    if chosen := os.environ.get(PYTHON_ENV):
        return Path(chosen)
    # pyenv may be installed without being on PATH (CI runs without a login shell).
    roots = [Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")]
    if pyenv := shutil.which("pyenv"):
        answer = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)
        roots.insert(0, Path(answer.stdout.strip() or roots[0]))
    candidates = [
        python for root in roots for python in sorted(root.glob("versions/3.13*/bin/python"))[::-1]
    ]
    candidates += [Path(found) for found in (shutil.which("python3.13"),) if found]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise LocalStackUnavailableError(
        f"no Python 3.13 found for LocalStack (pyenv install 3.13, or set {PYTHON_ENV})"
    )


def ensure_installed() -> Path:
    """Return the LocalStack venv's interpreter, installing it first if missing.

    The venv is complete only once the ``.complete`` stamp is written; a half-made one
    (an interrupted install) is removed and made again. A lock file keeps two processes
    (a test run and a benchmark) from installing at once.
    """
    venv = cache_dir()
    python = venv / "bin" / "python"
    stamp = venv / ".complete"
    wanted = " ".join((LOCALSTACK_VERSION, *PINS))
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == wanted and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        interpreter = find_python313()
        _run([str(interpreter), "-m", "venv", str(venv)])
        _run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        _run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                f"localstack-core[runtime]=={LOCALSTACK_VERSION}",
                *PINS,
            ]
        )
        stamp.write_text(wanted)
    return python


def _run(argv: list[str]) -> None:
    completed = subprocess.run(argv, capture_output=True, text=True, check=False)
    if completed.returncode:
        raise LocalStackUnavailableError(
            f"{' '.join(argv)} failed ({completed.returncode}):\n{completed.stderr[-2000:]}"
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def require_loopback(url: str) -> str:
    """Return ``url`` if its host is a loopback address; refuse anything else."""
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LocalStackUnavailableError(f"{url}: only loopback endpoints are allowed")
    return url


def services_running(endpoint: str) -> bool:
    """Whether LocalStack's health endpoint says SQS and SNS are running."""
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as answer:
            health = json.load(answer)
    except (OSError, ValueError):
        return False
    states = health.get("services", {})
    return all(states.get(service) == "running" for service in SERVICES)


@contextlib.contextmanager
def localstack_server() -> Iterator[str]:
    """Install if needed, start LocalStack on a free loopback port, yield its URL, stop it.

    Stopping sends SIGTERM to the server's process group, then SIGKILL after
    ``STOP_TIMEOUT`` seconds.

    Raises:
        LocalStackUnavailableError: it could not be installed, or did not become ready.
    """
    python = ensure_installed()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="messagebus-localstack-") as volume:
        env = {
            **os.environ,
            "GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "LOCALSTACK_HOST": f"127.0.0.1:{port}",
            "SERVICES": ",".join(SERVICES),
            "EAGER_SERVICE_LOADING": "1",
            "DNS_ADDRESS": "0",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DISABLE_EVENTS": "1",
            "LOCALSTACK_VOLUME_DIR": volume,
            # The default strategy builds queue URLs that need public DNS.
            "SQS_ENDPOINT_STRATEGY": "path",
            "SQS_DISABLE_CLOUDWATCH_METRICS": "1",
        }
        log_path = Path(volume, "localstack.log")
        with open(log_path, "wb") as log:
            server = subprocess.Popen(
                [str(python), "-m", "localstack.runtime.main"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_ready(server, endpoint, log_path)
            yield endpoint
        finally:
            _stop(server)


def _wait_ready(server: subprocess.Popen[bytes], endpoint: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not services_running(endpoint):
        if server.poll() is not None:
            raise LocalStackUnavailableError(
                f"LocalStack exited with {server.returncode}:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise LocalStackUnavailableError(
                f"LocalStack not ready after {START_TIMEOUT:.0f} s:\n{_tail(log_path)}"
            )
        time.sleep(0.1)  # polling an external process's health, not synchronising tests


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


@pytest.fixture(scope="session")
def localstack_endpoint() -> Iterator[str]:
    """The URL of a LocalStack (SQS + SNS) on 127.0.0.1, one per test session."""
    if given := os.environ.get(URL_ENV):
        yield require_loopback(given.rstrip("/"))
        return
    server = localstack_server()
    try:
        endpoint = server.__enter__()
    except LocalStackUnavailableError as error:
        _unavailable(str(error))
    try:
        yield endpoint
    finally:
        server.__exit__(None, None, None)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}\nCI must run the SQS tests against LocalStack.", pytrace=False)
    pytest.skip(f"{reason} (set {URL_ENV} to use a running LocalStack)")
