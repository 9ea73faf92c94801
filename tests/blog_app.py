"""A small application, written once, that the tests run on every transport unchanged.

A blog service: the ``PublishPost`` command's handler stores the post and publishes
``PostPublished``; two subscribers react to that event (one notifies followers, one
indexes the post for search). Nothing here names a transport: :func:`build` takes
whichever it is given, which is the whole point (see tests/test_same_app.py).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import attrs

from messagebus import Command, Context, Event, MessageBus
from messagebus.extension import Transport


@attrs.frozen
class PublishPost(Command[int], name="blogapp.post.publish"):
    title: str


@attrs.frozen
class PostPublished(Event, name="blogapp.post.published"):
    post_id: int
    title: str


@attrs.define
class Blog:
    """What the application did: its posts, and what each subscriber saw."""

    posts: dict[int, str] = attrs.field(factory=dict)
    notified: list[int] = attrs.field(factory=list)
    indexed: list[str] = attrs.field(factory=list)
    _changed: anyio.Event = attrs.field(factory=anyio.Event)

    def changed(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def wait_until(self, done: Callable[[Blog], bool], *, within: float) -> None:
        """Return once ``done(self)`` holds; TimeoutError after ``within`` seconds."""
        with anyio.fail_after(within):
            while not done(self):
                await self._changed.wait()


def build(transport: Transport | str, blog: Blog) -> MessageBus:
    """The blog service on ``transport`` (or its URL), recording into ``blog``."""
    bus = MessageBus(transport=transport, service="blog", source="/blog")

    @bus.handler(PublishPost)
    async def publish_post(command: PublishPost, ctx: Context[PublishPost]) -> int:
        post_id = len(blog.posts) + 1
        blog.posts[post_id] = command.title
        ctx.publish(PostPublished(post_id, command.title))
        blog.changed()
        return post_id

    @bus.subscriber(PostPublished, name="notify_followers")
    async def notify_followers(event: PostPublished) -> None:
        blog.notified.append(event.post_id)
        blog.changed()

    @bus.subscriber(PostPublished, name="index_for_search")
    async def index_for_search(event: PostPublished) -> None:
        blog.indexed.append(event.title)
        blog.changed()

    return bus
