from __future__ import annotations

import hashlib
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from structlog.testing import capture_logs

from messagebus import (
    Command,
    Context,
    DuplicateInProgressError,
    Envelope,
    IdempotencyKeyReused,
    Message,
    MessageBus,
)
from messagebus.extension import CallNext, IdempotencyStore
from messagebus.idempotency import (
    Claimed,
    Completed,
    InMemoryIdempotencyStore,
    Mismatch,
    PostgresIdempotencyStore,
    SQLiteIdempotencyStore,
)
from messagebus.middleware import IdempotencyMiddleware, RetryMiddleware
from messagebus.retry import RetryPolicy
from tests.messages import ChargeCard, IndexPost, PostPublished, Receipt

pytestmark = pytest.mark.anyio


@attrs.define
class Clock:
    """A wall clock for the store that moves only when told to."""

    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def yield_only(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


@attrs.frozen
class Untyped(Command, name="test.untyped"):  # type: ignore[type-arg]
    n: int


def payments(store: IdempotencyStore | None = None, **options: Any) -> tuple[MessageBus, list[int]]:
    """A bus whose ChargeCard handler records every charge it makes."""
    middleware = IdempotencyMiddleware(
        store or InMemoryIdempotencyStore(), sleep=yield_only, clock=lambda: 0.0, **options
    )
    bus = MessageBus(middleware=[middleware])
    charges: list[int] = []

    @bus.handler(ChargeCard, name="charge")
    async def charge(command: ChargeCard) -> Receipt:
        charges.append(command.amount)
        return Receipt(command.amount * 100 + len(charges))

    return bus, charges


class TestDuplicates:
    """A key runs its handler once; duplicates get the stored result."""

    async def test_duplicate_returns_the_stored_result(self) -> None:
        """Same key twice: one charge, the same receipt (decoded to Receipt) twice."""
        bus, charges = payments()
        with capture_logs() as logs:
            first = await bus.send(ChargeCard(5), idempotency_key="order-42")
            second = await bus.send(ChargeCard(5), idempotency_key="order-42")
        assert first == second == Receipt(501)
        assert isinstance(second, Receipt)
        assert charges == [5]
        assert [line["event"] for line in logs] == ["duplicate message: stored result returned"]

    async def test_different_keys_are_different_runs(self) -> None:
        """Without a key, each message id is its own key."""
        bus, charges = payments()
        await bus.send(ChargeCard(5))
        await bus.send(ChargeCard(5))
        assert charges == [5, 5]

    async def test_fifty_concurrent_duplicates_run_once(self) -> None:
        """Fifty sends of one key at once: one run, fifty equal receipts."""
        bus, charges = payments()
        results: list[Receipt] = []

        async def send() -> None:
            results.append(await bus.send(ChargeCard(7), idempotency_key="k"))

        with capture_logs():
            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(send)
        assert charges == [7]
        assert results == [Receipt(701)] * 50

    async def test_key_reused_for_another_payload(self) -> None:
        """Same key, different amount: IdempotencyKeyReused, no second charge."""
        bus, charges = payments()
        await bus.send(ChargeCard(5), idempotency_key="order-42")
        with pytest.raises(IdempotencyKeyReused, match="order-42"):
            await bus.send(ChargeCard(6), idempotency_key="order-42")
        assert charges == [5]

    async def test_fingerprint_selects_what_must_match(self) -> None:
        """With a fingerprint of nothing, any payload under one key is a duplicate."""
        bus, charges = payments(fingerprint=lambda message: None)
        await bus.send(ChargeCard(5), idempotency_key="k")
        assert await bus.send(ChargeCard(6), idempotency_key="k") == Receipt(501)
        assert charges == [5]

    async def test_custom_key_function(self) -> None:
        """A key function over the message; None from it falls back to the default."""

        def by_amount(envelope: Envelope[Message]) -> str | None:
            message = envelope.message
            return str(message.amount) if isinstance(message, ChargeCard) else None

        bus, charges = payments(key=by_amount)
        await bus.send(ChargeCard(5))
        await bus.send(ChargeCard(5))
        assert charges == [5]


class TestFingerprints:
    """Fingerprints are msgspec's deterministic JSON, hashed; earlier records still match."""

    def test_equal_payloads_have_one_fingerprint(self) -> None:
        """Prefixed "2:", the same for equal messages, different for different ones."""
        middleware = IdempotencyMiddleware(InMemoryIdempotencyStore())
        first = middleware.fingerprint_of(Envelope(ChargeCard(5)))
        assert first.startswith("2:")
        assert len(first) == 2 + 64
        assert middleware.fingerprint_of(Envelope(ChargeCard(5))) == first
        assert middleware.fingerprint_of(Envelope(ChargeCard(6))) != first

    def test_dict_order_does_not_matter(self) -> None:
        """A fingerprint function returning dicts: key order is not part of the payload."""
        a = IdempotencyMiddleware(
            InMemoryIdempotencyStore(), fingerprint=lambda m: {"x": 1, "y": 2}
        )
        b = IdempotencyMiddleware(
            InMemoryIdempotencyStore(), fingerprint=lambda m: {"y": 2, "x": 1}
        )
        envelope = Envelope(ChargeCard(5))
        assert a.fingerprint_of(envelope) == b.fingerprint_of(envelope)

    @pytest.mark.parametrize(
        ("subject", "kept_as"),
        [
            (None, "text"),
            (lambda message: {"a": message.amount}, "text"),
            (lambda message: {"long": "x" * 64, "a": message.amount}, "hash"),
            (lambda message: ["amounts", {message.amount, "a"}], "hash"),  # cattrs form
        ],
        ids=["whole message", "a dict", "longer than _INLINE", "not msgspec's (a mixed set)"],
    )
    async def test_the_in_memory_path_keeps_fingerprint_of_or_its_text(
        self, subject: Any, kept_as: str
    ) -> None:
        """The fast path keeps fingerprint_of's value, or for short data the text it hashes.

        Either way a duplicate is recognised, another payload under the key refused, and
        the store takes the text and its hash as one fingerprint.
        """
        store = InMemoryIdempotencyStore()
        middleware = IdempotencyMiddleware(store, fingerprint=subject)
        bus = MessageBus(middleware=[middleware])
        ran: list[int] = []

        def charge(command: ChargeCard) -> Receipt:
            ran.append(command.amount)
            return Receipt(command.amount)

        bus.handler(ChargeCard, charge, name="charge")
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(5)
        outcome = await store.claim("charge", "k", "another", 1.0)
        assert isinstance(outcome, Mismatch)
        digest = middleware.fingerprint_of(Envelope(ChargeCard(5)))
        kept = outcome.fingerprint
        if kept_as == "text":
            assert kept.startswith('["payments.card.charge",1,')
            assert "2:" + hashlib.sha256(kept.encode()).hexdigest() == digest
        else:
            assert kept == digest
        # A claim with fingerprint_of's value meets the record as its own, in either form.
        assert type(await store.claim("charge", "k", digest, 1.0)) is Completed
        other = middleware.fingerprint_of(Envelope(ChargeCard(6)))
        assert type(await store.claim("charge", "k", other, 1.0)) is Mismatch
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(5)
        assert ran == [5]
        with pytest.raises(IdempotencyKeyReused):
            await bus.send(ChargeCard(6), idempotency_key="k")

    async def test_a_subclass_message_has_its_own_fingerprint(self) -> None:
        """A message of a subclass of the handler's type is hashed with its own name."""

        @attrs.frozen
        class BigCharge(ChargeCard, name="payments.card.charge.big"):
            pass

        store = InMemoryIdempotencyStore()
        middleware = IdempotencyMiddleware(store)
        bus = MessageBus(middleware=[middleware])
        bus.handler(ChargeCard, lambda command: Receipt(command.amount), name="charge")
        route = bus._commands[ChargeCard]  # a subclass reaches the handler only by hand
        chain: Any = route.first
        envelope = Envelope(BigCharge(5), idempotency_key="k")
        await chain(envelope, route.then)
        digest = middleware.fingerprint_of(envelope)
        assert digest != middleware.fingerprint_of(Envelope(ChargeCard(5)))
        assert type(await store.claim("charge", "k", digest, 1.0)) is Completed

    def test_what_msgspec_cannot_encode_takes_the_cattrs_form(self) -> None:
        """A fingerprint msgspec cannot write falls back to the earlier, unprefixed form."""

        envelope = Envelope(ChargeCard(5))
        # A set of ints and strings has no order for msgspec's deterministic JSON.
        odd = IdempotencyMiddleware(
            InMemoryIdempotencyStore(), fingerprint=lambda message: ["amounts", {1, "a"}]
        )
        assert odd.fingerprint_of(envelope) == odd.legacy_fingerprint_of(envelope)

    async def test_a_record_claimed_by_an_earlier_version_still_deduplicates(
        self, real_store: IdempotencyStore
    ) -> None:
        """Completed under the cattrs fingerprint: a duplicate gets its result, no run.

        On the stores that outlive a process (the in-memory store never holds a record of
        an earlier messagebus, and its fast path does not look for one).
        """
        store = real_store
        middleware = IdempotencyMiddleware(store)
        legacy = middleware.legacy_fingerprint_of(Envelope(ChargeCard(5)))
        claimed = await store.claim("charge", "order-42", legacy, 60.0)
        assert isinstance(claimed, Claimed)
        await store.complete("charge", "order-42", claimed.token, '{"amount": 77}', 60.0)
        bus, charges = payments(store)
        assert await bus.send(ChargeCard(5), idempotency_key="order-42") == Receipt(77)
        assert charges == []

    async def test_an_earlier_record_of_another_payload_is_still_a_reuse(
        self, real_store: IdempotencyStore
    ) -> None:
        """The cattrs form is compared too: another payload under the key is refused."""
        store = real_store
        legacy = IdempotencyMiddleware(store).legacy_fingerprint_of(Envelope(ChargeCard(9)))
        claimed = await store.claim("charge", "order-42", legacy, 60.0)
        assert isinstance(claimed, Claimed)
        await store.complete("charge", "order-42", claimed.token, '{"amount": 77}', 60.0)
        bus, charges = payments(store)
        with pytest.raises(IdempotencyKeyReused, match="order-42"):
            await bus.send(ChargeCard(5), idempotency_key="order-42")
        assert charges == []


class TestFailures:
    """Failures release the claim; crashed holders expire; in-progress duplicates wait."""

    async def test_failure_releases_the_claim(self) -> None:
        """A failed run can be run again under the same key."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        attempts: list[int] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("bank timeout")
            return Receipt(1)

        with pytest.raises(ConnectionError):
            await bus.send(ChargeCard(5), idempotency_key="k")
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(1)
        assert len(attempts) == 2

    async def test_cancellation_releases_the_claim(self) -> None:
        """A cancelled run leaves no claim behind."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        started = anyio.Event()

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            started.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: bus.send(ChargeCard(5), idempotency_key="k"))
            await started.wait()
            tasks.cancel_scope.cancel()
        # No record is left behind: a claim with any fingerprint succeeds.
        assert isinstance(await store.claim("charge", "k", "anything", 1.0), Claimed)

    async def test_crashed_holder_expires(self) -> None:
        """A claim whose holder vanished is taken over once its lease ends."""
        clock = Clock()
        store = InMemoryIdempotencyStore(clock=clock)
        bus, charges = payments(store, lease=30.0, wait=0.0)
        digest = IdempotencyMiddleware(store).fingerprint_of(Envelope(ChargeCard(5)))
        assert isinstance(await store.claim("charge", "k", digest, 30.0), Claimed)
        with pytest.raises(DuplicateInProgressError):
            await bus.send(ChargeCard(5), idempotency_key="k")
        clock.now += 30.0
        # the crashed holder's fingerprint does not matter any more: its record expired
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(501)
        assert charges == [5]

    async def test_in_progress_duplicate_gives_up_after_the_wait(self) -> None:
        """A duplicate waits (polling) up to `wait` seconds, then raises a typed error."""

        @attrs.define
        class Monotonic:
            now: float = 0.0
            naps: list[float] = attrs.field(factory=list)

            def __call__(self) -> float:
                return self.now

            async def sleep(self, seconds: float) -> None:
                self.naps.append(seconds)
                self.now += seconds

        time = Monotonic()
        store = InMemoryIdempotencyStore()
        middleware = IdempotencyMiddleware(store, wait=2.0, sleep=time.sleep, clock=time)
        bus = MessageBus(middleware=[middleware])
        bus.handler(ChargeCard, lambda command: Receipt(1), name="charge")
        envelope_key = "k"
        digest = middleware.fingerprint_of(Envelope(ChargeCard(5)))
        await store.claim("charge", envelope_key, digest, 300.0)
        with pytest.raises(DuplicateInProgressError, match=r"2\.0 s"):
            await bus.send(ChargeCard(5), idempotency_key=envelope_key)
        assert sum(time.naps) == pytest.approx(2.0)
        assert time.naps[:3] == [0.01, 0.02, 0.04]

    async def test_completed_records_expire_and_are_cleaned_up(self) -> None:
        """After the TTL a key runs again; cleanup removes expired records."""
        clock = Clock()
        store = InMemoryIdempotencyStore(clock=clock)
        bus, charges = payments(store, ttl=60.0)
        await bus.send(ChargeCard(5), idempotency_key="a")
        await bus.send(ChargeCard(6), idempotency_key="b")
        clock.now += 61.0
        assert await store.cleanup(limit=1) == 1
        assert await store.cleanup() == 1
        assert await store.cleanup() == 0
        await bus.send(ChargeCard(5), idempotency_key="a")
        assert charges == [5, 6, 5]


class TestScopes:
    """Keys are scoped by handler name."""

    async def test_subscribers_deduplicate_independently(self) -> None:
        """Redelivered event: each subscriber runs once; one's failure leaves the other."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        runs = {"email": 0, "index": 0}

        @bus.subscriber(PostPublished, name="email")
        async def email(event: PostPublished) -> None:
            runs["email"] += 1

        @bus.subscriber(PostPublished, name="index")
        async def index(event: PostPublished) -> None:
            runs["index"] += 1
            if runs["index"] == 1:
                raise ConnectionError("search down")

        with capture_logs():
            await bus.publish(PostPublished(1, "x"), idempotency_key="post-1")
            await bus.publish(PostPublished(1, "x"), idempotency_key="post-1")
        assert runs == {"email": 1, "index": 2}


class TestWithRetries:
    """Retry outside, idempotency inside: side effects happen once."""

    async def test_retry_after_a_lost_answer_does_not_run_again(self) -> None:
        """The run succeeded but its answer was lost; the retry gets the stored result."""
        lost = [True]

        async def lose_the_first_answer(envelope: Envelope[Message], call_next: CallNext) -> Any:
            result = await call_next(envelope)
            if lost[0]:
                lost[0] = False
                raise ConnectionError("connection reset before the reply")
            return result

        store = InMemoryIdempotencyStore()
        bus = MessageBus(
            middleware=[
                RetryMiddleware(commands=RetryPolicy(jitter="none"), sleep=yield_only),
                lose_the_first_answer,
                IdempotencyMiddleware(store),
            ]
        )
        charges: list[int] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            charges.append(command.amount)
            return Receipt(command.amount)

        with capture_logs():
            assert await bus.send(ChargeCard(9)) == Receipt(9)
        assert charges == [9]

    def test_idempotency_silences_the_retry_warning(self) -> None:
        """An idempotency layer counts as protection for a retried command."""
        bus = MessageBus(
            middleware=[
                RetryMiddleware(commands=RetryPolicy()),
                IdempotencyMiddleware(InMemoryIdempotencyStore()),
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bus.handler(ChargeCard, lambda command: Receipt(1))


class TestResults:
    """Stored results come back as the handler's declared type."""

    async def test_none_result(self) -> None:
        """Command[None] handlers store and return None."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        runs: list[int] = []
        bus.handler(IndexPost, lambda command: runs.append(command.post_id))
        send: Any = bus.send  # mypy rejects using a None-typed result, which is the point here
        results = [await send(IndexPost(1), idempotency_key="k") for _ in range(2)]
        assert results == [None, None]
        assert runs == [1]

    async def test_none_is_stored_in_the_msgspec_form(self) -> None:
        """A None result is stored as msgspec writes it ("2:null"): every version reads it."""
        store = InMemoryIdempotencyStore()
        middleware = IdempotencyMiddleware(store)
        bus = MessageBus(middleware=[middleware])
        bus.handler(IndexPost, lambda command: None, name="index")
        send: Any = bus.send
        await send(IndexPost(1), idempotency_key="k")
        digest = middleware.fingerprint_of(Envelope(IndexPost(1)))
        assert await store.claim("index", "k", digest, 1.0) == Completed("2:null")

    async def test_undeclared_result_comes_back_as_json_data(self) -> None:
        """A command without Command[R] gets its result back as plain JSON data."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        bus.handler(Untyped, lambda command: {"n": command.n, "tags": ["a"]})
        first = await bus.send(Untyped(1), idempotency_key="k")
        assert await bus.send(Untyped(1), idempotency_key="k") == first

    async def test_context_handlers_keep_their_follow_ups_once(self) -> None:
        """A duplicate does not run the handler, so its follow-ups are not sent twice."""
        store = InMemoryIdempotencyStore()
        bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
        published: list[int] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            ctx.publish(PostPublished(command.amount, "charged"))
            return Receipt(command.amount)

        bus.subscriber(PostPublished, lambda event: published.append(event.post_id))
        await bus.send(ChargeCard(3), idempotency_key="k")
        await bus.send(ChargeCard(3), idempotency_key="k")
        assert published == [3]

    def test_validation_and_direct_calls(self) -> None:
        """Nonsense settings are refused; the middleware is bound, not called."""
        with pytest.raises(ValueError, match="lease"):
            IdempotencyMiddleware(InMemoryIdempotencyStore(), lease=0)
        with pytest.raises(TypeError, match="bound per handler"):
            anyio.run(IdempotencyMiddleware(InMemoryIdempotencyStore()), None, None)  # type: ignore[arg-type]


class TestInMemoryStoreLimits:
    """The in-memory store refuses what the SQL stores refuse."""

    async def test_negative_cleanup_limit(self) -> None:
        """cleanup(-1) is a ValueError, like the SQL stores'."""
        with pytest.raises(ValueError, match="limit"):
            await InMemoryIdempotencyStore().cleanup(-1)


@pytest.fixture(params=["sqlite", "postgres"])
async def real_store(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    """An idempotency store on a real database: an SQLite file, a PostgreSQL schema."""
    store: SQLiteIdempotencyStore | PostgresIdempotencyStore
    if request.param == "sqlite":
        store = SQLiteIdempotencyStore(request.getfixturevalue("sqlite_path"))
    else:
        store = PostgresIdempotencyStore(
            request.getfixturevalue("postgres_dsn"),
            schema=request.getfixturevalue("postgres_schema"),
        )
    async with store:
        yield store


class TestRealDatabases:
    """The middleware on real SQLite and PostgreSQL stores."""

    async def test_fifty_concurrent_duplicates_run_once(self, real_store: IdempotencyStore) -> None:
        """Fifty sends of one key at once: one charge, fifty equal receipts."""
        bus = MessageBus(middleware=[IdempotencyMiddleware(real_store, sleep=yield_only)])
        charges: list[int] = []

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            charges.append(command.amount)
            return Receipt(command.amount)

        results: list[Receipt] = []

        async def send() -> None:
            results.append(await bus.send(ChargeCard(7), idempotency_key="order-7"))

        with capture_logs():
            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(send)
        assert charges == [7]
        assert results == [Receipt(7)] * 50

    async def test_failure_releases_then_mismatch(self, real_store: IdempotencyStore) -> None:
        """A failed run is re-run; afterwards another payload under the key is refused."""
        bus = MessageBus(middleware=[IdempotencyMiddleware(real_store)])
        calls: list[int] = []

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            calls.append(command.amount)
            if len(calls) == 1:
                raise ConnectionError("bank timeout")
            return Receipt(command.amount)

        with pytest.raises(ConnectionError):
            await bus.send(ChargeCard(5), idempotency_key="k")
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(5)
        assert await bus.send(ChargeCard(5), idempotency_key="k") == Receipt(5)
        with pytest.raises(IdempotencyKeyReused):
            await bus.send(ChargeCard(6), idempotency_key="k")
        assert calls == [5, 5]
