"""Base classes for user messages: :class:`Command` and :class:`Event`.

A message type is a user class, normally an ``attrs.frozen`` class, that derives from
exactly one of the two. Each type carries its *wire identity*: a name and an integer
version, declared as class keywords::

    @attrs.frozen
    class PublishPost(Command[PostId], name="blog.post.publish", version=1):
        title: str

The wire name is what travels and what is stored; the Python class name never does, so
renaming the class (or moving it to another module) changes nothing on the wire as long
as ``name=`` stays. When ``name=`` is left out, the name is derived by one rule:
``"<module>.<qualified class name>"`` (without ``<locals>`` segments), for example
``"blog.commands.PublishPost"``. A
derived name follows the class, so declare ``name=`` on every type that leaves the
process or is stored. ``version`` defaults to 1.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Self

from messagebus._errors import InvalidMessageTypeError

__all__ = ["Command", "Event", "Message", "message_kind", "wire_name", "wire_version"]

R_co = TypeVar("R_co", covariant=True)

# Names are dotted identifiers of letters, digits, "_" and "-": safe in a queue name, a
# CloudEvents "type", a SQL column and a log line, with no quoting anywhere.
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


class Message:
    """Common base of :class:`Command` and :class:`Event`; subclass one of those two."""

    __slots__ = ()
    __message_name__: ClassVar[str]
    __message_version__: ClassVar[int]

    def __init_subclass__(
        cls, *, name: str | None = None, version: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        # attrs rebuilds a slotted class from the original's namespace, calling this hook
        # a second time without the class keywords: keep what the first call declared.
        if name is None:
            name = own.get("__message_name__") or _derived_name(cls)
        if version is None:
            version = own.get("__message_version__", 1)
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            raise InvalidMessageTypeError(
                f"{cls.__qualname__}: wire name {name!r} must be dotted words of letters, "
                "digits, '_' or '-', such as 'blog.post.published'"
            )
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidMessageTypeError(
                f"{cls.__qualname__}: version {version!r} must be an integer >= 1"
            )
        cls.__message_name__ = name
        cls.__message_version__ = version


def _derived_name(cls: type) -> str:
    # Classes defined inside functions have "<locals>" in their qualified name; it says
    # nothing about the type and is not a valid name segment.
    return f"{cls.__module__}.{cls.__qualname__.replace('.<locals>', '')}"


class Command(Message, Generic[R_co]):
    """An intention: a request that exactly one handler accepts or rejects.

    ``Command[R]`` declares the handler's result type, so that ``await bus.send(cmd)``
    is typed ``R``, and ``@bus.handler(Cmd)`` accepts only a handler taking a ``Cmd``
    and returning an ``R`` (see :mod:`messagebus._handler_types`). Name commands as
    imperatives: ``PublishPost``.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        # For type checkers only (nothing at run time): the class and its result type,
        # exactly (Callable[[X], X] is invariant in X), read by the CommandClass
        # protocol so that one argument of bus.handler() yields both.
        @classmethod
        def __command_types__(cls) -> Callable[[tuple[Self, R_co]], tuple[Self, R_co]]: ...


class Event(Message):
    """A fact that already happened; any number of subscribers react to it.

    Name events in the past tense: ``PostPublished``.
    """

    __slots__ = ()


def wire_name(message_type: type[Message]) -> str:
    """Return the wire name of a message type."""
    return message_type.__message_name__


def wire_version(message_type: type[Message]) -> int:
    """Return the wire version of a message type."""
    return message_type.__message_version__


def message_kind(message_type: type[Any]) -> str:
    """Return ``"command"`` or ``"event"``; raise if the type is neither.

    Raises:
        InvalidMessageTypeError: ``message_type`` derives from neither base class.
    """
    if isinstance(message_type, type):
        if issubclass(message_type, Command):
            return "command"
        if issubclass(message_type, Event):
            return "event"
    raise InvalidMessageTypeError(
        f"{message_type!r} is not a message type: derive it from Command or Event"
    )
