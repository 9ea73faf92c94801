from __future__ import annotations

from typing import Any

import attrs
import pytest

from messagebus import Context, Envelope, Message, MessageBus
from messagebus.extension import CallNext, HandlerInfo, Middleware
from tests.messages import ChargeCard, PostPublished, Receipt

pytestmark = pytest.mark.anyio


def tracer(label: str, trace: list[str]) -> Middleware:
    async def middleware(envelope: Envelope[Message], call_next: CallNext) -> Any:
        trace.append(f"{label} in")
        result = await call_next(envelope)
        trace.append(f"{label} out")
        return result

    return middleware


@attrs.define
class CountingBinder:
    """A handler-aware middleware that records each bind and each run."""

    binds: list[str] = attrs.field(factory=list)
    runs: list[str] = attrs.field(factory=list)

    def bind(self, handler: HandlerInfo) -> Middleware:
        self.binds.append(handler.name)

        async def middleware(envelope: Envelope[Message], call_next: CallNext) -> Any:
            self.runs.append(handler.name)
            return await call_next(envelope)

        return middleware


class TestOrder:
    """First added is outermost; global wraps per-handler."""

    async def test_global_then_local_first_added_outermost(self) -> None:
        """[g1, g2] global and [h1, h2] local run g1 > g2 > h1 > h2 > handler."""
        trace: list[str] = []
        bus = MessageBus(middleware=[tracer("g1", trace), tracer("g2", trace)])

        @bus.handler(ChargeCard, middleware=[tracer("h1", trace), tracer("h2", trace)])
        async def charge(command: ChargeCard) -> Receipt:
            trace.append("handler")
            return Receipt(1)

        assert await bus.send(ChargeCard(1)) == Receipt(1)
        assert trace == [
            "g1 in",
            "g2 in",
            "h1 in",
            "h2 in",
            "handler",
            "h2 out",
            "h1 out",
            "g2 out",
            "g1 out",
        ]

    async def test_added_later_applies_to_existing_handlers(self) -> None:
        """add_middleware() rebuilds every chain, innermost of the globals."""
        trace: list[str] = []
        bus = MessageBus(middleware=[tracer("first", trace)])
        bus.handler(ChargeCard, lambda command: Receipt(1), middleware=[tracer("local", trace)])
        bus.subscriber(PostPublished, lambda event: trace.append("subscriber"))
        bus.add_middleware(tracer("second", trace))
        await bus.send(ChargeCard(1))
        assert trace == [
            "first in",
            "second in",
            "local in",
            "local out",
            "second out",
            "first out",
        ]
        trace.clear()
        await bus.publish(PostPublished(1, "x"))
        assert trace == ["first in", "second in", "subscriber", "second out", "first out"]

    async def test_each_subscriber_gets_its_own_chain_run(self) -> None:
        """Per-subscriber middleware sees only its subscriber's runs."""
        binder = CountingBinder()
        bus = MessageBus(middleware=[binder])
        bus.subscriber(PostPublished, lambda event: None, name="a")
        bus.subscriber(PostPublished, lambda event: None, name="b")
        await bus.publish(PostPublished(1, "x"))
        assert binder.runs == ["a", "b"]


class TestComposition:
    """Chains are composed once per handler, never per message."""

    async def test_bind_is_called_once_per_handler(self) -> None:
        """A thousand messages, one bind per handler."""
        binder = CountingBinder()
        bus = MessageBus(middleware=[binder])
        bus.handler(ChargeCard, lambda command: Receipt(1), name="charge")
        bus.subscriber(PostPublished, lambda event: None, name="notify")
        for _ in range(500):
            await bus.send(ChargeCard(1))
            await bus.publish(PostPublished(1, "x"))
        assert binder.binds == ["charge", "notify"]
        assert len(binder.runs) == 1000


class TestPowers:
    """What a middleware can do to a run."""

    async def test_short_circuit(self) -> None:
        """A middleware may answer without calling the handler."""
        calls: list[int] = []

        async def cache(envelope: Envelope[Message], call_next: CallNext) -> Any:
            return Receipt(0)

        async def charge(command: ChargeCard) -> Receipt:
            calls.append(1)
            return Receipt(1)

        bus = MessageBus()
        bus.handler(ChargeCard, charge, middleware=[cache])
        assert await bus.send(ChargeCard(1)) == Receipt(0)
        assert calls == []

    async def test_replace_the_envelope(self) -> None:
        """What call_next is given is what the handler sees."""

        async def second_attempt(envelope: Envelope[Message], call_next: CallNext) -> Any:
            return await call_next(envelope.replace(attempt=2))

        attempts: list[int] = []
        bus = MessageBus()

        @bus.handler(ChargeCard, middleware=[second_attempt])
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            attempts.append(ctx.envelope.attempt)
            return Receipt(1)

        await bus.send(ChargeCard(1))
        assert attempts == [2]

    async def test_calling_next_twice_keeps_only_the_last_runs_follow_ups(self) -> None:
        """A retried run's follow-ups replace the failed attempt's."""

        async def retry_once(envelope: Envelope[Message], call_next: CallNext) -> Any:
            try:
                return await call_next(envelope)
            except RuntimeError:
                return await call_next(envelope.replace(attempt=envelope.attempt + 1))

        seen: list[int] = []
        bus = MessageBus()

        @bus.handler(ChargeCard, middleware=[retry_once])
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            ctx.publish(PostPublished(ctx.envelope.attempt, "attempt"))
            if ctx.envelope.attempt == 1:
                raise RuntimeError("flaky")
            return Receipt(1)

        bus.subscriber(PostPublished, lambda event: seen.append(event.post_id))
        await bus.send(ChargeCard(1))
        assert seen == [2]

    async def test_middleware_sees_the_envelope_ids(self) -> None:
        """Middleware envelopes carry metadata given to send()."""
        seen: list[Envelope[Message]] = []

        async def spy(envelope: Envelope[Message], call_next: CallNext) -> Any:
            seen.append(envelope)
            return await call_next(envelope)

        bus = MessageBus(middleware=[spy])
        bus.handler(ChargeCard, lambda command: Receipt(1))
        await bus.send(ChargeCard(1), idempotency_key="k")
        assert seen[0].idempotency_key == "k"
        assert seen[0].message == ChargeCard(1)
