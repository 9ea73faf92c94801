from __future__ import annotations

from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import capture_logs

from messagebus import CommandRejected, Context, MessageBus
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

    async def test_ids_are_bound_for_the_handlers_own_lines(self) -> None:
        """The handler's own log lines carry the ids; nothing stays bound after."""
        bus = MessageBus(middleware=[LoggingMiddleware()])
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

    async def test_binding_can_be_turned_off(self) -> None:
        """bind_contextvars=False leaves structlog's context alone."""
        bus = MessageBus(middleware=[LoggingMiddleware(bind_contextvars=False)])
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
