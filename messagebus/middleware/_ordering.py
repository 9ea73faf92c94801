"""Ordered delivery: a subscriber gets each stream's events in sequence.

Events of a stream carry their sequence in the :data:`~messagebus.eventlog.SEQUENCE_HEADER`
header (set by the event log: ``MessageBus(event_log=...)``); the stream is
``envelope.group_key``. For each (subscriber, stream) the middleware knows the next
expected sequence, and for each run:

- ``sequence == expected``: the handler runs; on success the stream advances (the
  checkpoint is saved, then waiting runs wake). A failing run does not advance it: its
  retry or redelivery comes again, and the runs waiting behind it keep waiting.
- ``sequence < expected``: a stale redelivery or a duplicate: skipped (None, logged at
  info) without running the handler.
- ``sequence > expected``: an early arrival. Its run waits, in its own task, until the
  runs before it have been handled, then runs. On a transport every delivery has its own
  task and is acknowledged only after its handlers ran, so a waiting message stays
  unacknowledged (the worker's heartbeat keeps it invisible): a crash loses nothing,
  unlike a resequencer that holds early arrivals in memory and acknowledges them. The
  wait is bounded: after ``max_wait`` seconds, or at once when ``max_held`` runs of the
  stream already wait, it raises :class:`~messagebus.SequenceGapError`
  (reason ``"timeout"`` or ``"full"``) and the bus records a dead letter with it.

Order is never broken to make progress: after a gap error the stream still waits for
its missing sequence; replaying the dead letters in order heals it, and an operator who
accepts a loss calls :meth:`OrderingMiddleware.skip_to`. ``SequenceGapError`` is a
:class:`~messagebus.DispatchError`, so no retry policy retries it (it is in
:data:`~messagebus.retry.NEVER_RETRIED`): the run has already waited ``max_wait`` for the gap,
and a retry would only wait again in a worker slot.

Envelopes without a ``group_key`` or without the sequence header pass through
unordered: there is nothing to order them by. A malformed header raises
:class:`~messagebus.DecodeError` (never retried: a dead letter).

Where a stream starts: the next expected sequence is kept in a
:class:`~messagebus.extension.CheckpointStore` under ``"<handler>:<stream>"``, saved
after each successful run, so a process restarted on a persistent store (an SQL log's
``log.checkpoints``) continues where it left off. A stream with no checkpoint starts at
sequence 1 (``start="beginning"``): a subscriber added to a running system must have
its checkpoints set (:meth:`~OrderingMiddleware.skip_to`) or every stream it sees waits
for sequences that will never come again. ``start="first-seen"`` starts such a stream
at the first sequence that arrives instead; earlier ones arriving after it are skipped
as stale. A crash between a run and its checkpoint runs that event again on restart
(at least once, as everywhere); a checkpoint that cannot be saved is logged, and the
stream advances in memory anyway (the next save covers it).

Placement and capacity:

- Put it inside any :class:`~messagebus.middleware.RetryMiddleware` (per subscriber,
  with retries in the bus's middleware, as ``bus.subscriber(E, fn,
  middleware=[OrderingMiddleware()])`` does): a retry deferred to the queue returns
  None, which an ordering layer outside it would take for success. A retry layer inside
  it raises :class:`~messagebus.ConfigurationError` when the chain is built. Deferred
  retry delays should be shorter than ``max_wait``, or the runs behind them time out.
- Waiting runs occupy worker slots: the worker's ``concurrency`` must exceed
  ``max_held`` (over all the streams that may wait at once), or waiting runs can take
  every slot and the missing predecessor cannot be received; the time bound then
  resolves it, with dead letters.
- Without a transport (in-process ``publish``) events reach the subscriber in the
  order they are published, so they pass straight through; an early arrival there
  blocks its publisher and can only time out.

Limits: one small in-memory entry per (subscriber, stream) seen, kept for the process's
life. Order is per process: two processes consuming one queue each order what they
receive, and a predecessor received by the other process is only seen through the
shared checkpoint when a stream is first loaded, so run ordered subscribers in one
worker process (or on FIFO queues, which deliver a group to one consumer at a time).
Command handlers are left alone (``bind`` returns None for them).
"""

from __future__ import annotations

from typing import Any, Literal

import anyio
import attrs

from messagebus import SequenceGapError
from messagebus._clock import Clock
from messagebus._envelope import Envelope
from messagebus._errors import ArgumentTypeError, ConfigurationError, InvalidArgumentError
from messagebus._handlers import HandlerInfo
from messagebus._log import get_logger
from messagebus._messages import Message
from messagebus._middleware import CallNext, Middleware
from messagebus.eventlog import SEQUENCE_HEADER, InMemoryCheckpointStore
from messagebus.eventlog._resequencer import _parse
from messagebus.extension import CheckpointStore
from messagebus.middleware._retry import RetryMiddleware

__all__ = ["OrderingMiddleware"]


@attrs.define
class _Stream:
    """One (subscriber, stream): what comes next, and the runs waiting for their turn."""

    expected: int
    running: bool = False  # the expected sequence is being handled now
    waiting: int = 0
    changed: anyio.Event = attrs.field(factory=anyio.Event)

    def blocks(self, sequence: int) -> bool:
        """Whether a run of ``sequence`` must wait: its turn has not come, or is taken."""
        return sequence > self.expected or (sequence == self.expected and self.running)

    def notify(self) -> None:
        self.changed.set()
        self.changed = anyio.Event()


@attrs.frozen
class OrderingMiddleware:
    """Runs a subscriber on each stream's events in sequence; see the module.

    Args:
        checkpoints: where each stream's last handled sequence is kept, under
            ``"<handler>:<stream>"`` (in memory by default; an SQL log's
            ``log.checkpoints`` to survive restarts).
        max_wait: the most seconds a run waits for its predecessors.
        max_held: the most runs of one stream waiting at once.
        start: where a stream with no checkpoint starts: ``"beginning"`` (sequence 1)
            or ``"first-seen"`` (the first sequence that arrives).
        logger: a structlog logger; if None, the library's (see :mod:`messagebus._log`).
        clock: what ``max_wait`` is measured by (anyio's clock if None), e.g. a test's
            :class:`~messagebus.testing.FakeClock`.
    """

    checkpoints: CheckpointStore = attrs.field(factory=InMemoryCheckpointStore)
    max_wait: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    max_held: int = attrs.field(default=100, validator=attrs.validators.ge(0))
    start: Literal["beginning", "first-seen"] = attrs.field(
        default="beginning", validator=attrs.validators.in_(("beginning", "first-seen"))
    )
    logger: Any = None
    clock: Clock | None = None
    _handlers: dict[str, dict[str, _Stream]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False
    )

    def bind(self, handler: HandlerInfo) -> Middleware | None:
        """Return the ordering layer for subscriber ``handler``; None for a command handler.

        Raises:
            ConfigurationError: a retry layer for ``handler`` is inside this one.
        """
        if handler.kind != "event":
            return None
        layers = handler.middleware
        inner = layers[next(i for i, layer in enumerate(layers) if layer is self) + 1 :]
        if any(_retries(layer, handler) for layer in inner):
            raise ConfigurationError(
                f"subscriber {handler.name}: RetryMiddleware is inside OrderingMiddleware; "
                "put the ordering layer inside it (a retry deferred to the queue would "
                "look like a success and advance the stream)"
            )
        streams = self._handlers.setdefault(handler.name, {})
        return _Ordered(self, handler.name, streams)

    async def skip_to(self, handler: str, stream: str, sequence: int) -> None:
        """Record that ``handler`` is done with ``stream`` up to ``sequence``.

        For an operator accepting a loss (the runs waiting for the missing sequence run
        on), or setting where a subscriber added later starts. Never moves a stream
        back: a ``sequence`` below the one already handled changes nothing.
        """
        if sequence < 0:
            raise InvalidArgumentError(f"sequence must not be negative, not {sequence}")
        key = f"{handler}:{stream}"
        saved = await self.checkpoints.load(key)
        state = self._handlers.get(handler, {}).get(stream)
        if sequence <= max(saved or 0, 0 if state is None else state.expected - 1):
            return
        await self.checkpoints.save(key, sequence)
        if state is not None:
            state.expected = max(state.expected, sequence + 1)
            state.notify()

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        """Not used directly: the bus calls :meth:`bind` for each subscriber."""
        raise ArgumentTypeError(
            "OrderingMiddleware is bound per handler by the bus; do not call it"
        )


def _retries(layer: object, handler: HandlerInfo) -> bool:
    if not isinstance(layer, RetryMiddleware):
        return False
    policy = layer.policy_for(handler)
    return policy is not None and policy.max_attempts != 1


class _Ordered:
    """The ordering layer of one subscriber."""

    def __init__(self, config: OrderingMiddleware, handler: str, streams: dict[str, _Stream]):
        self._config = config
        self._handler = handler
        self._streams = streams
        source = get_logger("messagebus") if config.logger is None else config.logger
        self._log = source.bind(handler=handler)

    async def __call__(self, envelope: Envelope[Message], call_next: CallNext) -> Any:
        stream, header = envelope.group_key, envelope.headers.get(SEQUENCE_HEADER)
        if stream is None or header is None:
            return await call_next(envelope)
        sequence = _parse(header)
        state = self._streams.get(stream)
        if state is None:
            state = await self._load(stream, sequence)
        if state.blocks(sequence):
            await self._wait_turn(envelope, state, stream, sequence)
        if sequence < state.expected:
            self._log.info(
                "stale redelivery skipped",
                stream=stream,
                sequence=sequence,
                expected=state.expected,
                message_id=envelope.message_id,
            )
            return None
        state.running = True
        try:
            result = await call_next(envelope)
        except BaseException:
            state.running = False
            state.notify()
            raise
        try:
            await self._save(stream, sequence)
        finally:
            # The handler ran: even a cancelled save must not let this event run again.
            state.expected = max(state.expected, sequence + 1)  # skip_to may be ahead
            state.running = False
            state.notify()
        return result

    async def _load(self, stream: str, sequence: int) -> _Stream:
        saved = await self._config.checkpoints.load(f"{self._handler}:{stream}")
        if saved is not None:
            first = saved + 1
        else:
            first = sequence if self._config.start == "first-seen" else 1
        # Another run of the stream may have loaded it while this one awaited.
        return self._streams.setdefault(stream, _Stream(first))

    async def _wait_turn(
        self, envelope: Envelope[Message], state: _Stream, stream: str, sequence: int
    ) -> None:
        """Return once ``sequence`` may run (or is stale); raise past a bound."""
        config = self._config
        if state.waiting >= config.max_held:
            raise SequenceGapError(envelope, stream, sequence, state.expected, "full")
        state.waiting += 1
        try:
            clock = config.clock
            bound = anyio.move_on_after if clock is None else clock.move_on_after
            with bound(config.max_wait):
                while state.blocks(sequence):
                    await state.changed.wait()
        finally:
            state.waiting -= 1
        # Still blocked means the deadline ended the wait (a wake in the same instant wins).
        if state.blocks(sequence):
            raise SequenceGapError(envelope, stream, sequence, state.expected, "timeout")

    async def _save(self, stream: str, sequence: int) -> None:
        try:
            await self._config.checkpoints.save(f"{self._handler}:{stream}", sequence)
        except Exception as error:  # noqa: BLE001  # the run succeeded; the next save covers it
            self._log.warning(
                "checkpoint not saved",
                stream=stream,
                sequence=sequence,
                error=f"{type(error).__qualname__}: {error}",
            )
