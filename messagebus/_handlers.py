"""What the bus knows about each handler, worked out once at registration."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Literal

import attrs

from messagebus._errors import InvalidHandlerError
from messagebus._messages import Message

__all__ = ["HandlerInfo", "inspect_handler"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@attrs.frozen
class HandlerInfo:
    """A registered handler or subscriber, as middleware sees it when the chain is built.

    Attributes:
        name: stable name: the scope of idempotency keys, retry state, dead letters and
            log lines. A subscriber's defaults to ``"<module>.<qualified name>"`` of its
            function (without ``<locals>`` segments); give one explicitly to keep it
            across refactoring.
        message_type: the Command or Event class it handles.
        kind: ``"command"`` for a command handler, ``"event"`` for a subscriber.
        fn: the user's callable.
        takes_context: it is called as ``fn(message, ctx)`` rather than ``fn(message)``.
        is_async: it returns an awaitable; otherwise it runs inline, on the event loop.
        idempotent: the registration declared that running it twice on one message is
            harmless (``bus.handler(..., idempotent=True)``).
        middleware: every middleware around it, outermost first, as given to the bus.
    """

    name: str
    message_type: type[Message]
    kind: Literal["command", "event"]
    fn: Callable[..., Any] = attrs.field(eq=False, repr=False)
    takes_context: bool
    is_async: bool
    idempotent: bool = False
    middleware: tuple[Any, ...] = attrs.field(default=(), eq=False, repr=False)


def default_handler_name(fn: Callable[..., Any]) -> str:
    """Return ``"<module>.<qualified name>"`` of ``fn`` (of its class for a callable object).

    ``<locals>`` segments are left out: ``build_bus.<locals>.notify`` names ``build_bus.notify``.
    """
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    qualname = target.__qualname__.replace(".<locals>", "")
    return f"{getattr(target, '__module__', '?')}.{qualname}"


def inspect_handler(
    fn: Callable[..., Any],
    message_type: type[Message],
    kind: Literal["command", "event"],
    name: str | None,
    *,
    idempotent: bool = False,
) -> HandlerInfo:
    """Build the :class:`HandlerInfo` of ``fn``, checking that the bus can call it.

    A handler takes the message as its first positional parameter and, if it has a
    second positional parameter (or ``*args``), the handler context as that one. Any
    further parameter must have a default.

    Raises:
        InvalidHandlerError: ``fn`` is not callable, or its signature does not fit.
    """
    if not callable(fn):
        raise InvalidHandlerError(
            f"handler for {message_type.__qualname__} is not callable: {fn!r}"
        )
    if name is None:
        name = default_handler_name(fn)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InvalidHandlerError(f"cannot read the signature of handler {name}") from exc
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in _POSITIONAL]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    required = [p for p in params if p.default is p.empty and p.kind is not p.VAR_POSITIONAL]
    required = [p for p in required if p.kind is not p.VAR_KEYWORD]
    if (
        (not positional and not variadic)
        or len(required) > 2
        or any(p.kind is p.KEYWORD_ONLY for p in required)
    ):
        raise InvalidHandlerError(
            f"handler {name} must take (message) or (message, ctx); its signature is {signature}"
        )
    takes_context = len(positional) >= 2 or variadic
    call = getattr(fn, "__call__", None)  # noqa: B004  # callable objects: check __call__
    is_async = inspect.iscoroutinefunction(fn) or (
        not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)
    )
    return HandlerInfo(
        name=name,
        message_type=message_type,
        kind=kind,
        fn=fn,
        takes_context=takes_context,
        is_async=is_async,
        idempotent=idempotent,
    )
