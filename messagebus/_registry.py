"""The registry of message types a bus knows, by wire name and version.

Decoding from the wire resolves names only through a registry, so that nothing but a
registered type can be built from incoming data: no pickle, no import by name.
"""

from __future__ import annotations

from collections.abc import Iterator

from messagebus._errors import DuplicateMessageTypeError
from messagebus._messages import Message, message_kind

__all__ = ["MessageRegistry"]


class MessageRegistry:
    """Maps ``(wire name, version)`` to a message class and back.

    A bus owns one and adds every type it is given a handler or subscriber for; types
    that are only sent or published can be added with :meth:`add`. Not task-safe for
    concurrent writes: register types at start-up, before messages move.
    """

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], type[Message]] = {}

    def add(self, message_type: type[Message]) -> None:
        """Register ``message_type``; adding the same class again does nothing.

        Raises:
            InvalidMessageTypeError: it is not a Command or Event subclass.
            DuplicateMessageTypeError: another class already has its name and version.
        """
        message_kind(message_type)
        key = (message_type.__message_name__, message_type.__message_version__)
        known = self._by_key.setdefault(key, message_type)
        if known is not message_type:
            raise DuplicateMessageTypeError(
                f"{message_type.__module__}.{message_type.__qualname__} claims wire name "
                f"{key[0]!r} version {key[1]}, already taken by "
                f"{known.__module__}.{known.__qualname__}"
            )

    def resolve(self, name: str, version: int) -> type[Message] | None:
        """Return the class registered as ``name`` at ``version``, or None."""
        return self._by_key.get((name, version))

    def __contains__(self, message_type: object) -> bool:
        if not isinstance(message_type, type) or not issubclass(message_type, Message):
            return False
        key = (message_type.__message_name__, message_type.__message_version__)
        return self._by_key.get(key) is message_type

    def __iter__(self) -> Iterator[type[Message]]:
        """Iterate over the registered classes, sorted by name then version."""
        return iter([self._by_key[key] for key in sorted(self._by_key)])

    def __len__(self) -> int:
        return len(self._by_key)
