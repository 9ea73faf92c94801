"""`messagebus worker`: an application's bus served until SIGTERM, its transport by URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from messagebus.transports._url import transport_from_url
from messagebus.transports.memory import InMemoryTransport
from tests import worker_app
from tests.conftest import Cli

ROOT = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-c", "from messagebus.cli import main; main()", "worker"]


@pytest.fixture(autouse=True)
def restore_transport_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """--transport sets MESSAGEBUS_TRANSPORT in this process: put it back afterwards."""
    monkeypatch.setenv("MESSAGEBUS_TRANSPORT", "memory://")


class TestWorkerProcess:
    """The command in a real process: SIGTERM lets the running job finish, then exits 0."""

    def run_until_started(
        self, *options: str, job_seconds: float
    ) -> tuple[subprocess.Popen[str], list[str]]:
        process = subprocess.Popen(
            [
                *COMMAND,
                "--app",
                "tests.worker_app:bus",
                "--transport",
                "memory://",
                "--provision",
                "--ready-hook",
                "tests.worker_app:enqueue_job",
                *options,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONWARNINGS": "error",
                "WORKER_APP_JOB_SECONDS": str(job_seconds),
            },
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if line.strip() == "started":
                break
        return process, lines

    def test_sigterm_finishes_in_flight_work(self) -> None:
        """Ready line, the job finishes within the grace, one summary line, exit 0."""
        process, lines = self.run_until_started(job_seconds=0.5)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert "started" in lines
        assert (
            "worker ready: service cli-jobs, transport InMemoryTransport, concurrency 16" in lines
        )
        assert out.splitlines()[-2:] == [
            "finished",
            "worker stopped: received 1, acked 1, returned 0",
        ]
        assert process.returncode == 0

    def test_sigterm_past_the_grace_returns_the_job(self) -> None:
        """With --grace 0 the running job is cancelled and returned to its queue."""
        process, _ = self.run_until_started("--grace", "0", "--concurrency", "2", job_seconds=60)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert "finished" not in out
        assert out.splitlines()[-1] == "worker stopped: received 1, acked 0, returned 1"
        assert process.returncode == 0


class TestWorkerCommand:
    """The command in this process (a ready hook sends the SIGTERM)."""

    def test_serves_until_sigterm(self, cli: Cli) -> None:
        """One line when ready, one when stopped."""
        status, out, _ = cli(
            "worker",
            "--app",
            "tests.worker_app:make_bus",
            "--provision",
            "--ready-hook",
            "tests.worker_app:stop_at_once",
        )
        assert status == 0
        assert out.splitlines() == [
            "worker ready: service cli-jobs, transport InMemoryTransport, concurrency 16",
            "worker stopped: received 0, acked 0, returned 0",
        ]

    def test_transport_option_reaches_the_bus(self, cli: Cli) -> None:
        """--transport memory://NAME: the bus runs on that named broker."""
        status, out, _ = cli(
            "worker",
            "--app",
            "tests.worker_app:make_bus",
            "--transport",
            "memory://test-cli-worker",
            "--concurrency",
            "3",
            "--provision",
            "--ready-hook",
            "tests.worker_app:remember_and_stop",
        )
        assert status == 0
        assert "concurrency 3" in out.splitlines()[0]
        transport = worker_app.seen[-1].transport
        assert isinstance(transport, InMemoryTransport)
        named = transport_from_url("memory://test-cli-worker")
        assert isinstance(named, InMemoryTransport)
        assert transport.broker is named.broker
        named.broker.queue("cli-jobs")  # provisioned: the queue exists on the named broker

    def test_in_memory_the_queue_is_made_without_provision(self, cli: Cli) -> None:
        """Nothing outside the worker's process can make an in-memory queue: it does."""
        status, _, _ = cli(
            "worker",
            "--app",
            "tests.worker_app:make_bus",
            "--transport",
            "memory://test-cli-worker-unprovisioned",
            "--ready-hook",
            "tests.worker_app:remember_and_stop",
        )
        assert status == 0
        named = transport_from_url("memory://test-cli-worker-unprovisioned")
        assert isinstance(named, InMemoryTransport)
        named.broker.queue("cli-jobs")  # raises when there is no such queue


class TestWorkerMistakes:
    """Mistakes are one line and exit 2, before anything runs."""

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (
                ["--app", "tests.worker_app:make_bus", "--transport", "kafka://x"],
                "Invalid value for --transport: 'kafka://x': scheme: unknown transport 'kafka'",
            ),
            (
                ["--app", "tests.no_env_app:bus", "--transport", "memory://"],
                "--transport: tests.no_env_app:bus did not read MESSAGEBUS_TRANSPORT",
            ),
            (
                ["--app", "tests.worker_app"],
                "Invalid value for --app: 'tests.worker_app': expected",
            ),
            (
                [
                    "--app",
                    "tests.worker_app:make_bus",
                    "--ready-hook",
                    "tests.worker_app:not_a_function",
                ],
                "'tests.worker_app:not_a_function' is not callable",
            ),
            (
                ["--app", "tests.worker_app:make_bus", "--ready-hook", "tests.worker_app:nope"],
                "Invalid value for --ready-hook: 'tests.worker_app:nope': no attribute 'nope'",
            ),
            (["--app", "tests.worker_app:make_bus", "--concurrency", "0"], "--concurrency"),
        ],
    )
    def test_usage_errors(self, cli: Cli, argv: list[str], message: str) -> None:
        """Each says what is wrong, without a traceback."""
        status, _, err = cli("worker", *argv)
        assert status == 2
        assert message in " ".join(err.split())
        assert "Traceback" not in err


class TestNoTransportChosen:
    """No transport configured: the worker refuses in one line, unless memory was chosen."""

    REFUSAL = (
        "Error: no transport configured: MESSAGEBUS_TRANSPORT is unset, so "
        "tests.worker_app:make_bus fell back to an in-memory queue no other process can "
        "reach (its messages die with this worker); set MESSAGEBUS_TRANSPORT or "
        "--transport (memory:// to run in memory on purpose)"
    )

    def test_refuses_the_fallback(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """transport_from_env() without the variable: exit 1, one line, nothing served."""
        monkeypatch.delenv("MESSAGEBUS_TRANSPORT")
        status, out, err = cli(
            "worker",
            "--app",
            "tests.worker_app:make_bus",
            "--ready-hook",
            "tests.worker_app:stop_at_once",
        )
        assert (status, out) == (1, "")
        assert err.splitlines() == [self.REFUSAL]

    def test_refuses_in_a_process(self) -> None:
        """The same refusal from the installed command's code in a process of its own."""
        env = {key: value for key, value in os.environ.items() if key != "MESSAGEBUS_TRANSPORT"}
        completed = subprocess.run(
            [*COMMAND, "--app", "tests.worker_app:make_bus"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**env, "PYTHONWARNINGS": "error"},
            timeout=60,
            check=False,
        )
        assert (completed.returncode, completed.stdout) == (1, "")
        assert completed.stderr.splitlines() == [self.REFUSAL]

    @pytest.mark.parametrize(
        ("argv", "variable"),
        [
            (["--app", "tests.worker_app:make_bus", "--transport", "memory://"], None),
            (["--app", "tests.worker_app:make_bus"], "memory://"),
            (["--app", "tests.no_env_app:bus"], None),
        ],
        ids=["--transport memory://", "MESSAGEBUS_TRANSPORT=memory://", "a bus built on memory"],
    )
    def test_memory_chosen_explicitly_runs(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch, argv: list[str], variable: str | None
    ) -> None:
        """--transport memory://, the variable set to it, or an app bus built on it."""
        if variable is None:
            monkeypatch.delenv("MESSAGEBUS_TRANSPORT")
        else:
            monkeypatch.setenv("MESSAGEBUS_TRANSPORT", variable)
        status, out, err = cli("worker", *argv, "--ready-hook", "tests.worker_app:stop_at_once")
        assert status == 0, err
        assert out.splitlines()[-1] == "worker stopped: received 0, acked 0, returned 0"

    def test_no_transport_at_all(self, cli: Cli) -> None:
        """A bus without a transport has no queue to consume: one line, exit 1."""
        status, _, err = cli("worker", "--app", "tests.no_env_app:in_process")
        assert status == 1
        assert err.splitlines() == [
            "Error: tests.no_env_app:in_process has no transport, so no queue to consume: "
            "give its MessageBus transport=transport_from_env() (or another transport)"
        ]


class TestWorkerEnvironment:
    """MESSAGEBUS_APP and MESSAGEBUS_CONCURRENCY stand for --app and --concurrency."""

    def test_app_and_concurrency_from_the_environment(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """No --app, no --concurrency: the variables give them."""
        monkeypatch.setenv("MESSAGEBUS_APP", "tests.worker_app:make_bus")
        monkeypatch.setenv("MESSAGEBUS_CONCURRENCY", "3")
        status, out, err = cli("worker", "--ready-hook", "tests.worker_app:stop_at_once")
        assert status == 0, err
        assert out.splitlines()[0] == (
            "worker ready: service cli-jobs, transport InMemoryTransport, concurrency 3"
        )

    def test_a_bad_concurrency_from_the_variable_is_refused(
        self, cli: Cli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Click's range check applies to the variable's value (click >= 8.2 names it too)."""
        monkeypatch.setenv("MESSAGEBUS_CONCURRENCY", "0")
        status, _, err = cli("worker", "--app", "tests.worker_app:make_bus")
        assert status == 2
        assert "Invalid value for '--concurrency'" in err
        assert "0 is not in the range x>=1" in err

    def test_the_options_win(self, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
        """An option given on the command line overrides its variable."""
        monkeypatch.setenv("MESSAGEBUS_APP", "tests.nowhere:bus")
        monkeypatch.setenv("MESSAGEBUS_CONCURRENCY", "5")
        status, out, err = cli(
            "worker",
            "--app",
            "tests.worker_app:make_bus",
            "--concurrency",
            "2",
            "--ready-hook",
            "tests.worker_app:stop_at_once",
        )
        assert status == 0, err
        assert "concurrency 2" in out.splitlines()[0]
