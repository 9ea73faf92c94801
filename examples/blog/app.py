"""The blog service: its messages, its state and its handlers.

``PublishPost`` (a command) writes a post and announces ``PostPublished`` (an event);
two subscribers react to it: one notifies the author's followers, one updates the
search index. Nothing here knows how messages travel: the bus decides.
"""

from __future__ import annotations

import attrs

from messagebus import Command, CommandRejected, Context, Event, MessageBus
from messagebus.middleware import LoggingMiddleware


@attrs.frozen
class PublishPost(Command[int], name="blog.post.publish"):
    """Publish a post; the result is the new post's id."""

    author: str
    title: str


@attrs.frozen
class PostPublished(Event, name="blog.post.published"):
    """A post went live."""

    post_id: int
    author: str
    title: str


@attrs.define
class Blog:
    """The service's state; a database in a real service."""

    posts: dict[int, str] = attrs.field(factory=dict)
    followers: dict[str, list[str]] = attrs.field(factory=dict)
    inboxes: dict[str, list[str]] = attrs.field(factory=dict)
    search_index: dict[str, int] = attrs.field(factory=dict)
    search_is_down: bool = False


class SearchUnavailableError(ConnectionError):
    """The search cluster did not answer."""


def build_bus(blog: Blog) -> MessageBus:
    """Return a bus with the blog's handlers registered."""
    bus = MessageBus(middleware=[LoggingMiddleware()])

    @bus.handler(PublishPost)
    async def publish_post(command: PublishPost, ctx: Context[PublishPost]) -> int:
        if not command.title.strip():
            raise CommandRejected("a post needs a title")
        post_id = len(blog.posts) + 1
        blog.posts[post_id] = command.title
        ctx.publish(PostPublished(post_id, command.author, command.title))
        return post_id

    @bus.subscriber(PostPublished, name="notify-followers")
    async def notify_followers(event: PostPublished) -> None:
        for follower in blog.followers.get(event.author, []):
            blog.inboxes.setdefault(follower, []).append(f"{event.author}: {event.title}")

    @bus.subscriber(PostPublished, name="update-search-index")
    async def update_search_index(event: PostPublished) -> None:
        if blog.search_is_down:
            raise SearchUnavailableError("search cluster timed out")
        for word in event.title.lower().split():
            blog.search_index[word] = event.post_id

    return bus
