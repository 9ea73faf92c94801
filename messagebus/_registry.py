"""The registry of message types a bus knows, by wire name and version.

Decoding from the wire resolves names only through a registry, so that nothing but a
registered type can be built from incoming data: no pickle, no import by name.

Old versions of a type stay readable through *upcasters*: functions that turn the data
of version ``v`` into the data of version ``v + 1``. Data of an unregistered version is
carried up the chain, one step at a time, to the first registered version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

from messagebus._errors import ConfigurationError, DuplicateMessageTypeError
from messagebus._messages import Message, message_kind
from messagebus._wire_types import check_decodable

__all__ = ["MessageRegistry", "Upcaster"]

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns one version's message data (the JSON object) into the next version's."""


class MessageRegistry:
    """Maps ``(wire name, version)`` to a message class and back.

    A bus owns one and adds every type it is given a handler or subscriber for; types
    that are only sent or published can be added with :meth:`add`. Not task-safe for
    concurrent writes: register types at start-up, before messages move.
    """

    __slots__ = ("_by_key", "_upcasters")

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, int], type[Message]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def add(self, message_type: type[Message]) -> None:
        """Register ``message_type``; adding the same class again does nothing.

        Raises:
            InvalidMessageTypeError: it is not a Command or Event subclass, or the codec
                could never decode it (a field is a union of two attrs classes).
            DuplicateMessageTypeError: another class already has its name and version.
        """
        message_kind(message_type)
        key = (message_type.__message_name__, message_type.__message_version__)
        if self._by_key.get(key) is message_type:
            return
        check_decodable(message_type)
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

    def add_upcaster(self, name: str, from_version: int, upcaster: Upcaster) -> None:
        """Register ``upcaster``: data of ``name`` at ``from_version`` -> ``from_version + 1``.

        Raises:
            ConfigurationError: that step already has an upcaster, or a class is
                registered at ``from_version`` (its data needs no upcasting).
        """
        key = (name, from_version)
        if key in self._upcasters:
            raise ConfigurationError(f"{name} v{from_version} already has an upcaster")
        if key in self._by_key:
            raise ConfigurationError(
                f"{name} v{from_version} is a registered type; upcasters are for versions "
                "no class describes any more"
            )
        self._upcasters[key] = upcaster

    def upcast(
        self, name: str, version: int, data: dict[str, Any]
    ) -> tuple[type[Message], int, dict[str, Any]] | None:
        """Carry ``data`` up to the first registered version of ``name``.

        Returns the class, its version and the data for it, or None when no class is
        registered at ``version`` and no chain of upcasters leads to one. Errors raised
        by upcasters propagate.
        """
        while (message_type := self._by_key.get((name, version))) is None:
            upcaster = self._upcasters.get((name, version))
            if upcaster is None:
                return None
            data = upcaster(data)
            version += 1
        return message_type, version, data

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
