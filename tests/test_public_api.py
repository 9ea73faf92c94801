from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import messagebus
from messagebus import (
    BusStateError,
    CommandRejected,
    ConfigurationError,
    DeliveryExpiredError,
    DestinationNotFoundError,
    DispatchError,
    DuplicateHandlerError,
    DuplicateMessageTypeError,
    DuplicateSubscriberError,
    InvalidHandlerError,
    InvalidMessageTypeError,
    MessageBusError,
    MessageKindError,
    MessageTooLargeError,
    NoHandlerError,
    SendError,
    SequenceGapError,
    StoreError,
    StoreUnavailableError,
    TransportError,
    TransportUnavailableError,
    UnsupportedBackendError,
)


def public_modules() -> list[ModuleType]:
    """Every module of the package whose dotted name has no ``_`` segment."""
    names = ["messagebus"] + [
        info.name
        for info in pkgutil.walk_packages(messagebus.__path__, "messagebus.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    # messagebus.transports.sqs imports aiobotocore, an extra that dev installs.
    return [importlib.import_module(name) for name in sorted(names)]


PUBLIC = public_modules()


def isort_style(name: str) -> tuple[int, str]:
    """RUF022's order: constants, then classes, then functions, each alphabetical."""
    return 0 if name.isupper() else 1 if name[0].isupper() else 2, name


class TestPublicSurface:
    """Every public module lists what it exports; each name has exactly one home."""

    def test_the_public_modules_are_the_documented_ones(self) -> None:
        """A new public module is a decision: this list changes with it."""
        assert [module.__name__ for module in PUBLIC] == [
            "messagebus",
            "messagebus.aws_lambda",
            "messagebus.cli",
            "messagebus.config",
            "messagebus.contracts",
            "messagebus.dead_letters",
            "messagebus.demo",
            "messagebus.dynamodb",
            "messagebus.eventlog",
            "messagebus.extension",
            "messagebus.idempotency",
            "messagebus.metrics",
            "messagebus.middleware",
            "messagebus.otel",
            "messagebus.outbox",
            "messagebus.postgres",
            "messagebus.process",
            "messagebus.retry",
            "messagebus.sqlite",
            "messagebus.testing",
            "messagebus.transports",
            "messagebus.transports.eventbridge",
            "messagebus.transports.memory",
            "messagebus.transports.sqs",
        ]

    @pytest.mark.parametrize("module", PUBLIC, ids=lambda module: module.__name__)
    def test_all_is_sorted_and_resolvable(self, module: ModuleType) -> None:
        """__all__ is sorted (constants, classes, functions: ruff's RUF022), unique, resolvable."""
        names = module.__all__
        assert names == sorted(names, key=isort_style)
        assert len(set(names)) == len(names)
        for name in names:
            assert hasattr(module, name), name

    @pytest.mark.parametrize("module", PUBLIC, ids=lambda module: module.__name__)
    def test_public_names_are_exported(self, module: ModuleType) -> None:
        """Every public attribute of a public module is in its __all__ (modules aside)."""
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and not isinstance(value, ModuleType)
            and name != "annotations"  # from __future__ import annotations
        }
        assert public == set(module.__all__)

    def test_no_name_is_exported_twice(self) -> None:
        """One object, one home: no two public modules export the same thing."""
        homes: dict[int, list[str]] = {}
        for module in PUBLIC:
            for name in module.__all__:
                value = getattr(module, name)
                if isinstance(value, (str, int, float, tuple, frozenset)) and not name.isupper():
                    continue  # plain values, equal by accident, are not exports of one thing
                homes.setdefault(id(value), []).append(f"{module.__name__}.{name}")
        twice = sorted(places for places in homes.values() if len(places) > 1)
        assert twice == []

    def test_the_top_level_exports_every_error(self) -> None:
        """Applications catch errors: the whole tree is importable from messagebus."""
        from messagebus import _errors

        assert set(_errors.__all__) <= set(messagebus.__all__)


class TestErrorTree:
    """One tree rooted at MessageBusError, as drawn in the errors module."""

    @pytest.mark.parametrize(
        ("error", "parent"),
        [
            (ConfigurationError, MessageBusError),
            (DuplicateHandlerError, ConfigurationError),
            (DuplicateSubscriberError, ConfigurationError),
            (DuplicateMessageTypeError, ConfigurationError),
            (InvalidMessageTypeError, ConfigurationError),
            (InvalidHandlerError, ConfigurationError),
            (UnsupportedBackendError, ConfigurationError),
            (TransportError, MessageBusError),
            (TransportUnavailableError, TransportError),
            (DestinationNotFoundError, TransportError),
            (DestinationNotFoundError, LookupError),
            (MessageTooLargeError, TransportError),
            (SendError, TransportError),
            (DeliveryExpiredError, TransportError),
            (DispatchError, MessageBusError),
            (NoHandlerError, DispatchError),
            (MessageKindError, DispatchError),
            (MessageKindError, TypeError),
            (SequenceGapError, DispatchError),
            (StoreError, MessageBusError),
            (StoreUnavailableError, StoreError),
            (BusStateError, MessageBusError),
            (CommandRejected, MessageBusError),
        ],
    )
    def test_parentage(self, error: type[Exception], parent: type[Exception]) -> None:
        """Each error sits where the drawing puts it."""
        assert issubclass(error, parent)

    def test_every_error_is_drawn(self) -> None:
        """The module docstring names every exception class it exports."""
        from messagebus import _errors

        assert _errors.__doc__ is not None
        for name in _errors.__all__:
            assert name in _errors.__doc__, name

    def test_send_error_lists_what_was_not_sent(self) -> None:
        """SendError keeps every failed id and reason and shows the first three."""
        failed = [(f"m{i}", "throttled") for i in range(5)]
        error = SendError(failed)
        assert error.failed == tuple(failed)
        assert str(error) == (
            "5 message(s) not sent: m0: throttled; m1: throttled; m2: throttled (and 2 more)"
        )

    def test_message_too_large_says_by_how_much(self) -> None:
        """MessageTooLargeError names the message, its size and the limit."""
        error = MessageTooLargeError("m1", 2_000_000, 1_048_576)
        assert (error.message_id, error.size, error.limit) == ("m1", 2_000_000, 1_048_576)
        assert "m1 is 2000000 bytes; the transport takes 1048576" in str(error)
