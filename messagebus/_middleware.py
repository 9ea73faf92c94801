"""The middleware shape and how a chain is built.

A middleware is ``async def middleware(envelope, call_next) -> result``: it may look at
or replace the envelope, call ``await call_next(envelope)`` (zero, one or several
times) and return the handler's result or its own. Configurable middleware is an
object with that ``__call__``, typically an attrs class.

A middleware that needs to know which handler it wraps (a logger naming the handler, a
retry policy chosen per handler) also defines ``bind(handler) -> Middleware | None``;
the bus calls it once per handler when it builds that handler's chain, and uses what it
returns; None leaves the layer out of that handler's chain altogether (it costs nothing
there).

Order: global middleware (given to the bus) wraps per-handler middleware, and within
each list the first one added is the outermost: ``[a, b]`` runs ``a`` -> ``b`` ->
handler -> ``b`` -> ``a``. Chains are built once per handler, when it is registered or
the global list changes; nothing is composed per message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from messagebus._envelope import Envelope
from messagebus._handlers import HandlerInfo
from messagebus._messages import Message

__all__ = [
    "CallNext",
    "HandlerAwareMiddleware",
    "Middleware",
    "OnFailure",
    "Recover",
    "bind_all",
    "compose",
    "link",
]

CallNext: TypeAlias = Callable[[Envelope[Message]], Awaitable[Any]]
"""The rest of the chain: call it with the envelope to run the handler."""

Middleware: TypeAlias = Callable[[Envelope[Message], CallNext], Awaitable[Any]]
"""``async def middleware(envelope, call_next) -> result``."""


Recover: TypeAlias = Callable[[Envelope[Message], Exception, CallNext], Awaitable[Any]]
"""``async def recover(envelope, error, call_next) -> result``: handle a failed run."""


@attrs.frozen
class OnFailure:
    """A layer that acts only when the rest of the chain raises an :class:`Exception`.

    Behaves exactly as ``try: return await call_next(envelope)`` ``except Exception as
    error: return await recover(envelope, error, call_next)``: ``recover`` may call
    ``call_next`` again (a retry), return a result of its own, or raise. Return one from
    ``bind()`` for a policy that only matters when something fails, such as retries:
    when it is a handler's outermost layer, the bus does not enter it at all on success
    (runs cost what they cost without it) and calls ``recover`` from its own error path.
    """

    recover: Recover

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Run the rest of the chain; hand a failure to ``recover``."""
        try:
            return await call_next(envelope)
        except Exception as error:  # noqa: BLE001  # recover decides what to do with it
            failed = error
        # Outside the except block: errors raised while recovering (a retry's) would
        # otherwise chain this one as their context in every traceback.
        return await self.recover(envelope, failed, call_next)


@runtime_checkable
class HandlerAwareMiddleware(Protocol):
    """A middleware that is specialised for each handler when the chain is built."""

    def bind(self, handler: HandlerInfo) -> Middleware | None:
        """Return the middleware to run around ``handler``, or None for no layer."""


def compose(
    middleware: Iterable[Middleware | HandlerAwareMiddleware],
    terminal: CallNext,
    handler: HandlerInfo,
) -> CallNext:
    """Wrap ``terminal`` in ``middleware``, the first one outermost."""
    return link(bind_all(middleware, handler), terminal)


def bind_all(
    middleware: Iterable[Middleware | HandlerAwareMiddleware], handler: HandlerInfo
) -> list[Middleware]:
    """Return the layers to run around ``handler``, bound to it, outermost first."""
    bound = (
        layer.bind(handler) if isinstance(layer, HandlerAwareMiddleware) else layer
        for layer in middleware
    )
    return [layer for layer in bound if layer is not None]


def link(layers: Sequence[Middleware], terminal: CallNext) -> CallNext:
    """Chain bound ``layers`` (outermost first) in front of ``terminal``."""
    call = terminal
    for layer in reversed(layers):
        call = _link(layer, call)
    return call


def _link(layer: Middleware, call_next: CallNext) -> CallNext:
    # A plain function returning the middleware's coroutine, not an ``async def``: one
    # coroutine frame per layer instead of two.
    def call(envelope: Envelope[Message]) -> Awaitable[Any]:
        return layer(envelope, call_next)

    return call
