"""The event log and checkpoint store protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.eventlog._record import LogRecord
from messagebus.eventlog._subscription import Subscription

__all__ = ["CheckpointStore", "EventLog"]


class CheckpointStore(Protocol):
    """The last position each named subscriber has processed, kept beside its log.

    Contract: :meth:`save` replaces the name's position in one step; :meth:`load`
    returns what was saved last (None for a name never saved or reset). Safe from many
    tasks (and, for persistent stores, processes); a name should have one subscriber
    at a time, or their saves overwrite each other.
    """

    async def load(self, name: str) -> int | None:
        """Return the last position ``name`` processed, or None."""

    async def save(self, name: str, position: int) -> None:
        """Record that ``name`` has processed everything up to ``position``."""

    async def reset(self, name: str) -> None:
        """Forget ``name``'s position, so that it replays the log from the start."""


class EventLog(Protocol):
    """An append-only log of events: global positions, streams, replay then live.

    Contract for implementations:

    - Append-only: no method changes or removes a record. Retention is not part of
      this API (see each store's module for what deleting rows by hand means).
    - :meth:`append` stores a batch atomically and returns its records. Positions are
      1, 2, 3, ... in the order appends commit, with no gaps, across every task and
      (for persistent logs) every process and store object writing the same log: a
      reader that sees position ``p`` sees every position before it. Within a stream
      (``envelope.group_key``) sequences are 1, 2, 3, ... in the same order.
    - Bodies are kept as CloudEvents JSON made by the log's
      :class:`~messagebus.WireCodec` and decoded through it on every read, so records
      of old versions come back as the current version through its upcasters; a body
      the codec cannot decode raises :class:`~messagebus.DecodeError` from the read.
    - Only events: an envelope of a command raises :class:`~messagebus.MessageKindError`,
      and a message the codec cannot encode raises :class:`~messagebus.EncodeError`;
      either way nothing of the batch is stored.
    """

    @property
    def checkpoints(self) -> CheckpointStore:
        """The checkpoint store kept with this log (same database)."""

    async def append(self, envelopes: Sequence[Envelope[Message]]) -> Sequence[LogRecord]:
        """Append ``envelopes`` in order, atomically; return their records."""

    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]:
        """Return up to ``limit`` records from ``from_position`` on, by position."""

    async def read_stream(
        self, stream: str, from_sequence: int = 1, limit: int | None = None
    ) -> Sequence[LogRecord]:
        """Return ``stream``'s records from ``from_sequence`` on, by sequence."""

    async def last_position(self) -> int:
        """Return the position of the last committed record; 0 for an empty log."""

    def subscribe(
        self,
        *,
        from_position: int = 1,
        checkpoint: str | None = None,
        live: bool = True,
        page_size: int = 500,
        poll_interval: float = 1.0,
        checkpoint_every: int = 100,
    ) -> Subscription:
        """Return a catch-up subscription: history in pages, then live appends.

        See :class:`~messagebus.eventlog.Subscription` for the arguments.
        """

    def lend_codec(self, codec: WireCodec) -> None:
        """Use ``codec`` unless the log was made with one (a bus lends its own codec)."""

    def notify_appended(self) -> None:
        """Wake this log's subscriptions now (call from the event loop's thread).

        :meth:`append` does it itself; call it after committing a transaction in which
        you appended through a store's ``append_in``.
        """
