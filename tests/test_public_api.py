from __future__ import annotations

import pytest

import messagebus
import messagebus.metrics
import messagebus.middleware
import messagebus.otel
import messagebus.postgres
import messagebus.sqlite
import messagebus.testing
import messagebus.transports
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
    TransportError,
    TransportUnavailableError,
    UnsupportedBackendError,
)


class TestPublicSurface:
    """The root module only re-exports, with a sorted, complete __all__."""

    @pytest.mark.parametrize(
        "module",
        [
            messagebus,
            messagebus.metrics,
            messagebus.middleware,
            messagebus.otel,
            messagebus.postgres,
            messagebus.sqlite,
            messagebus.transports,
            messagebus.testing,
        ],
    )
    def test_all_is_sorted_and_resolvable(self, module: object) -> None:
        """__all__ is sorted (constants, classes, functions: ruff's RUF022), unique, resolvable."""
        names = module.__all__  # type: ignore[attr-defined]

        def isort_style(name: str) -> tuple[int, str]:
            kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
            return kind, name

        assert names == sorted(names, key=isort_style)
        assert len(set(names)) == len(names)
        for name in names:
            assert hasattr(module, name), name

    def test_public_names_are_exported(self) -> None:
        """Every public attribute of the root module is in __all__ (modules aside)."""
        public = {
            name
            for name, value in vars(messagebus).items()
            if not name.startswith("_") and not isinstance(value, type(messagebus))
        }
        assert public == set(messagebus.__all__)


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
