"""Driving a process manager in a test: given messages, its state, its completion.

``harness.process(manager, store)`` returns a :class:`ProcessUnderTest` on a running
:class:`~messagebus.testing.BusHarness` whose bus the manager was registered on. It
adds what only a process manager has: ``await orders.given(OrderPlaced("o-1"))``
hands messages to the bus as arrivals (each settled before the next: committed, and
what it sent delivered), ``await orders.state("o-1")`` reads an instance's state as
committed, ``await orders.assert_completed("o-1")`` checks it ended. What the manager
sends, publishes and schedules is asserted on the harness's recorder, as for any
handler; the harness's ``advance`` moves the fake clock and delivers the timeouts that
fell due. Every assertion here reads the store, never the manager's memory: what a test
sees is what committed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from messagebus._envelope import Envelope
from messagebus._messages import Message
from messagebus.process import ProcessManager, ProcessRecord, ProcessStore

if TYPE_CHECKING:
    from messagebus.testing._bus_harness import BusHarness

__all__ = ["ProcessUnderTest"]

S = TypeVar("S")


class ProcessUnderTest(Generic[S]):
    """One process manager under test on a running harness; see the module.

    Args:
        harness: the harness of the bus the manager was registered on.
        manager: the process manager.
        store: the store it was registered with (read, never written, here).
    """

    def __init__(
        self, harness: BusHarness, manager: ProcessManager[S], store: ProcessStore
    ) -> None:
        self.harness = harness
        self.manager = manager
        self.store = store

    async def given(self, *messages: Message) -> None:
        """Hand each message to the bus as if it arrived, then settle, in order.

        Each goes to :meth:`MessageBus.handle_delivered
        <messagebus.MessageBus.handle_delivered>` (as a worker would hand it: a failure
        becomes a dead letter, not an exception), then :meth:`BusHarness.settle
        <messagebus.testing.BusHarness.settle>` delivers what its run committed.
        """
        for message in messages:
            await self.harness.bus.handle_delivered(Envelope(message))
            await self.harness.settle()

    async def state(self, key: object) -> S:
        """Return the committed state of the instance ``key`` (its correlation value).

        Raises:
            AssertionError: there is no such instance, or it completed (it has no
                state, only a tombstone).
        """
        record = await self._record(key)
        if record.completed or record.state is None:
            raise AssertionError(
                f"process {self.manager.name!r} instance {str(key)!r} has completed: it "
                "has no state left, only a tombstone"
            )
        return self.manager.state.decode(record.state, record.state_version)

    async def assert_completed(self, key: object) -> None:
        """Check that the instance ``key`` completed (its tombstone is there).

        Raises:
            AssertionError: there is no such instance, or it is still running (the
                message shows its state).
        """
        record = await self._record(key)
        if not record.completed:
            raise AssertionError(
                f"expected process {self.manager.name!r} instance {str(key)!r} to have "
                f"completed; it is running (version {record.version}), state: {record.state}"
            )

    async def assert_not_started(self, key: object) -> None:
        """Check that no instance ``key`` exists, running or completed.

        Raises:
            AssertionError: one does; the message says in which stage.
        """
        record = await self.store.get(self.manager.name, str(key))
        if record is not None:
            stage = "completed" if record.completed else f"running, state: {record.state}"
            raise AssertionError(
                f"expected no process {self.manager.name!r} instance {str(key)!r}; it is {stage}"
            )

    async def _record(self, key: object) -> ProcessRecord:
        record = await self.store.get(self.manager.name, str(key))
        if record is None:
            raise AssertionError(
                f"process {self.manager.name!r} has no instance {str(key)!r} (never "
                "started, or its tombstone expired)"
            )
        return record
