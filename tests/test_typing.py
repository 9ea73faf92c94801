"""Typing-only checks, verified by mypy (the runtime asserts are trivially true).

``await bus.send(ChargeCard(...))`` must be typed as the command's declared result.
"""

from __future__ import annotations

from typing import assert_type

import pytest

from messagebus import MessageBus
from tests.messages import ChargeCard, IndexPost, PostId, PublishPost, Receipt

pytestmark = pytest.mark.anyio


async def test_send_is_typed_by_the_command_result() -> None:
    """Command[R] makes send() return R."""
    bus = MessageBus()
    bus.handler(ChargeCard, lambda command: Receipt(command.amount))
    bus.handler(PublishPost, lambda command: PostId(1))
    bus.handler(IndexPost, lambda command: None)

    receipt = assert_type(await bus.send(ChargeCard(5)), Receipt)
    post_id = assert_type(await bus.send(PublishPost("x")), PostId)
    nothing = assert_type(await bus.send(IndexPost(1)), None)
    assert (receipt, post_id, nothing) == (Receipt(5), PostId(1), None)


async def test_metadata_options_are_keyword_only_for_type_checkers() -> None:
    """Passing an option positionally is a type error (mypy flags the ignore if not)."""
    bus = MessageBus()
    bus.handler(ChargeCard, lambda command: Receipt(command.amount))
    receipt = await bus.send(ChargeCard(1), "key")  # type: ignore[call-arg]
    assert receipt == Receipt(1)
