"""Idempotency: at-least-once delivery, effectively-once handling."""

from messagebus.idempotency._memory import InMemoryIdempotencyStore, ScopeRecords
from messagebus.idempotency._postgres import PostgresIdempotencyStore
from messagebus.idempotency._sqlite import SQLiteIdempotencyStore
from messagebus.idempotency._store import (
    Claimed,
    ClaimOutcome,
    Completed,
    InProgress,
    Mismatch,
)

__all__ = [
    "ClaimOutcome",
    "Claimed",
    "Completed",
    "InMemoryIdempotencyStore",
    "InProgress",
    "Mismatch",
    "PostgresIdempotencyStore",
    "SQLiteIdempotencyStore",
    "ScopeRecords",
]
