"""Process managers (sagas): state per correlation value, changed by messages, over time.

A :class:`ProcessManager` declares which messages start an instance and which continue
it; :meth:`ProcessManager.register` puts its handlers on a bus with an outbox. Each
message's run changes the instance's state, sends or publishes messages and schedules
timeouts (:meth:`Process.schedule`), all in one transaction with the inbox record of the
message (a duplicate is a no-op). The store lives in the outbox's database:
:meth:`SQLiteDatabase.processes <messagebus.sqlite.SQLiteDatabase.processes>`,
:meth:`PostgresDatabase.processes <messagebus.postgres.PostgresDatabase.processes>`.
"""

from messagebus.process._manager import Process, ProcessManager, WhenMissing
from messagebus.process._postgres import PostgresProcessStore
from messagebus.process._sqlite import SQLiteProcessStore
from messagebus.process._state import Upcaster
from messagebus.process._store import ProcessRecord, ProcessStore

__all__ = [
    "PostgresProcessStore",
    "Process",
    "ProcessManager",
    "ProcessRecord",
    "ProcessStore",
    "SQLiteProcessStore",
    "Upcaster",
    "WhenMissing",
]
