"""Where messages go when they leave a handler or a ``publish``: outlets, composed once.

An :class:`Outlet` takes envelopes and sends them on. The bus composes its outlets in
its constructor, from what it was given, innermost first:

- the dispatcher itself (no transport: handle the messages in this process), or a
  :class:`TransportOutlet` (hand them to the transport's queues and topics);
- an :class:`OutboxOutlet` around it when the bus has an outbox: a unit of work stages
  its messages as rows of its transaction, and the relay delivers committed rows to
  the outlet inside (the way Watermill's forwarder wraps a publisher);
- an :class:`EventLogOutlet` outermost when the bus has an event log: events are
  appended (in the unit of work's transaction, when staged) before they go on.

The bus never asks which outlets it has: ``publish`` and follow-ups call ``emit``, a
unit of work calls ``stage``.
"""

from messagebus._outlets._departure import Departure, send_batch
from messagebus._outlets._event_log import EventLogOutlet, StagingEventLogOutlet, TransactionalLog
from messagebus._outlets._outbox import OutboxOutlet
from messagebus._outlets._protocol import Outlet, StagingOutlet
from messagebus._outlets._transport import TransportOutlet

__all__ = [
    "Departure",
    "EventLogOutlet",
    "OutboxOutlet",
    "Outlet",
    "StagingEventLogOutlet",
    "StagingOutlet",
    "TransactionalLog",
    "TransportOutlet",
    "send_batch",
]
