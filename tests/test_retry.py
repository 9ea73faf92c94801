from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
from structlog.testing import capture_logs

from messagebus import (
    CommandRejected,
    Context,
    DecodeError,
    Envelope,
    Message,
    MessageBus,
    NoHandlerError,
    RetriesExhausted,
)
from messagebus.extension import CallNext
from messagebus.middleware import DEFAULT_EVENT_POLICY, RetryMiddleware
from messagebus.retry import (
    NEVER_RETRIED,
    Attempt,
    Discard,
    ExponentialBackoff,
    FixedBackoff,
    GiveUp,
    Retry,
    RetryPolicy,
)
from tests.messages import ChargeCard, FollowersNotified, PostPublished, Receipt

pytestmark = pytest.mark.anyio


class FlakyError(ConnectionError):
    pass


@attrs.define
class FakeTime:
    """A clock that only moves when something sleeps: retries without waiting."""

    now: float = 1000.0
    sleeps: list[float] = attrs.field(factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def retry(time: FakeTime, **kwargs: Any) -> RetryMiddleware:
    return RetryMiddleware(sleep=time.sleep, clock=time.clock, uniform=lambda a, b: b, **kwargs)


def failures(times: int, error: type[Exception] = FlakyError) -> list[Attempt]:
    return [Attempt(n, 10.0 * n, error("x")) for n in range(1, times + 1)]


ENVELOPE: Envelope[Message] = Envelope(ChargeCard(1))


class TestBackoff:
    """Delay schedules before jitter."""

    def test_exponential_schedule_with_cap(self) -> None:
        """0.1, 0.2, 0.4, 0.8 ... up to the cap."""
        backoff = ExponentialBackoff(initial=0.1, multiplier=2, cap=1.0)
        assert [backoff.delay(n) for n in range(1, 7)] == pytest.approx(
            [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
        )

    def test_exponential_never_overflows(self) -> None:
        """A huge retry number stays at the cap instead of overflowing."""
        assert ExponentialBackoff(cap=30).delay(100_000) == 30

    def test_fixed(self) -> None:
        """The same delay every time."""
        assert {FixedBackoff(0.5).delay(n) for n in range(1, 10)} == {0.5}

    def test_validation(self) -> None:
        """Negative delays and shrinking multipliers are refused."""
        with pytest.raises(ValueError, match="initial"):
            ExponentialBackoff(initial=-1)
        with pytest.raises(ValueError, match="multiplier"):
            ExponentialBackoff(multiplier=0.5)
        with pytest.raises(ValueError, match="seconds"):
            FixedBackoff(-1)


class TestDecide:
    """The policy's decision is a pure function of its inputs."""

    policy = RetryPolicy(max_attempts=4, backoff=FixedBackoff(1.0), jitter="none")

    def test_retries_until_max_attempts(self) -> None:
        """Retry after 1, 2, 3 failures of 4 attempts; give up after the 4th."""
        decisions = [
            self.policy.decide(ENVELOPE, FlakyError("x"), failures(n)) for n in range(1, 5)
        ]
        assert decisions[:3] == [Retry(1.0)] * 3
        assert isinstance(decisions[3], GiveUp)
        assert "4 of 4" in decisions[3].reason

    def test_same_inputs_same_decision(self) -> None:
        """Deciding twice gives the same answer and changes nothing."""
        history = failures(2)
        before = list(history)
        first = self.policy.decide(ENVELOPE, FlakyError("x"), history)
        assert self.policy.decide(ENVELOPE, FlakyError("x"), history) == first
        assert history == before

    @pytest.mark.parametrize(
        "error", [CommandRejected("no"), DecodeError("bad"), NoHandlerError("none")]
    )
    def test_never_retried(self, error: Exception) -> None:
        """Refusals, undecodable data and missing handlers are final."""
        assert isinstance(error, NEVER_RETRIED)
        decision = RetryPolicy().decide(ENVELOPE, error, failures(1, type(error)))
        assert isinstance(decision, GiveUp)
        assert "never retried" in decision.reason

    def test_never_retry_and_retry_on(self) -> None:
        """never_retry adds final errors; retry_on limits what is retried."""
        policy = RetryPolicy(retry_on=(ConnectionError,), never_retry=(FlakyError,))
        assert isinstance(policy.decide(ENVELOPE, FlakyError(), failures(1)), GiveUp)
        assert isinstance(policy.decide(ENVELOPE, ValueError(), failures(1)), GiveUp)
        assert isinstance(policy.decide(ENVELOPE, TimeoutError(), failures(1)), GiveUp)
        assert isinstance(policy.decide(ENVELOPE, ConnectionResetError(), failures(1)), Retry)

    def test_discard_on(self) -> None:
        """discard_on ends the message without a dead letter."""
        policy = RetryPolicy(discard_on=(LookupError,))
        assert isinstance(policy.decide(ENVELOPE, KeyError("gone"), failures(1)), Discard)

    def test_full_jitter_bounds(self) -> None:
        """Full jitter draws in [0, delay]."""
        policy = RetryPolicy(backoff=FixedBackoff(2.0), jitter="full")
        low = policy.decide(ENVELOPE, FlakyError(), failures(1), uniform=lambda a, b: a)
        high = policy.decide(ENVELOPE, FlakyError(), failures(1), uniform=lambda a, b: b)
        assert (low, high) == (Retry(0.0), Retry(2.0))
        draws = [
            policy.decide(ENVELOPE, FlakyError(), failures(1), uniform=random.uniform)
            for _ in range(500)
        ]
        assert all(isinstance(d, Retry) and 0.0 <= d.delay <= 2.0 for d in draws)
        assert len({d.delay for d in draws if isinstance(d, Retry)}) > 100

    def test_equal_jitter_bounds(self) -> None:
        """Equal jitter draws in [delay / 2, delay]."""
        policy = RetryPolicy(backoff=FixedBackoff(2.0), jitter="equal")
        low = policy.decide(ENVELOPE, FlakyError(), failures(1), uniform=lambda a, b: a)
        high = policy.decide(ENVELOPE, FlakyError(), failures(1), uniform=lambda a, b: b)
        assert (low, high) == (Retry(1.0), Retry(2.0))

    def test_deadline(self) -> None:
        """No retry is scheduled whose wait would end past the deadline."""
        policy = RetryPolicy(
            max_attempts=10, backoff=FixedBackoff(5.0), jitter="none", deadline=30.0
        )
        # 26 s since the first failure + 5 s wait = 31 s > 30 s, while 0 s + 5 s fits.
        history = [Attempt(1, 0.0, FlakyError()), Attempt(2, 26.0, FlakyError())]
        assert isinstance(policy.decide(ENVELOPE, FlakyError(), history[:1]), Retry)
        decision = policy.decide(ENVELOPE, FlakyError(), history)
        assert isinstance(decision, GiveUp)
        assert "deadline" in decision.reason

    def test_validation(self) -> None:
        """Nonsense policies are refused when made."""
        with pytest.raises(ValueError, match="max_attempts"):
            RetryPolicy(max_attempts=0)
        with pytest.raises(ValueError, match="jitter"):
            RetryPolicy(jitter="some")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="deadline"):
            RetryPolicy(deadline=0)
        with pytest.raises(TypeError, match="exception classes"):
            RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]

    def test_default_event_policy(self) -> None:
        """Subscribers retry 5 times with exponential backoff and full jitter."""
        assert (
            RetryPolicy(max_attempts=5, backoff=ExponentialBackoff(0.1, 2.0, 30.0), jitter="full")
            == DEFAULT_EVENT_POLICY
        )


class TestRetryingSubscribers:
    """Subscribers retry on their own; the others and the publisher are unaffected."""

    async def test_flaky_subscriber_succeeds_on_attempt_three(self) -> None:
        """Two failures, then success; the sibling runs exactly once."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time)])
        calls = {"email": 0, "index": 0}
        attempts: list[int] = []

        @bus.subscriber(PostPublished, name="email")
        async def email(event: PostPublished, ctx: Context[PostPublished]) -> None:
            calls["email"] += 1
            attempts.append(ctx.envelope.attempt)
            if calls["email"] < 3:
                raise FlakyError("mail server busy")

        @bus.subscriber(PostPublished, name="index")
        async def index(event: PostPublished) -> None:
            calls["index"] += 1

        with capture_logs() as logs:
            await bus.publish(PostPublished(1, "x"))
        assert calls == {"email": 3, "index": 1}
        assert attempts == [1, 2, 3]
        assert time.sleeps == pytest.approx([0.1, 0.2])
        assert await bus.dead_letters.list() == ()
        retried = [line for line in logs if line["event"] == "retrying handler"]
        assert [line["attempt"] for line in retried] == [1, 2]
        assert retried[0]["handler"] == "email"

    async def test_poison_subscriber_is_dead_lettered_after_n_attempts(self) -> None:
        """After max_attempts the real error, its traceback and the count are kept."""
        time = FakeTime()
        policy = RetryPolicy(max_attempts=3, backoff=FixedBackoff(1.0), jitter="none")
        bus = MessageBus(middleware=[retry(time, events=policy)])

        @bus.subscriber(PostPublished, name="poison")
        async def poison(event: PostPublished) -> None:
            raise FlakyError(f"cannot handle post {event.post_id}")

        with capture_logs():
            await bus.publish(PostPublished(7, "x"))
        (letter,) = await bus.dead_letters.list()
        assert letter.handler == "poison"
        assert letter.attempts == 3
        assert letter.error_type == f"{__name__}.FlakyError"
        assert letter.error_message == "cannot handle post 7"
        assert "raise FlakyError" in letter.traceback
        assert letter.first_failed_at <= letter.last_failed_at
        assert time.sleeps == [1.0, 1.0]

    async def test_failed_attempts_follow_ups_are_discarded(self) -> None:
        """Only the successful attempt's follow-ups go out."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time)])
        seen: list[int] = []

        @bus.subscriber(PostPublished, name="notify")
        async def notify(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.publish(FollowersNotified(ctx.envelope.attempt))
            if ctx.envelope.attempt < 2:
                raise FlakyError("once")

        bus.subscriber(FollowersNotified, lambda event: seen.append(event.post_id))
        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        assert seen == [2]

    async def test_discard(self) -> None:
        """A discarded message leaves no dead letter and logs a warning."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time, events=RetryPolicy(discard_on=(KeyError,)))])
        posts: dict[str, int] = {}
        bus.subscriber(PostPublished, lambda event: posts["gone"], name="stale")
        with capture_logs() as logs:
            await bus.publish(PostPublished(1, "x"))
        assert await bus.dead_letters.list() == ()
        assert [line["event"] for line in logs] == ["message discarded"]
        assert time.sleeps == []


class TestRetryingCommands:
    """Commands do not retry unless they opt in; the sender sees the outcome."""

    async def test_commands_do_not_retry_by_default(self) -> None:
        """The sender gets the first failure; the handler ran once."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time)])
        calls: list[int] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            calls.append(1)
            raise FlakyError("bank timeout")

        with pytest.raises(FlakyError):
            await bus.send(ChargeCard(1))
        assert calls == [1]
        assert time.sleeps == []

    async def test_opted_in_command_retries_then_succeeds(self) -> None:
        """An idempotent command handler with a policy is retried."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time, by_message_type={ChargeCard: RetryPolicy()})])
        calls: list[int] = []

        @bus.handler(ChargeCard, idempotent=True)
        async def charge(command: ChargeCard) -> Receipt:
            calls.append(1)
            if len(calls) < 3:
                raise FlakyError("bank timeout")
            return Receipt(command.amount)

        with capture_logs():
            assert await bus.send(ChargeCard(5)) == Receipt(5)
        assert len(calls) == 3

    async def test_exhausted_command_raises_retries_exhausted(self) -> None:
        """After the last attempt the sender gets RetriesExhausted from the last error."""
        time = FakeTime()
        policy = RetryPolicy(max_attempts=2, jitter="none")
        bus = MessageBus(middleware=[retry(time, commands=policy)])

        @bus.handler(ChargeCard, idempotent=True, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            raise FlakyError("bank down")

        with capture_logs(), pytest.raises(RetriesExhausted) as caught:
            await bus.send(ChargeCard(5))
        assert caught.value.attempts == 2
        assert caught.value.handler == "charge"
        assert isinstance(caught.value.__cause__, FlakyError)

    async def test_rejection_is_not_retried_and_not_wrapped(self) -> None:
        """CommandRejected reaches the sender as itself after one attempt."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time, commands=RetryPolicy())])
        calls: list[int] = []

        @bus.handler(ChargeCard, idempotent=True)
        async def charge(command: ChargeCard) -> Receipt:
            calls.append(1)
            raise CommandRejected("card expired")

        with pytest.raises(CommandRejected, match="card expired"):
            await bus.send(ChargeCard(5))
        assert calls == [1]


class TestPolicyChoice:
    """The most specific policy wins: handler, then message type, then kind."""

    async def test_precedence(self) -> None:
        """by_handler beats by_message_type beats the events default."""
        time = FakeTime()
        middleware = retry(
            time,
            events=RetryPolicy(max_attempts=2, jitter="none"),
            by_message_type={PostPublished: RetryPolicy(max_attempts=3, jitter="none")},
            by_handler={"special": RetryPolicy(max_attempts=4, jitter="none")},
        )
        bus = MessageBus(middleware=[middleware])
        counts = {"special": 0, "typed": 0, "plain": 0}

        def failing(name: str) -> Any:
            def run(event: Any) -> None:
                counts[name] += 1
                raise FlakyError(name)

            return run

        bus.subscriber(PostPublished, failing("special"), name="special")
        bus.subscriber(PostPublished, failing("typed"), name="typed")
        bus.subscriber(FollowersNotified, failing("plain"), name="plain")
        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
            await bus.publish(FollowersNotified(1))
        assert counts == {"special": 4, "typed": 3, "plain": 2}

    async def test_none_removes_the_layer(self) -> None:
        """A handler mapped to None is not retried, and its chain has no retry layer."""
        bus = MessageBus(middleware=[RetryMiddleware(by_handler={"once": None})])
        bus.subscriber(PostPublished, lambda event: None, name="once")
        (route,) = bus._events[PostPublished]
        assert route.direct is None
        assert route.inline is not None  # nothing wraps it: called directly

    def test_retrying_a_command_without_idempotency_warns(self) -> None:
        """Registration warns, naming the handler."""
        bus = MessageBus(middleware=[RetryMiddleware(commands=RetryPolicy())])
        with pytest.warns(RuntimeWarning, match=r"charge_card.*idempotency"):
            bus.handler(ChargeCard, lambda command: Receipt(1), name="charge_card")

    def test_no_warning_when_protected(self) -> None:
        """idempotent=True or an idempotency layer silences the warning."""

        @attrs.frozen
        class Dedupe:
            provides_idempotency = True

            async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
                return await call_next(envelope)

        bus = MessageBus(middleware=[RetryMiddleware(commands=RetryPolicy()), Dedupe()])
        bus.handler(ChargeCard, lambda command: Receipt(1))
        other = MessageBus(middleware=[RetryMiddleware(commands=RetryPolicy())])
        other.handler(ChargeCard, lambda command: Receipt(1), idempotent=True)

    def test_not_callable_unbound(self) -> None:
        """The bus binds it per handler; calling it directly is a mistake."""
        import anyio

        with pytest.raises(TypeError, match="bound per handler"):
            anyio.run(RetryMiddleware(), ENVELOPE, None)  # type: ignore[arg-type]


class TestOnFailureLayers:
    """A failure-only layer costs nothing on success and behaves the same anywhere."""

    def test_outermost_retry_keeps_the_direct_path(self) -> None:
        """With only a retry layer, the handler is still awaited directly."""
        bus = MessageBus(middleware=[RetryMiddleware()])

        async def notify(event: PostPublished) -> None:
            return None

        bus.subscriber(PostPublished, notify, name="notify")
        (route,) = bus._events[PostPublished]
        assert route.direct is notify
        assert route.recover is not None

    async def test_retry_inside_another_layer_still_retries(self) -> None:
        """Not outermost, the retry layer runs as an ordinary middleware."""
        time = FakeTime()
        seen: list[int] = []

        async def outer(envelope: Envelope[Message], call_next: CallNext) -> Any:
            seen.append(envelope.attempt)
            return await call_next(envelope)

        bus = MessageBus(middleware=[outer, retry(time)])
        calls: list[int] = []

        @bus.subscriber(PostPublished, name="flaky")
        async def flaky(event: PostPublished) -> None:
            calls.append(1)
            if len(calls) < 2:
                raise FlakyError("once")

        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        assert (len(calls), seen, await bus.dead_letters.list()) == (2, [1], ())

    async def test_retry_in_concurrent_fanout_and_follow_ups(self) -> None:
        """The full chain (used off the hot path) retries the same way."""
        time = FakeTime()
        bus = MessageBus(middleware=[retry(time)], fanout="concurrent")
        calls: dict[str, int] = {"a": 0, "b": 0}

        def flaky(name: str) -> Any:
            async def run(event: PostPublished) -> None:
                calls[name] += 1
                if calls[name] < 2:
                    raise FlakyError(name)

            return run

        bus.subscriber(PostPublished, flaky("a"), name="a")
        bus.subscriber(PostPublished, flaky("b"), name="b")
        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        assert calls == {"a": 2, "b": 2}
