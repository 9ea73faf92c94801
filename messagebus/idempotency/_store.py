"""The idempotency store protocol: an atomic claim per (scope, key), then its outcome.

:class:`IdempotencyStore` is the contract every store keeps: records written in
transactions of the store's own. :class:`InboxStore` adds inbox mode, for the SQL stores:
the same records written on the caller's connection inside the caller's transaction (a
unit of work's), so that they commit or roll back with the caller's own writes.
"""

from __future__ import annotations

from hashlib import sha256
from typing import Any, Protocol, runtime_checkable

import attrs

from messagebus._errors import InboxConfigurationError

__all__ = [
    "HASHED",
    "ClaimOutcome",
    "Claimed",
    "Completed",
    "IdempotencyStore",
    "InProgress",
    "InboxConfigurationError",
    "InboxStore",
    "Mismatch",
    "live_outcome",
]


@attrs.frozen
class Claimed:
    """The caller holds the key now and must run the handler.

    ``token`` identifies this claim: :meth:`IdempotencyStore.complete` and
    :meth:`IdempotencyStore.release` act only while the claim still carries it, so a
    holder whose lease expired (and whose key was claimed again) cannot overwrite the
    new holder's record.
    """

    token: str


@attrs.frozen
class Completed:
    """The handler already ran to completion for this key; ``result`` is what it returned."""

    result: str


@attrs.frozen
class InProgress:
    """Another holder is running the handler; its lease ends at ``lease_expires_at``.

    ``lease_expires_at`` is in the store's clock, seconds since the Unix epoch.
    """

    lease_expires_at: float


@attrs.frozen
class Mismatch:
    """The key was used before for a different payload (another fingerprint)."""

    fingerprint: str


ClaimOutcome = Claimed | Completed | InProgress | Mismatch


HASHED = "2:"
"""The prefix of a fingerprint that is the SHA-256 (hex) of a canonical JSON text.

``IdempotencyMiddleware.fingerprint_of`` makes them; its fast path on the in-memory
store may pass the text itself instead, while it is no longer than its hash (a JSON text
starts with ``[``). :func:`live_outcome` takes the two forms as one."""


def live_outcome(
    fingerprint: str,
    stored_fingerprint: str,
    result: str | None,
    lease_expires_at: float,
) -> Completed | InProgress | Mismatch:
    """Return what a claim with ``fingerprint`` sees of a live record (not expired).

    ``result`` is None while the record is in progress. A canonical JSON text and its
    hashed fingerprint (:data:`HASHED`) are the same fingerprint. For the stores.
    """
    if stored_fingerprint != fingerprint and not _text_and_its_hash(
        fingerprint, stored_fingerprint
    ):
        return Mismatch(stored_fingerprint)
    if result is None:
        return InProgress(lease_expires_at)
    return Completed(result)


class IdempotencyStore(Protocol):
    """Where idempotency records live.

    A record is identified by ``(scope, key)``: the scope is the handler's name, so two
    subscribers of one event deduplicate independently. Its life:

    - :meth:`claim` on an unknown key (or one whose record has expired: an in-progress
      claim past its lease, a completed record past its TTL) records IN_PROGRESS with
      the caller's fingerprint, a new token and a lease, and returns :class:`Claimed`.
      This must be atomic: of many concurrent claims of one key (tasks, processes),
      exactly one is :class:`Claimed`.
    - On a live record, :meth:`claim` returns :class:`Mismatch` if the fingerprint
      differs, else :class:`Completed` (with the stored result) or :class:`InProgress`.
    - :meth:`complete` turns the caller's claim into COMPLETED with the result, kept for
      ``ttl`` seconds; :meth:`release` deletes the caller's claim so that a retry can
      claim again. Both do nothing if the record no longer carries ``token``.
    - :meth:`cleanup` deletes expired records, at most ``limit`` per call.

    Results are text (JSON, by the middleware's choice). All methods must be safe to
    call from many tasks at once; persistent stores from many processes too.
    """

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it."""

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went."""


@runtime_checkable
class InboxStore(IdempotencyStore, Protocol):
    """An idempotency store whose records can join the caller's database transaction.

    Inbox mode: :meth:`claim_in` and :meth:`complete_in` do what :meth:`claim` and
    :meth:`complete` do, with the same records and the same results, but on the
    caller's driver connection (:class:`sqlite3.Connection`, :class:`psycopg.Connection`)
    inside the caller's open transaction, which the caller commits or rolls back. So a
    claim, the handler's own writes in that transaction and the completion commit
    together, or none of them does: a run that fails, or a process that dies before the
    commit, leaves no record at all (a rollback is the release; there is never a stale
    IN_PROGRESS record to wait out), and a committed effect always has its record.

    Concurrency: a duplicate's claim waits for the holder's transaction (on its row's
    unique index in PostgreSQL, on the file's write lock in SQLite), then sees the
    completed record, or claims the key itself if the holder rolled back. A live
    IN_PROGRESS record is seen only when another caller uses the same table outside
    inbox mode.

    Both functions block: call them in a worker thread, through the transaction's
    ``run``. The transaction must be on the store's :attr:`database`: the same object,
    which is what :class:`~messagebus.middleware.IdempotencyMiddleware` checks (the
    store and the outbox made from one :class:`~messagebus.sqlite.SQLiteDatabase` or
    :class:`~messagebus.postgres.PostgresDatabase`).
    """

    @property
    def database(self) -> object:
        """The database object the store is on; a transaction it joins must be on it too."""

    def claim_in(
        self,
        connection: Any,
        scope: str,
        key: str,
        fingerprint: str,
        lease: float,
        *,
        wait: float | None = None,
    ) -> ClaimOutcome:
        """Claim ``key`` like :meth:`claim`, in the caller's transaction on ``connection``.

        ``wait``: seconds to wait at most for a concurrent holder's transaction (None:
        as long as the database's own lock timeouts allow). Giving up raises
        :class:`~messagebus.DuplicateInProgressError`, and may leave the transaction
        failed: roll it back.
        """

    def complete_in(
        self, connection: Any, scope: str, key: str, token: str, result: str, *, ttl: float
    ) -> None:
        """Record the claim's result like :meth:`complete`, in the caller's transaction."""


def _text_and_its_hash(first: str, second: str) -> bool:
    """Tell whether one fingerprint is a JSON text and the other its hashed form."""
    text, hashed = (first, second) if first.startswith("[") else (second, first)
    return (
        text.startswith("[")
        and hashed.startswith(HASHED)
        and HASHED + sha256(text.encode()).hexdigest() == hashed
    )
