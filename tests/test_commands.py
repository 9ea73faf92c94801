from __future__ import annotations

from typing import Any

import attrs
import pytest

from messagebus import (
    Command,
    CommandRejected,
    ConfigurationError,
    Context,
    DispatchError,
    DuplicateHandlerError,
    InvalidHandlerError,
    InvalidMessageTypeError,
    MessageBus,
    MessageKindError,
    NoHandlerError,
)
from tests.messages import ChargeCard, PostId, PostPublished, PublishPost, Receipt

pytestmark = pytest.mark.anyio


class TestSend:
    """A command goes to exactly one handler, whose result comes back."""

    async def test_returns_the_handler_result(self) -> None:
        """send() returns what the handler returns."""
        bus = MessageBus()

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            return Receipt(command.amount)

        assert await bus.send(ChargeCard(42)) == Receipt(42)

    async def test_plain_call_registration(self) -> None:
        """bus.handler(Type, fn) registers without a decorator and returns fn."""
        bus = MessageBus()

        async def publish(command: PublishPost) -> PostId:
            return PostId(len(command.title))

        assert bus.handler(PublishPost, publish) is publish
        assert await bus.send(PublishPost("four")) == PostId(4)

    async def test_no_handler(self) -> None:
        """A command nobody handles raises NoHandlerError naming its type."""
        bus = MessageBus()
        with pytest.raises(NoHandlerError, match=r"payments\.card\.charge"):
            await bus.send(ChargeCard(1))

    async def test_handler_errors_reach_the_sender_unchanged(self) -> None:
        """The sender sees the handler's own exception, not a wrapper."""
        bus = MessageBus()
        boom = ValueError("card declined by bank")

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard) -> Receipt:
            raise boom

        with pytest.raises(ValueError, match="declined") as caught:
            await bus.send(ChargeCard(1))
        assert caught.value is boom

    async def test_rejection(self) -> None:
        """A handler refuses with CommandRejected; the sender gets the reason."""
        bus = MessageBus()

        @bus.handler(PublishPost)
        async def publish(command: PublishPost) -> PostId:
            if not command.title:
                raise CommandRejected("a post needs a title")
            return PostId(1)

        with pytest.raises(CommandRejected) as caught:
            await bus.send(PublishPost(""))
        assert caught.value.reason == "a post needs a title"
        assert await bus.send(PublishPost("ok")) == PostId(1)

    async def test_sending_an_event_is_refused(self) -> None:
        """send() takes commands only, and says what to do instead."""
        bus = MessageBus()
        with pytest.raises(MessageKindError, match=r"publish\(\)"):
            await bus.send(PostPublished(1, "x"))  # type: ignore[arg-type]

    async def test_sending_a_non_message_is_refused(self) -> None:
        """Arbitrary objects are refused with a TypeError subclass."""
        bus = MessageBus()
        with pytest.raises(MessageKindError) as caught:
            await bus.send("charge 5 euros")  # type: ignore[arg-type]
        assert isinstance(caught.value, TypeError)
        assert isinstance(caught.value, DispatchError)

    async def test_sync_handler_runs_inline(self) -> None:
        """A plain def handler works; it is called directly, not in a thread."""
        bus = MessageBus()
        calls: list[int] = []

        @bus.handler(ChargeCard)
        def charge(command: ChargeCard) -> Receipt:
            calls.append(command.amount)
            return Receipt(command.amount)

        assert await bus.send(ChargeCard(3)) == Receipt(3)
        assert calls == [3]

    async def test_sync_callable_returning_an_awaitable_is_awaited(self) -> None:
        """A lambda around a coroutine function is awaited, not leaked."""
        bus = MessageBus()

        async def charge(command: ChargeCard) -> Receipt:
            return Receipt(command.amount * 2)

        bus.handler(ChargeCard, charge)
        assert await bus.send(ChargeCard(3)) == Receipt(6)

    async def test_handler_with_context(self) -> None:
        """A handler with a second parameter gets the context with the envelope."""
        bus = MessageBus()
        seen: list[Context[Any]] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            seen.append(ctx)
            return Receipt(ctx.message.amount)

        assert await bus.send(ChargeCard(9), idempotency_key="pay-9") == Receipt(9)
        (ctx,) = seen
        assert ctx.envelope.message == ChargeCard(9)
        assert ctx.envelope.idempotency_key == "pay-9"
        assert ctx.handler.name.endswith("charge")

    async def test_sync_handler_with_context(self) -> None:
        """Sync handlers may take the context too."""
        bus = MessageBus()

        @bus.handler(ChargeCard)
        def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            return Receipt(len(ctx.envelope.headers))

        assert await bus.send(ChargeCard(1), headers={"a": "1", "b": "2"}) == Receipt(2)

    async def test_callable_objects(self) -> None:
        """Instances with an async __call__ are async handlers."""

        @attrs.define
        class Charger:
            fee: int

            async def __call__(self, command: ChargeCard) -> Receipt:
                return Receipt(command.amount + self.fee)

        bus = MessageBus()
        bus.handler(ChargeCard, Charger(fee=1))
        assert await bus.send(ChargeCard(1)) == Receipt(2)

    async def test_metadata_given_to_send(self) -> None:
        """Keyword arguments of send() land in the envelope."""
        bus = MessageBus()
        seen: list[Any] = []

        @bus.handler(ChargeCard)
        async def charge(command: ChargeCard, ctx: Context[ChargeCard]) -> Receipt:
            seen.append(ctx.envelope)
            return Receipt(0)

        await bus.send(
            ChargeCard(1),
            idempotency_key="k",
            group_key="customer-7",
            headers={"tenant": "acme"},
            correlation_id="request-1",
        )
        (envelope,) = seen
        assert envelope.idempotency_key == "k"
        assert envelope.group_key == "customer-7"
        assert envelope.headers == {"tenant": "acme"}
        assert envelope.correlation_id == "request-1"
        assert envelope.causation_id is None


class TestRegistration:
    """Handler registration finds mistakes before any message moves."""

    def test_second_handler_is_refused(self) -> None:
        """Two handlers for one command type is an error at registration."""
        bus = MessageBus()

        @bus.handler(ChargeCard)
        async def first(command: ChargeCard) -> Receipt:
            return Receipt(1)

        with pytest.raises(DuplicateHandlerError, match="first") as caught:

            @bus.handler(ChargeCard)
            async def second(command: ChargeCard) -> Receipt:
                return Receipt(2)

        assert isinstance(caught.value, ConfigurationError)

    async def test_refused_second_handler_leaves_the_first(self) -> None:
        """After the refusal the first handler still serves."""
        bus = MessageBus()
        bus.handler(ChargeCard, lambda command: Receipt(1))
        with pytest.raises(DuplicateHandlerError):
            bus.handler(ChargeCard, lambda command: Receipt(2))
        assert await bus.send(ChargeCard(0)) == Receipt(1)

    def test_event_types_are_refused(self) -> None:
        """bus.handler() takes command types; events go to bus.subscriber()."""
        bus = MessageBus()
        with pytest.raises(InvalidMessageTypeError, match=r"subscriber\(\)"):
            bus.handler(PostPublished, lambda event: None)  # type: ignore[call-overload]

    def test_non_message_types_are_refused(self) -> None:
        """Only Command subclasses have handlers."""
        bus = MessageBus()
        with pytest.raises(InvalidMessageTypeError):
            bus.handler(int, lambda x: x)  # type: ignore[call-overload]

    def test_the_type_enters_the_registry(self) -> None:
        """A handled command type is known to the bus's registry."""
        bus = MessageBus()
        bus.handler(ChargeCard, lambda command: Receipt(1))
        assert bus.registry.resolve("payments.card.charge", 1) is ChargeCard

    def test_two_classes_with_one_wire_name_are_refused(self) -> None:
        """Two command classes claiming one name+version cannot both have handlers."""

        @attrs.frozen
        class ChargeCardAgain(Command[Receipt], name="payments.card.charge"):
            amount: int

        bus = MessageBus()
        bus.handler(ChargeCard, lambda command: Receipt(1))
        with pytest.raises(ConfigurationError, match=r"payments\.card\.charge"):
            bus.handler(ChargeCardAgain, lambda command: Receipt(2))

    @pytest.mark.parametrize(
        "fn",
        [
            pytest.param(lambda: None, id="no-parameters"),
            pytest.param(lambda a, b, c: None, id="three-required"),
            pytest.param(lambda a, *, key: None, id="required-keyword-only"),
            pytest.param(42, id="not-callable"),
            pytest.param(lambda **kwargs: None, id="only-keywords"),
        ],
    )
    def test_bad_signatures_are_refused(self, fn: Any) -> None:
        """A handler must accept (message) or (message, ctx)."""
        bus = MessageBus()
        with pytest.raises(InvalidHandlerError):
            bus.handler(ChargeCard, fn)

    def test_unreadable_signature_is_refused(self) -> None:
        """A callable whose signature cannot be read is refused clearly."""
        bus = MessageBus()
        with pytest.raises(InvalidHandlerError, match="signature"):
            bus.handler(ChargeCard, type)  # type: ignore[call-overload]

    async def test_optional_extra_parameters_are_allowed(self) -> None:
        """Parameters with defaults beyond (message, ctx) are left alone."""
        bus = MessageBus()

        async def charge(command: ChargeCard, ctx: Any, fee: int = 5) -> Receipt:
            return Receipt(command.amount + fee)

        bus.handler(ChargeCard, charge)
        assert await bus.send(ChargeCard(1)) == Receipt(6)

    def test_bad_fanout_is_refused(self) -> None:
        """The fan-out mode is checked when the bus is made."""
        with pytest.raises(ValueError, match="fanout"):
            MessageBus(fanout="parallel")  # type: ignore[arg-type]
