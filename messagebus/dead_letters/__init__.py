"""Dead letters: what handlers gave up on, kept as data that can be listed and replayed."""

from messagebus.dead_letters._memory import InMemoryDeadLetterStore
from messagebus.dead_letters._postgres import PostgresDeadLetterStore
from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._sqlite import SQLiteDeadLetterStore

__all__ = [
    "DeadLetter",
    "InMemoryDeadLetterStore",
    "PostgresDeadLetterStore",
    "SQLiteDeadLetterStore",
]
