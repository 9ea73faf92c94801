"""Put each stream's events back in sequence for subscribers that need order.

Transports may reorder and redeliver. Events of a stream carry their sequence in the
:data:`~messagebus.eventlog.SEQUENCE_HEADER` header (``"sequence"``: decimal text, from
1), set by the event log on its records; the stream is ``envelope.group_key``. A
:class:`Resequencer` takes envelopes as they arrive and says, for each, what to do:

- ``ready``: deliver these now, in this order. Within a stream they come in sequence,
  each exactly one more than the last delivered. An envelope with no stream or no
  sequence header is ready at once (nothing to order it by).
- ``duplicates``: skip these. A sequence at or below the stream's last delivered one
  is a stale redelivery, and so is a second copy of one already held.
- ``failed``: dead-letter these, with their :class:`SequenceGapError` as the reason.
  An early arrival (a sequence past the next expected one) is held until the gap
  fills, but never longer than ``max_wait`` seconds and never more than ``max_held``
  envelopes in all: an envelope held past ``max_wait`` fails with reason
  ``"timeout"``, and an early arrival finding no room fails at once with ``"full"``.

Order is never broken to make progress: after a failure the stream still waits for the
missing sequence (replaying it, then the dead letters, heals the stream); an operator
who accepts the loss calls :meth:`Resequencer.skip_to`. Time comes from an injected
clock; :meth:`Resequencer.expire` applies the time bound and
:meth:`Resequencer.next_deadline` says when to call it next (a middleware's timer).

Limits: the state is in memory, per process: it starts from ``delivered`` (by default
nothing delivered, so each stream is expected to start at sequence 1) and remembers the
last sequence of every stream it has seen, one small entry per stream. Not thread-safe;
task-safe within one event loop (no method awaits).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping

import attrs

from messagebus._clock import TimeSource, monotonic_time
from messagebus._envelope import Envelope
from messagebus._errors import DecodeError, InvalidArgumentError, SequenceGapError
from messagebus._messages import Message
from messagebus.eventlog._record import SEQUENCE_HEADER

__all__ = ["Resequenced", "Resequencer", "SequenceGapError"]


@attrs.frozen
class Resequenced:
    """What to do with the envelopes a :class:`Resequencer` call settled."""

    ready: tuple[Envelope[Message], ...] = ()
    """Deliver now, in this order."""
    duplicates: tuple[Envelope[Message], ...] = ()
    """Stale redeliveries: skip (acknowledge without handling)."""
    failed: tuple[SequenceGapError, ...] = ()
    """Gave up on: dead-letter each ``error.envelope`` with the error as reason."""


@attrs.define
class _Held:
    envelope: Envelope[Message]
    since: float


class Resequencer:
    """Holds early arrivals until their stream's gap fills; see the module.

    Args:
        max_held: the most envelopes held at once, over all streams.
        max_wait: the most seconds an envelope is held.
        clock: seconds, monotonic (``time.monotonic``) or a ``Clock``
            (a fake one in tests).
        delivered: the last sequence already delivered per stream, to resume from.
    """

    def __init__(
        self,
        *,
        max_held: int = 1000,
        max_wait: float = 30.0,
        clock: TimeSource = time.monotonic,
        delivered: Mapping[str, int] | None = None,
    ) -> None:
        if max_held < 0 or max_wait < 0:
            raise InvalidArgumentError("max_held and max_wait must not be negative")
        self._max_held = max_held
        self._max_wait = max_wait
        self._clock = monotonic_time(clock)
        self._delivered = dict(delivered or {})
        self._held: dict[str, dict[int, _Held]] = {}
        self._count = 0
        self._arrivals: deque[tuple[float, str, int]] = deque()  # held, oldest first

    @property
    def held(self) -> int:
        """How many envelopes are held now."""
        return self._count

    def last_delivered(self, stream: str) -> int:
        """Return the last sequence delivered on ``stream`` (0 for none)."""
        return self._delivered.get(stream, 0)

    def push(self, envelope: Envelope[Message]) -> Resequenced:
        """Take an arriving envelope; return what is settled now (time bound included).

        Raises:
            DecodeError: its sequence header is not a positive integer.
        """
        expired = self._expire()
        stream, header = envelope.group_key, envelope.headers.get(SEQUENCE_HEADER)
        if stream is None or header is None:
            return Resequenced(ready=(envelope,), failed=expired)
        sequence = _parse(header)
        expected = self._delivered.get(stream, 0) + 1
        held = self._held.setdefault(stream, {})
        if sequence < expected or sequence in held:
            return Resequenced(duplicates=(envelope,), failed=expired)
        if sequence == expected:
            return Resequenced(ready=(envelope, *self._release(stream, sequence)), failed=expired)
        if self._count >= self._max_held:
            full = SequenceGapError(envelope, stream, sequence, expected, "full")
            return Resequenced(failed=(*expired, full))
        now = self._clock()
        held[sequence] = _Held(envelope, now)
        self._count += 1
        self._arrivals.append((now, stream, sequence))
        return Resequenced(failed=expired)

    def expire(self) -> Resequenced:
        """Give up on every envelope held ``max_wait`` seconds or more."""
        return Resequenced(failed=self._expire())

    def next_deadline(self) -> float | None:
        """Return the clock time when the oldest held envelope expires, or None."""
        self._drop_settled_arrivals()
        return self._arrivals[0][0] + self._max_wait if self._arrivals else None

    def skip_to(self, stream: str, sequence: int) -> Resequenced:
        """Accept that ``stream`` lost everything up to ``sequence``; release what follows.

        Held envelopes at or below ``sequence`` come back as duplicates.
        """
        held = self._held.get(stream, {})
        stale = tuple(held.pop(n).envelope for n in sorted(held) if n <= sequence)
        self._count -= len(stale)
        self._delivered[stream] = max(sequence, self._delivered.get(stream, 0))
        return Resequenced(ready=self._release(stream, self._delivered[stream]), duplicates=stale)

    def _release(self, stream: str, delivered: int) -> tuple[Envelope[Message], ...]:
        """Mark ``delivered`` done; return the held envelopes that follow it without gap."""
        held = self._held.get(stream, {})
        ready = []
        while (following := held.pop(delivered + 1, None)) is not None:
            ready.append(following.envelope)
            delivered += 1
        self._count -= len(ready)
        self._delivered[stream] = delivered
        if not held:
            self._held.pop(stream, None)
        return tuple(ready)

    def _expire(self) -> tuple[SequenceGapError, ...]:
        now = self._clock()
        failed = []
        while self._arrivals and self._arrivals[0][0] + self._max_wait <= now:
            since, stream, sequence = self._arrivals.popleft()
            held = self._held.get(stream, {})
            entry = held.get(sequence)
            if entry is None or entry.since != since:
                continue  # delivered (or skipped) since it was held
            del held[sequence]
            self._count -= 1
            if not held:
                del self._held[stream]
            expected = self._delivered.get(stream, 0) + 1
            failed.append(SequenceGapError(entry.envelope, stream, sequence, expected, "timeout"))
        return tuple(failed)

    def _drop_settled_arrivals(self) -> None:
        while self._arrivals:
            since, stream, sequence = self._arrivals[0]
            entry = self._held.get(stream, {}).get(sequence)
            if entry is not None and entry.since == since:
                return
            self._arrivals.popleft()


def _parse(header: str) -> int:
    if not (header.isascii() and header.isdigit()) or int(header) < 1:
        raise DecodeError(f"{SEQUENCE_HEADER} header must be a positive integer, not {header!r}")
    return int(header)
