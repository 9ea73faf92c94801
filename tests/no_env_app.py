"""Application modules that ``messagebus worker`` refuses: one ignores the variable."""

from __future__ import annotations

from messagebus import MessageBus
from messagebus.transports.memory import InMemoryTransport

bus = MessageBus(transport=InMemoryTransport(), service="fixed")
in_process = MessageBus()
