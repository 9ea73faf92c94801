from __future__ import annotations

import attrs
import pytest
from structlog.testing import capture_logs

from messagebus import Context, DeadLetterNotFoundError, DecodeError, MessageBus, NoHandlerError
from messagebus.dead_letters import InMemoryDeadLetterStore
from tests.messages import ChargeCard, FollowersNotified, PostPublished, Receipt

pytestmark = pytest.mark.anyio


@attrs.define
class Search:
    """A search index whose cluster can be down."""

    down: bool = True
    indexed: list[int] = attrs.field(factory=list)

    async def index(self, event: PostPublished, ctx: Context[PostPublished]) -> None:
        if self.down:
            raise ConnectionError("search cluster timed out")
        self.indexed.append(event.post_id)
        ctx.publish(FollowersNotified(event.post_id))


async def dead_lettered(bus: MessageBus, search: Search) -> str:
    bus.subscriber(PostPublished, search.index, name="index")
    with capture_logs():
        await bus.publish(PostPublished(7, "x"), correlation_id="req-1")
    (letter,) = await bus.dead_letters.list()
    return letter.id


class TestReplay:
    """A dead letter goes back to its one handler; success removes it."""

    async def test_replay_succeeds_after_the_fault_is_fixed(self) -> None:
        """The handler runs again with attempt 1 and the same ids; the record goes."""
        bus = MessageBus()
        search = Search()
        seen: list[tuple[int, str, str | None]] = []

        @bus.subscriber(FollowersNotified)
        async def notified(event: FollowersNotified, ctx: Context[FollowersNotified]) -> None:
            seen.append((event.post_id, ctx.envelope.correlation_id, ctx.envelope.causation_id))

        letter_id = await dead_lettered(bus, search)
        letter = await bus.dead_letters.get(letter_id)
        assert letter is not None
        search.down = False
        assert await bus.replay(letter_id) is None
        assert search.indexed == [7]
        assert await bus.dead_letters.list() == ()
        assert seen == [(7, "req-1", letter.message_id)]

    async def test_replay_only_reaches_the_failed_subscriber(self) -> None:
        """Subscribers that had succeeded do not run again."""
        bus = MessageBus()
        other: list[int] = []
        bus.subscriber(PostPublished, lambda event: other.append(event.post_id), name="other")
        search = Search()
        letter_id = await dead_lettered(bus, search)
        search.down = False
        await bus.replay(letter_id)
        assert other == [7]

    async def test_replay_that_fails_again_keeps_an_updated_record(self) -> None:
        """Still failing: the record stays, with attempts added and the new error."""
        bus = MessageBus()
        search = Search()
        letter_id = await dead_lettered(bus, search)
        before = await bus.dead_letters.get(letter_id)
        assert before is not None
        with pytest.raises(ConnectionError):
            await bus.replay(letter_id)
        after = await bus.dead_letters.get(letter_id)
        assert after is not None
        assert after.attempts == before.attempts + 1
        assert after.first_failed_at == before.first_failed_at
        assert after.last_failed_at >= before.last_failed_at
        assert after.message_id == before.message_id

    async def test_replaying_a_command_returns_its_result(self) -> None:
        """A follow-up command that failed can be replayed; its result comes back."""
        bus = MessageBus()
        bank_up = False

        @bus.subscriber(PostPublished)
        async def pay_author(event: PostPublished, ctx: Context[PostPublished]) -> None:
            ctx.send(ChargeCard(5))

        @bus.handler(ChargeCard, name="charge")
        async def charge(command: ChargeCard) -> Receipt:
            if not bank_up:
                raise ConnectionError("bank down")
            return Receipt(command.amount)

        with capture_logs():
            await bus.publish(PostPublished(1, "x"))
        (letter,) = await bus.dead_letters.list()
        assert letter.handler == "charge"
        bank_up = True
        assert await bus.replay(letter.id) == Receipt(5)

    async def test_unknown_id(self) -> None:
        """An id no record has is a DeadLetterNotFoundError, also a LookupError."""
        with pytest.raises(DeadLetterNotFoundError) as caught:
            await MessageBus().replay("nope")
        assert isinstance(caught.value, LookupError)

    async def test_handler_gone(self) -> None:
        """A record whose handler no longer exists cannot be replayed."""
        store = InMemoryDeadLetterStore()
        bus = MessageBus(dead_letters=store)
        letter_id = await dead_lettered(bus, Search())
        renamed = MessageBus(dead_letters=store)
        renamed.subscriber(PostPublished, Search(down=False).index, name="search-index")
        with pytest.raises(NoHandlerError, match="'index'"):
            await renamed.replay(letter_id)
        assert await store.get(letter_id) is not None

    async def test_type_gone(self) -> None:
        """A record whose message type is no longer registered does not decode."""
        store = InMemoryDeadLetterStore()
        letter_id = await dead_lettered(MessageBus(dead_letters=store), Search())
        with pytest.raises(DecodeError, match="unknown message type"):
            await MessageBus(dead_letters=store).replay(letter_id)
