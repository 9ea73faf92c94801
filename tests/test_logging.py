from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import LogCapture, capture_logs

from messagebus import CommandRejected, Context, MessageBus, add_message_context
from messagebus.middleware import LoggingMiddleware
from tests.messages import ChargeCard, PostPublished, Receipt

pytestmark = pytest.mark.anyio

IDS = {"message_id", "correlation_id", "causation_id", "message_type", "handler", "attempt"}


class TestLoggingMiddleware:
    """One structured line per handler run, with the ids and the outcome."""

    async def test_success(self) -> None:
        """A handled message logs its ids and duration at info."""
        bus = MessageBus(middleware=[LoggingMiddleware()])
        bus.handler(ChargeCard, lambda command: Receipt(1), name="charge")
        with capture_logs() as logs:
            await bus.send(ChargeCard(1))
        (line,) = logs
        assert line["event"] == "message handled"
        assert line["log_level"] == "info"
        assert line.keys() >= IDS
        assert line["handler"] == "charge"
        assert line["message_type"] == "payments.card.charge"
        assert line["attempt"] == 1
        assert line["duration_ms"] >= 0

    async def test_rejection(self) -> None:
        """A rejection logs its reason at info; the sender still gets it."""
        bus = MessageBus(middleware=[LoggingMiddleware()])

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            raise CommandRejected("card expired")

        with capture_logs() as logs, pytest.raises(CommandRejected):
            await bus.send(ChargeCard(1))
        (line,) = logs
        assert (line["event"], line["log_level"], line["reason"]) == (
            "command rejected",
            "info",
            "card expired",
        )

    async def test_failure(self) -> None:
        """A failure logs at error with the exception, then propagates."""
        bus = MessageBus(middleware=[LoggingMiddleware()])

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            raise ValueError("bank down")

        with capture_logs() as logs, pytest.raises(ValueError, match="bank down"):
            await bus.send(ChargeCard(1))
        (line,) = logs
        assert (line["event"], line["log_level"], line["exc_info"]) == (
            "handler failed",
            "error",
            True,
        )

    async def test_cancellation(self) -> None:
        """A cancelled run logs at warning and stays cancelled."""
        bus = MessageBus(middleware=[LoggingMiddleware()])
        started = anyio.Event()

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        with capture_logs() as logs:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(bus.send, ChargeCard(1))
                await started.wait()
                tasks.cancel_scope.cancel()
        (line,) = logs
        assert (line["event"], line["log_level"]) == ("handler cancelled", "warning")

    async def test_ids_can_be_bound_for_the_handlers_own_lines(self) -> None:
        """With bind_contextvars, the handler's own lines carry the ids; nothing stays after."""
        bus = MessageBus(middleware=[LoggingMiddleware(bind_contextvars=True)])
        seen: list[dict[str, Any]] = []

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            seen.append(structlog.contextvars.get_contextvars())
            return Receipt(1)

        await bus.send(ChargeCard(1))
        (bound,) = seen
        assert bound.keys() >= IDS
        assert bound["handler"] == "charge"
        assert structlog.contextvars.get_contextvars() == {}

    async def test_binding_is_off_by_default(self) -> None:
        """By default structlog's context variables are left alone."""
        bus = MessageBus(middleware=[LoggingMiddleware()])
        seen: list[dict[str, Any]] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            seen.append(structlog.contextvars.get_contextvars())
            return Receipt(1)

        with capture_logs() as logs:
            await bus.send(ChargeCard(1))
        assert seen == [{}]
        assert logs[0].keys() >= IDS

    async def test_follow_up_lines_show_the_causation(self) -> None:
        """A follow-up's line names the command as its cause, same correlation."""
        bus = MessageBus(middleware=[LoggingMiddleware()])

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            ctx.publish(PostPublished(1, "paid"))
            return Receipt(1)

        bus.subscriber(PostPublished, lambda event: None, name="notify")
        with capture_logs() as logs:
            await bus.send(ChargeCard(1))
        command, event = logs
        assert (command["handler"], event["handler"]) == ("charge", "notify")
        assert event["causation_id"] == command["message_id"]
        assert event["correlation_id"] == command["correlation_id"]

    async def test_uses_the_given_logger(self) -> None:
        """A logger passed in is the one written to."""
        bus = MessageBus(
            middleware=[LoggingMiddleware(logger=structlog.get_logger("app").bind(svc="blog"))]
        )
        bus.handler(ChargeCard, lambda command: Receipt(1))
        with capture_logs() as logs:
            await bus.send(ChargeCard(1))
        assert logs[0]["svc"] == "blog"

    def test_not_callable_unbound(self) -> None:
        """The bus binds it per handler; calling it directly is a mistake."""
        with pytest.raises(TypeError, match="bound per handler"):
            anyio.run(LoggingMiddleware(), None, None)  # type: ignore[arg-type]

    def test_never_configures_structlog(self) -> None:
        """Importing and using the library leaves structlog's configuration alone."""
        before = structlog.get_config()
        bus = MessageBus(middleware=[LoggingMiddleware()])
        bus.handler(ChargeCard, lambda command: Receipt(1))
        with capture_logs():
            anyio.run(bus.send, ChargeCard(1))
        assert structlog.get_config() == before


class TestFilteredLevels:
    """With info filtered out, successful runs log nothing; failures still do."""

    def logger(self) -> Any:
        return structlog.wrap_logger(
            structlog.testing.CapturingLogger(),
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            processors=[],
        )

    async def test_success_and_rejection_are_silent_failures_are_not(self) -> None:
        """Only the failure reaches a logger filtering at WARNING."""
        log = self.logger()
        bus = MessageBus(middleware=[LoggingMiddleware(logger=log)])

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            if command.amount < 0:
                raise CommandRejected("negative amount")
            if command.amount == 0:
                raise ValueError("zero")
            return Receipt(command.amount)

        assert await bus.send(ChargeCard(1)) == Receipt(1)
        with pytest.raises(CommandRejected):
            await bus.send(ChargeCard(-1))
        with pytest.raises(ValueError, match="zero"):
            await bus.send(ChargeCard(0))
        (call,) = log._logger.calls
        assert call.method_name == "error"
        assert call.kwargs["event"] == "handler failed"
        assert call.kwargs["handler"] == "charge"

    async def test_stdlib_level_is_respected(self) -> None:
        """A stdlib-backed logger's level is asked once, through isEnabledFor."""

        class StdlibLike:
            def __init__(self) -> None:
                self.lines: list[str] = []

            def bind(self) -> StdlibLike:
                return self

            def isEnabledFor(self, level: int) -> bool:  # stdlib's name
                return level >= logging.ERROR

            def error(self, event: str, **kw: Any) -> None:
                self.lines.append(event)

        log = StdlibLike()
        bus = MessageBus(middleware=[LoggingMiddleware(logger=log)])
        bus.handler(ChargeCard, lambda command: Receipt(1))
        await bus.send(ChargeCard(1))
        assert log.lines == []

    async def test_loggers_that_cannot_tell_log_info(self) -> None:
        """A logger without a level check gets every line."""

        class Plain:
            def __init__(self) -> None:
                self.lines: list[str] = []

            def bind(self) -> Plain:
                return self

            def info(self, event: str, **kw: Any) -> None:
                self.lines.append(event)

        log = Plain()
        bus = MessageBus(middleware=[LoggingMiddleware(logger=log)])
        bus.handler(ChargeCard, lambda command: Receipt(1))
        await bus.send(ChargeCard(1))
        assert log.lines == ["message handled"]


@contextmanager
def capture_with_context() -> Iterator[list[MutableMapping[str, Any]]]:
    """capture_logs with add_message_context first (its processors= needs structlog 25.5)."""
    capture = LogCapture()
    before = structlog.get_config()
    structlog.configure(processors=[add_message_context, capture])
    try:
        yield capture.entries
    finally:
        structlog.configure(**before)


class TestAddMessageContext:
    """The structlog processor adds the handled message's ids to any line."""

    async def test_lines_logged_inside_handlers_carry_the_ids(self) -> None:
        """A handler's own line gets the ids of the message it handles."""
        bus = MessageBus()
        log = structlog.get_logger("app")

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            log.info("charging", amount=command.amount)
            ctx.publish(PostPublished(1, "paid"))
            return Receipt(1)

        @bus.subscriber(PostPublished, name="notify")
        async def notify(event: PostPublished) -> None:
            log.info("notifying", message_type="explicit wins")

        with capture_with_context() as logs:
            log.info("outside")
            await bus.send(ChargeCard(1), idempotency_key="k")
        outside, charging, notifying = logs
        assert IDS.isdisjoint(outside)
        assert charging["handler"] == "charge"
        assert charging["message_type"] == "payments.card.charge"
        assert charging["attempt"] == 1
        assert charging["causation_id"] is None
        assert notifying["handler"] == "notify"
        assert notifying["causation_id"] == charging["message_id"]
        assert notifying["correlation_id"] == charging["correlation_id"]
        assert notifying["message_type"] == "explicit wins"

    async def test_sequential_subscribers_are_told_apart(self) -> None:
        """Each subscriber's lines name that subscriber; a plain handler's too."""
        bus = MessageBus()
        log = structlog.get_logger("app")
        bus.subscriber(PostPublished, lambda event: log.info("a"), name="a")
        bus.subscriber(PostPublished, lambda event: log.info("b"), name="b")
        with capture_with_context() as logs:
            await bus.publish(PostPublished(1, "x"))
        assert [(line["event"], line["handler"]) for line in logs] == [("a", "a"), ("b", "b")]
        assert logs[0]["message_id"] == logs[1]["message_id"]
