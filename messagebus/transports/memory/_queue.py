"""One in-memory queue with SQS semantics: its state and rules, with no I/O and no awaits.

Every method runs to completion without awaiting, so within one event loop each one is
atomic; :class:`~messagebus.transports.memory.InMemoryTransport` adds the waiting around them.
Time is a number the caller passes (the transport's clock), and nothing here runs on a
timer: visibility timeouts and delays are decided whenever a message is looked at.

How a message moves:

- It is stored with ``visible_at`` (now, or now + its delay).
- :meth:`QueueState.take` hands out messages whose ``visible_at`` has passed, earliest
  first, gives each a new receipt and sets ``visible_at`` to now + the visibility
  timeout: if nobody settles it, it is simply due again then. A message already received
  ``max_receives`` times moves to the dead-letter queue instead of being handed out.
- :meth:`ack` removes it, :meth:`nack` makes it due after a delay, :meth:`extend` moves
  its ``visible_at``; each needs the latest receipt with its visibility not yet over,
  else :class:`~messagebus.DeliveryExpiredError`.
- On a FIFO queue only the oldest message of each group is a candidate at all, so a
  group's next message waits until the one before it is acked or dead-lettered.

Candidates sit in a heap of ``(visible_at, seq, version)``; an entry whose version is
not the message's current one is stale (the message was received, nacked or extended
since) and is skipped, which keeps every operation O(log n).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque

import anyio
import attrs

from messagebus._errors import DeliveryExpiredError
from messagebus.transports._protocol import Outgoing, QueueSpec

__all__ = ["DEDUPLICATION_WINDOW", "QueueDepth", "QueueState", "StoredMessage"]

DEDUPLICATION_WINDOW = 300.0
"""Seconds a FIFO queue remembers a deduplication id (SQS: five minutes)."""

DEFAULT_GROUP = "default"


@attrs.frozen
class QueueDepth:
    """How many messages a queue holds, by state (SQS's approximate counts, exact here).

    Attributes:
        visible: ready to be received (on a FIFO queue, including those behind an
            in-flight message of their group).
        in_flight: received, not settled, visibility not over.
        delayed: waiting out a send delay or a nack delay.
    """

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        """Every message the queue holds."""
        return self.visible + self.in_flight + self.delayed


@attrs.define(eq=False)
class StoredMessage:
    """A message in a queue; ``receipt`` is the latest receive's token, None if nacked."""

    body: bytes
    message_id: str
    group_key: str
    seq: int
    visible_at: float
    receive_count: int = 0
    receipt: int | None = None
    version: int = 0


class QueueState:
    """The messages of one queue; ``waiters`` are events set whenever it may have news."""

    def __init__(self, spec: QueueSpec, dead_letters: QueueState | None) -> None:
        self.spec = spec
        self.waiters: set[anyio.Event] = set()
        self._dead_letters = dead_letters
        self._messages: dict[int, StoredMessage] = {}
        self._due: list[tuple[float, int, int]] = []
        self._groups: dict[str, deque[StoredMessage]] = {}
        # Insertion order is expiry order (the window is constant), so expired ids are
        # always at the front.
        self._seen: dict[str, float] = {}
        self._seq = itertools.count()
        self._receipts = itertools.count(1)

    def put(self, outgoing: Outgoing, now: float) -> None:
        """Store ``outgoing``, unless a FIFO queue saw its deduplication id lately."""
        if self.spec.fifo:
            while self._seen and next(iter(self._seen.values())) <= now:
                del self._seen[next(iter(self._seen))]
            deduplication_id = outgoing.deduplication_id or outgoing.message_id
            if deduplication_id in self._seen:
                return
            self._seen[deduplication_id] = now + DEDUPLICATION_WINDOW
        group = outgoing.group_key or DEFAULT_GROUP
        self._store(outgoing.body, outgoing.message_id, group, now + outgoing.delay)

    def take(self, now: float, max_messages: int, visibility: float) -> list[StoredMessage]:
        """Receive up to ``max_messages`` due messages, invisible for ``visibility`` s."""
        taken: list[StoredMessage] = []
        while self._due and len(taken) < max_messages:
            visible_at, seq, version = self._due[0]
            if visible_at > now:
                break
            heapq.heappop(self._due)
            message = self._messages.get(seq)
            if message is None or message.version != version:
                continue
            max_receives = self.spec.max_receives
            if max_receives is not None and message.receive_count >= max_receives:
                self._dead_letter(message, now)
                continue
            message.receive_count += 1
            message.receipt = next(self._receipts)
            message.visible_at = now + visibility
            taken.append(message)
        # Scheduled only now: with a zero visibility timeout a message would otherwise
        # be due again within this very call and handed out twice.
        for message in taken:
            self._schedule(message)
        return taken

    def next_due(self) -> float | None:
        """When the earliest candidate becomes due, or None if there is none."""
        while self._due:
            _, seq, version = self._due[0]
            message = self._messages.get(seq)
            if message is not None and message.version == version:
                return message.visible_at
            heapq.heappop(self._due)
        return None

    def ack(self, message: StoredMessage, receipt: int, now: float) -> None:
        """Remove ``message`` for good."""
        self._check(message, receipt, now)
        self._remove(message)

    def nack(self, message: StoredMessage, receipt: int, now: float, delay: float) -> None:
        """Make ``message`` due again after ``delay`` seconds."""
        self._check(message, receipt, now)
        message.receipt = None
        message.visible_at = now + delay
        self._schedule(message)
        self._wake()

    def extend(self, message: StoredMessage, receipt: int, now: float, visibility: float) -> None:
        """Keep ``message`` invisible until ``visibility`` seconds from now."""
        self._check(message, receipt, now)
        message.visible_at = now + visibility
        self._schedule(message)
        self._wake()

    def depth(self, now: float) -> QueueDepth:
        """Count the messages by state."""
        visible = in_flight = delayed = 0
        for message in self._messages.values():
            if message.visible_at <= now:
                visible += 1
            elif message.receipt is not None:
                in_flight += 1
            else:
                delayed += 1
        return QueueDepth(visible, in_flight, delayed)

    def _check(self, message: StoredMessage, receipt: int, now: float) -> None:
        if (
            self._messages.get(message.seq) is not message
            or message.receipt != receipt
            or message.visible_at <= now
        ):
            raise DeliveryExpiredError(
                f"the delivery of message {message.message_id} from queue {self.spec.name!r} "
                "is no longer valid: it was settled, or its visibility timeout passed"
            )

    def _store(self, body: bytes, message_id: str, group: str, visible_at: float) -> None:
        message = StoredMessage(body, message_id, group, next(self._seq), visible_at)
        self._messages[message.seq] = message
        if self.spec.fifo:
            members = self._groups.setdefault(group, deque())
            members.append(message)
            if len(members) == 1:
                self._schedule(message)
        else:
            self._schedule(message)
        self._wake()

    def _remove(self, message: StoredMessage) -> None:
        del self._messages[message.seq]
        if self.spec.fifo:
            # Only a group's oldest message is ever handed out, so it is the one leaving.
            members = self._groups[message.group_key]
            members.popleft()
            if members:
                self._schedule(members[0])
                self._wake()
            else:
                del self._groups[message.group_key]

    def _dead_letter(self, message: StoredMessage, now: float) -> None:
        self._remove(message)
        # provision() gives every queue with max_receives a dead-letter queue.
        assert self._dead_letters is not None
        self._dead_letters._store(message.body, message.message_id, message.group_key, now)

    def _schedule(self, message: StoredMessage) -> None:
        message.version += 1
        heapq.heappush(self._due, (message.visible_at, message.seq, message.version))

    def _wake(self) -> None:
        for event in self.waiters:
            event.set()
        self.waiters.clear()
