"""The events and bus the Lambda router recipe builds from AWS's own records."""

import attrs

from messagebus import Event, MessageBus


@attrs.frozen
class ImageUploaded(Event, name="blog.image.uploaded"):
    key: str
    size: int


@attrs.frozen
class PostSaved(Event, name="blog.post.saved"):
    post_id: int


@attrs.frozen
class InstanceStopped(Event, name="ops.instance.stopped"):
    instance_id: str


bus = MessageBus(service="blog")
for event_type in (ImageUploaded, PostSaved, InstanceStopped):
    bus.subscriber(event_type, lambda event: None, name=f"on-{event_type.__name__}")
