"""Message types shared by the tests: a small blog and a payment service."""

from __future__ import annotations

import attrs

from messagebus import Command, Event


@attrs.frozen
class PostId:
    value: int


@attrs.frozen
class PublishPost(Command[PostId], name="blog.post.publish"):
    title: str


@attrs.frozen
class PostPublished(Event, name="blog.post.published"):
    post_id: int
    title: str


@attrs.frozen
class FollowersNotified(Event, name="blog.followers.notified"):
    post_id: int


@attrs.frozen
class IndexPost(Command[None], name="search.post.index"):
    post_id: int


@attrs.frozen
class PostIndexed(Event, name="search.post.indexed"):
    post_id: int


@attrs.frozen
class Receipt:
    amount: int


@attrs.frozen
class ChargeCard(Command[Receipt], name="payments.card.charge"):
    amount: int
