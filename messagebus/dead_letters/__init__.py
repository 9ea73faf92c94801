"""Dead letters: what handlers gave up on, kept as data that can be listed and replayed."""

from messagebus.dead_letters._memory import InMemoryDeadLetterStore
from messagebus.dead_letters._postgres import PostgresDeadLetterStore
from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sqlite import SQLiteDeadLetterStore
from messagebus.dead_letters._store import DeadLetterStore

__all__ = [
    "DeadLetter",
    "DeadLetterStore",
    "InMemoryDeadLetterStore",
    "PostgresDeadLetterStore",
    "SQLiteDeadLetterStore",
]
