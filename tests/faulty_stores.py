"""Small stores with faults switched on by name, for showing that the store checks catch them.

Each is correct with no faults (the tests show it passes every check), so a failing
check is the fault's doing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import anyio.lowlevel
import attrs

from messagebus import Envelope, Event, Message
from messagebus._ids import new_message_id
from messagebus.dead_letters import DeadLetter, InMemoryDeadLetterStore
from messagebus.eventlog import SEQUENCE_HEADER, InMemoryEventLog, LogRecord
from messagebus.idempotency import Claimed, ClaimOutcome, Completed, InProgress, Mismatch
from messagebus.outbox import OutboxEntry, OutboxMessage, OutboxStatus, Settlement, Status

_T = TypeVar("_T")


@attrs.define
class _Claim:
    fingerprint: str
    token: str
    expires_at: float
    result: str | None = None


class FaultyIdempotencyStore:
    """An idempotency store in a dictionary; ``faults`` name what it gets wrong."""

    def __init__(self, clock: Callable[[], float], faults: Iterable[str] = ()) -> None:
        self.clock = clock
        self.faults = frozenset(faults)
        self.records: dict[tuple[str, str], _Claim] = {}

    def _key(self, scope: str, key: str) -> tuple[str, str]:
        return ("", key) if "no-scopes" in self.faults else (scope, key)

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        now = self.clock()
        record = self.records.get(self._key(scope, key))
        if "racy" in self.faults:
            await anyio.lowlevel.checkpoint()  # others read the same state meanwhile
        expired = record is not None and record.expires_at <= now
        if "never-expire" in self.faults and record is not None and record.result is None:
            expired = False
        if "forever" in self.faults and record is not None and record.result is not None:
            expired = False
        if record is None or expired or "always-claimed" in self.faults:
            token = new_message_id()
            self.records[self._key(scope, key)] = _Claim(fingerprint, token, now + lease)
            return Claimed(token)
        if record.fingerprint != fingerprint and "ignore-fingerprint" not in self.faults:
            return Mismatch(record.fingerprint)
        if record.result is None:
            return InProgress(record.expires_at)
        return Completed(record.result)

    def _holds(self, scope: str, key: str, token: str) -> _Claim | None:
        record = self.records.get(self._key(scope, key))
        if record is not None and (record.token == token or "ignore-token" in self.faults):
            return record
        return None

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        if (record := self._holds(scope, key, token)) is not None:
            record.result = result[:1000] if "truncate" in self.faults else result
            record.expires_at = self.clock() + ttl

    async def release(self, scope: str, key: str, token: str) -> None:
        if self._holds(scope, key, token) is not None and "no-release" not in self.faults:
            del self.records[self._key(scope, key)]

    async def cleanup(self, limit: int = 1000) -> int:
        now = self.clock()
        expired = [key for key, record in self.records.items() if record.expires_at <= now]
        if "cleanup-ignores-limit" not in self.faults:
            expired = expired[:limit]
        for key in expired:
            del self.records[key]
        return len(expired)


class FaultyDeadLetterStore(InMemoryDeadLetterStore):
    """The in-memory dead-letter store with ``faults``."""

    def __init__(self, faults: Iterable[str] = ()) -> None:
        super().__init__()
        self.faults = frozenset(faults)

    async def add(self, dead_letter: DeadLetter) -> None:
        if "lossy" in self.faults:
            dead_letter = attrs.evolve(dead_letter, body=dead_letter.body[:1000])
        if "keep-first" in self.faults and dead_letter.id in self._letters:
            return
        if "racy" in self.faults:
            letters = dict(self._letters)
            await anyio.lowlevel.checkpoint()  # another add writes its copy meanwhile
            letters[dead_letter.id] = dead_letter
            self._letters = letters
            return
        await super().add(dead_letter)

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        if "until-inclusive" in self.faults and until is not None:
            until = until.replace(microsecond=until.microsecond + 1)
        found = await super().list(
            message_type=message_type, handler=handler, since=since, until=until, limit=None
        )
        if "unordered" in self.faults:
            found = tuple(letter for letter in self._letters.values() if letter in found)
        return found if limit is None else found[:limit]

    async def delete(self, dead_letter_id: str) -> bool:
        deleted = await super().delete(dead_letter_id)
        return deleted or "delete-says-true" in self.faults

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        if "purge-ignores-handler" in self.faults:
            handler = None
        return await super().purge(message_type=message_type, handler=handler, until=until)


class FaultyEventLog(InMemoryEventLog):
    """The in-memory event log with ``faults``."""

    faults: frozenset[str] = frozenset()

    async def append(self, envelopes: Sequence[Envelope[Message]]) -> Sequence[LogRecord]:
        if "accepts-commands" in self.faults:
            envelopes = [e for e in envelopes if isinstance(e.message, Event)]
        if "one-by-one" in self.faults:
            records: list[LogRecord] = []
            for envelope in envelopes:
                records += await super().append([envelope])
                await anyio.lowlevel.checkpoint()  # other appends slip in between
            return records
        return await super().append(envelopes)

    async def read(self, from_position: int = 1, limit: int = 1000) -> Sequence[LogRecord]:
        if "read-ignores-limit" in self.faults:
            limit = 1000
        records = await super().read(from_position, limit)
        if "read-drops-headers" in self.faults:
            records = [_without_headers(record) for record in records]
        return records

    async def read_stream(
        self, stream: str, from_sequence: int = 1, limit: int | None = None
    ) -> Sequence[LogRecord]:
        if "stream-from-ignored" in self.faults:
            from_sequence = 1
        return await super().read_stream(stream, from_sequence, limit)

    async def last_position(self) -> int:
        return await super().last_position() + ("last-position-off" in self.faults)


def _without_headers(record: LogRecord) -> LogRecord:
    kept = {k: v for k, v in record.envelope.headers.items() if k == SEQUENCE_HEADER}
    return attrs.evolve(record, envelope=record.envelope.replace(headers=kept))


class DeletingEventLog(InMemoryEventLog):
    """An event log with a method that removes records: not append-only."""

    async def delete_stream(self, stream: str) -> None:
        """Remove a stream (what an append-only log must not offer)."""


class ForgetfulCheckpoints:
    """Checkpoints whose reset does nothing."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}

    async def load(self, name: str) -> int | None:
        return self.positions.get(name)

    async def save(self, name: str, position: int) -> None:
        self.positions[name] = position

    async def reset(self, name: str) -> None:
        pass


class ForgetfulEventLog(InMemoryEventLog):
    """An event log whose checkpoints' reset does nothing."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._checkpoints = ForgetfulCheckpoints()


@attrs.define
class _Row:
    seq: int
    message: OutboxMessage
    status: Status = "pending"
    attempts: int = 0
    available_at: float = 0.0
    owner: str | None = None
    lease_end: float | None = None
    error: str | None = None
    sent_at: float | None = None

    def leased(self, now: float) -> bool:
        return self.lease_end is not None and self.lease_end > now

    def entry(self) -> OutboxEntry:
        return OutboxEntry(self.message, self.status, self.attempts, self.error)


class _Unit:
    """A unit of work that only collects messages (the checks run no SQL)."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []

    def add(self, messages: OutboxMessage | Iterable[OutboxMessage]) -> None:
        if isinstance(messages, OutboxMessage):
            messages = [messages]
        self.messages.extend(messages)

    async def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    async def fetch(self, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def run(self, call: Callable[[Any], _T]) -> _T:
        raise NotImplementedError


class FaultyOutbox:
    """An outbox in a list, with ``faults``; correct (for one process) without any."""

    def __init__(self, clock: Callable[[], float], faults: Iterable[str] = ()) -> None:
        self.clock = clock
        self.faults = frozenset(faults)
        self.rows: list[_Row] = []
        self.listeners: list[Callable[[Sequence[str]], None]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Unit]:
        unit = _Unit()
        try:
            yield unit
        except BaseException:
            if "no-rollback" in self.faults:
                self._commit(unit)
            raise
        self._commit(unit)

    def _commit(self, unit: _Unit) -> None:
        messages = unit.messages
        if "lossy" in self.faults:
            messages = [attrs.evolve(m, deduplication_id=None) for m in messages]
        taken = {row.message.id for row in self.rows}
        ids = [m.id for m in messages]
        if len(set(ids)) < len(ids) or taken & set(ids):
            raise ValueError("duplicate message id")
        for message in messages:
            self.rows.append(_Row(len(self.rows) + 1, message))
        if ids:
            for listener in self.listeners:
                listener(ids)

    def on_commit(self, listener: Callable[[Sequence[str]], None]) -> None:
        self.listeners.append(listener)

    def _claimable(self, row: _Row, now: float, ids: Sequence[str] | None) -> bool:
        if row.status != "pending" or row.available_at > now or row.leased(now):
            return False
        if ids is not None and row.message.id not in ids:
            return False
        if row.message.group_key is None or "no-groups" in self.faults:
            return True
        return not any(
            earlier.message.group_key == row.message.group_key
            and earlier.seq < row.seq
            and earlier.status == "pending"
            and (
                earlier.leased(now)
                or (earlier.available_at > now and "backoff-frees-group" not in self.faults)
                or (
                    ids is not None
                    and earlier.message.id not in ids
                    and "ids-jump-groups" not in self.faults
                )
            )
            for earlier in self.rows
        )

    async def claim(
        self, owner: str, *, lease: float, limit: int, ids: Sequence[str] | None = None
    ) -> Sequence[OutboxEntry]:
        now = self.clock()
        rows = reversed(self.rows) if "newest-first" in self.faults else iter(self.rows)
        picked = [row for row in rows if self._claimable(row, now, ids)][:limit]
        if "racy-claim" in self.faults:
            await anyio.lowlevel.checkpoint()  # another relay picks the same rows meanwhile
        for row in picked:
            row.owner, row.lease_end = owner, now + lease
        return [row.entry() for row in picked]

    def _mine(self, message_id: str, owner: str) -> _Row | None:
        for row in self.rows:
            mine = row.owner == owner or "ignores-owner" in self.faults
            if row.message.id == message_id and row.status == "pending" and mine:
                return row
        return None

    async def settle(self, owner: str, settlement: Settlement) -> None:
        now = self.clock()
        for sent in self.rows:
            if sent.message.id in settlement.sent:
                sent.status, sent.sent_at, sent.owner, sent.lease_end = "sent", now, None, None
        for message_id, delay, error in settlement.retry:
            if (row := self._mine(message_id, owner)) is not None:
                row.attempts += 1
                row.error, row.owner, row.lease_end = error, None, None
                row.available_at = now if "no-backoff" in self.faults else now + delay
        for message_id, error in settlement.dead:
            if (row := self._mine(message_id, owner)) is not None:
                row.attempts += 1
                row.status, row.error, row.owner, row.lease_end = "dead", error, None, None
        for message_id in settlement.released:
            if (row := self._mine(message_id, owner)) is not None:
                row.owner, row.lease_end = None, None
                row.attempts += "release-counts-attempt" in self.faults

    async def list(self, status: Status = "dead", *, limit: int = 100) -> Sequence[OutboxEntry]:
        return [row.entry() for row in self.rows if row.status == status][:limit]

    async def requeue(self, message_id: str) -> bool:
        for row in self.rows:
            if row.message.id == message_id and row.status == "dead":
                row.status, row.available_at = "pending", 0.0
                if "requeue-keeps-attempts" not in self.faults:
                    row.attempts = 0
                return True
        return False

    async def status(self) -> OutboxStatus:
        now = self.clock()
        pending = [row for row in self.rows if row.status == "pending"]
        in_flight = sum(row.leased(now) for row in pending)
        if "in-flight-as-pending" in self.faults:
            in_flight = 0
        oldest = min((row.message.created_at for row in pending), default=None)
        return OutboxStatus(
            pending=len(pending) - in_flight,
            in_flight=in_flight,
            dead=sum(row.status == "dead" for row in self.rows),
            sent=sum(row.status == "sent" for row in self.rows),
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
        )

    async def cleanup(self, retention: float, *, limit: int = 1000) -> int:
        cutoff = self.clock() - (0 if "cleanup-all-sent" in self.faults else retention)
        old = [r for r in self.rows if r.status == "sent" and (r.sent_at or 0) <= cutoff][:limit]
        self.rows = [row for row in self.rows if row not in old]
        return len(old)

    async def aclose(self) -> None:
        pass
