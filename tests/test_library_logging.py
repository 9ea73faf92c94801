"""The library's own log lines: to structlog when the application configured it, else to logging.

Real handlers and processors only: a :class:`logging.Handler` that keeps its records,
structlog's :class:`~structlog.testing.LogCapture` as the configured processor, and a
subprocess for Python's unconfigured defaults.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from messagebus import Context, MessageBus, RetriesExhausted, add_message_context
from messagebus._log import get_logger
from messagebus.middleware import LoggingMiddleware, RetryMiddleware
from messagebus.retry import RetryPolicy
from tests.messages import ChargeCard, PostPublished, Receipt

pytestmark = pytest.mark.anyio


class Kept(logging.Handler):
    """A real logging handler that keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as an application that never configured it leaves it."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
def kept(unconfigured: None) -> Iterator[Kept]:
    """A handler on the ``messagebus`` logger, at DEBUG, as an application would add it."""
    handler = Kept()
    logger = logging.getLogger("messagebus")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def configured(unconfigured: None) -> LogCapture:
    """structlog configured by the application, with a capturing processor."""
    capture = LogCapture()
    structlog.configure(processors=[capture])
    return capture


async def no_wait(seconds: float) -> None:
    pass


def retrying(**kwargs: Any) -> RetryMiddleware:
    policy = RetryPolicy(max_attempts=3, jitter="none")
    return RetryMiddleware(events=policy, sleep=no_wait, **kwargs)


def flaky_bus(failures: int, *, logging_first: bool = False) -> MessageBus:
    """A bus whose one subscriber fails ``failures`` times, then succeeds."""
    middleware: list[Any] = [retrying()]
    if logging_first:
        middleware.insert(0, LoggingMiddleware())
    bus = MessageBus(middleware=middleware)
    calls: list[int] = []

    @bus.subscriber(PostPublished, name="index")
    async def index(event: PostPublished) -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"search down ({len(calls)})")

    return bus


class TestWithoutStructlogConfigured:
    """The application configured only logging (or nothing): lines go through logging."""

    async def test_lines_reach_the_messagebus_logger(
        self, kept: Kept, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A retry line is a record of the ``messagebus`` logger, nothing is printed."""
        await flaky_bus(1).publish(PostPublished(1, "t"))
        (record,) = kept.records
        assert record.name == "messagebus"
        assert record.levelno == logging.INFO
        assert record.getMessage().startswith("retrying handler ")
        assert "attempt=1" in record.getMessage()
        assert "error='ConnectionError: search down (1)'" in record.getMessage()
        assert record.__dict__["handler"] == "index"
        assert record.__dict__["attempt"] == 1
        assert capsys.readouterr() == ("", "")

    async def test_levels_are_the_applications(self, kept: Kept) -> None:
        """At WARNING on the ``messagebus`` logger, info lines are not made at all."""
        logging.getLogger("messagebus").setLevel(logging.WARNING)
        await flaky_bus(1).publish(PostPublished(1, "t"))
        assert kept.records == []

    def test_a_line_below_the_level_builds_no_logger(
        self, kept: Kept, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The level is checked first: nothing is built for a line logging would drop."""
        built: list[object] = []
        bound_logger = structlog.stdlib.BoundLogger

        def counted(*args: Any) -> Any:
            built.append(args)
            return bound_logger(*args)

        monkeypatch.setattr(structlog.stdlib, "BoundLogger", counted)
        logging.getLogger("messagebus").setLevel(logging.WARNING)
        log = get_logger("messagebus")
        log.debug("dropped")
        log.info("dropped")
        assert built == []
        log.warning("kept")
        assert len(built) == 1
        assert kept.lines() == ["kept"]

    async def test_exceptions_go_as_exc_info(self, kept: Kept) -> None:
        """A failure line hands its exception to logging, for the application's formatter."""
        bus = flaky_bus(5, logging_first=True)
        await bus.publish(PostPublished(1, "t"))
        (failed,) = [r for r in kept.records if r.getMessage().startswith("handler failed ")]
        assert failed.levelno == logging.ERROR
        assert failed.exc_info is not None
        assert failed.exc_info[0] is RetriesExhausted
        assert "RetriesExhausted" in logging.Formatter().format(failed)

    def test_a_logger_made_early_follows_a_later_configuration(self, unconfigured: None) -> None:
        """The choice is made when a line is logged, not when the logger is made."""
        log = get_logger("messagebus")
        capture = LogCapture()
        structlog.configure(processors=[capture])
        log.warning("late", answer=42)
        assert capture.entries == [{"event": "late", "answer": 42, "log_level": "warning"}]

    def test_field_names_logging_reserves_stay_in_the_message(self, kept: Kept) -> None:
        """A field called like a LogRecord attribute is in the text, not an attribute."""
        get_logger("messagebus").warning("odd", name="x", lineno="y")
        (record,) = kept.records
        assert record.getMessage() == "odd name=x lineno=y"
        assert record.name == "messagebus"

    def test_unconfigured_python_prints_only_warnings_to_stderr(self) -> None:
        """With nothing configured: warnings on stderr (last resort), info nowhere, stdout empty."""
        script = textwrap.dedent(
            """
            from messagebus._log import get_logger
            log = get_logger("messagebus")
            log.info("retrying handler", attempt=1)
            log.warning("message discarded", reason="stale")
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert done.stdout == ""
        assert done.stderr == "message discarded reason=stale\n"

    async def test_dead_letter_lines_go_through_logging(
        self, kept: Kept, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The bus's own dead-letter line is a record of the ``messagebus`` logger."""
        await flaky_bus(5).publish(PostPublished(1, "t"))
        assert any(
            line.startswith("handler failed; message dead-lettered") for line in kept.lines()
        )
        assert capsys.readouterr().out == ""


class TestWithStructlogConfigured:
    """The application configured structlog: lines go through it, not through logging."""

    async def test_lines_reach_structlog(self, configured: LogCapture) -> None:
        """The retry line reaches the configured processors, with its fields."""
        handler = Kept()
        logging.getLogger("messagebus").addHandler(handler)
        try:
            await flaky_bus(1).publish(PostPublished(1, "t"))
        finally:
            logging.getLogger("messagebus").removeHandler(handler)
        (line,) = [e for e in configured.entries if e["event"] == "retrying handler"]
        assert (line["handler"], line["attempt"], line["log_level"]) == ("index", 1, "info")
        assert handler.records == []

    def test_a_logger_that_logged_follows_a_later_configuration(self, unconfigured: None) -> None:
        """Even with the application's loggers cached, a new configuration gets the lines."""
        first, second = LogCapture(), LogCapture()
        structlog.configure(processors=[first], cache_logger_on_first_use=True)
        log = get_logger("messagebus")
        log.warning("one")
        structlog.configure(processors=[second], cache_logger_on_first_use=True)
        log.warning("two")
        assert [entry["event"] for entry in first.entries] == ["one"]
        assert [entry["event"] for entry in second.entries] == ["two"]

    def test_the_library_configures_nothing(self, unconfigured: None) -> None:
        """Logging a library line configures neither structlog nor logging."""
        handlers = list(logging.getLogger().handlers)
        get_logger("messagebus").warning("hello")
        assert not structlog.is_configured()
        assert logging.getLogger().handlers == handlers


class TestAttempts:
    """Lines about a retried run carry the attempt they are about."""

    async def test_success_after_retries_logs_its_attempt(self, configured: LogCapture) -> None:
        """A subscriber that failed twice logs ``message handled`` with attempt 3."""
        await flaky_bus(2, logging_first=True).publish(PostPublished(1, "t"))
        (handled,) = [e for e in configured.entries if e["event"] == "message handled"]
        assert handled["attempt"] == 3
        retries = [e["attempt"] for e in configured.entries if e["event"] == "retrying handler"]
        assert retries == [1, 2]

    async def test_dead_letter_lines_agree(self, configured: LogCapture) -> None:
        """``handler failed`` says attempt 3 beside the dead letter's ``attempts=3``."""
        bus = flaky_bus(5, logging_first=True)
        await bus.publish(PostPublished(1, "t"))
        (failed,) = [e for e in configured.entries if e["event"] == "handler failed"]
        (dead,) = [e for e in configured.entries if "dead-lettered" in e["event"]]
        assert failed["attempt"] == dead["attempts"] == 3
        (letter,) = await bus.dead_letters.list()
        assert letter.attempts == 3

    async def test_the_handlers_own_lines_carry_the_attempt(self, unconfigured: None) -> None:
        """add_message_context tells a retried handler's lines apart, without a ctx too."""
        capture = LogCapture()
        structlog.configure(processors=[add_message_context, capture])
        bus = MessageBus(middleware=[retrying()])
        calls: list[int] = []

        @bus.subscriber(PostPublished, name="plain")
        async def plain(event: PostPublished) -> None:
            calls.append(1)
            structlog.get_logger().info("plain")
            if len(calls) < 3:
                raise ConnectionError("down")

        @bus.subscriber(PostPublished, name="with_ctx")
        async def with_ctx(event: PostPublished, ctx: Context[PostPublished]) -> None:
            structlog.get_logger().info("with ctx")

        await bus.publish(PostPublished(1, "t"))
        assert [e["attempt"] for e in capture.entries if e["event"] == "plain"] == [1, 2, 3]
        # The next subscriber of the same event starts again at its own first attempt.
        assert [e["attempt"] for e in capture.entries if e["event"] == "with ctx"] == [1]


class TestTracebacks:
    """A retried failure's traceback tells the last error as the cause, not every attempt."""

    async def failure(self, logging_first: bool) -> RetriesExhausted:
        middleware: list[Any] = [
            RetryMiddleware(commands=RetryPolicy(max_attempts=3, jitter="none"), sleep=no_wait)
        ]
        if logging_first:
            middleware.insert(0, LoggingMiddleware())
        bus = MessageBus(middleware=middleware)
        calls: list[int] = []

        @bus.handler(ChargeCard, idempotent=True, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            calls.append(1)
            raise ConnectionError(f"bank down ({len(calls)})")

        with pytest.raises(RetriesExhausted) as caught:
            await bus.send(ChargeCard(1))
        return caught.value

    @pytest.mark.parametrize("logging_first", [False, True], ids=["retry-outermost", "inside"])
    async def test_no_chain_of_attempts(self, configured: LogCapture, logging_first: bool) -> None:
        """RetriesExhausted comes from the last error, which chains nothing else."""
        error = await self.failure(logging_first)
        text = "".join(traceback.format_exception(error))
        assert "During handling of the above exception" not in text
        assert "The above exception was the direct cause" in text
        assert str(error.__cause__) == "bank down (3)"
        assert "bank down (1)" not in text
        assert "bank down (2)" not in text

    async def test_the_handlers_own_chaining_stays(self, configured: LogCapture) -> None:
        """An error the handler raised while handling another still shows that one."""
        bus = MessageBus(
            middleware=[
                RetryMiddleware(commands=RetryPolicy(max_attempts=2, jitter="none"), sleep=no_wait)
            ]
        )

        @bus.handler(ChargeCard, idempotent=True, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            cards: dict[str, Receipt] = {}
            try:
                return cards["card"]
            except KeyError:
                raise ConnectionError("bank down")  # noqa: B904  # chained implicitly, on purpose

        with pytest.raises(RetriesExhausted) as caught:
            await bus.send(ChargeCard(1))
        last = caught.value.__cause__
        assert isinstance(last, ConnectionError)
        assert isinstance(last.__context__, KeyError)
