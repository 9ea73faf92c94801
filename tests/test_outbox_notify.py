"""Cross-process wake-up on PostgreSQL: NOTIFY with each commit, a relay LISTENing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.from_thread
import psycopg
import pytest
from psycopg import sql
from psycopg_pool import ConnectionPool
from structlog.testing import capture_logs

from messagebus.outbox import (
    CommitWatcher,
    DeliveryFailure,
    OutboxMessage,
    OutboxRelay,
    PostgresOutbox,
    SQLiteOutbox,
)
from messagebus.outbox._notify import WAIT, CommitWatch, channel_name
from tests.outbox_support import message

pytestmark = pytest.mark.anyio

DEADLINE = 10  # seconds; a relay polling every hour could only meet it through NOTIFY


class Arrivals:
    """A Deliver that sets an event per message id when it arrives."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self._events: dict[str, anyio.Event] = {}

    def event(self, message_id: str) -> anyio.Event:
        return self._events.setdefault(message_id, anyio.Event())

    async def wait(self, message_id: str) -> None:
        with anyio.fail_after(DEADLINE):
            await self.event(message_id).wait()

    async def __call__(self, messages: Sequence[OutboxMessage]) -> Sequence[DeliveryFailure]:
        for m in messages:
            self.delivered.append(m.id)
            self.event(m.id).set()
        return ()


async def commit(outbox: PostgresOutbox, messages: Sequence[OutboxMessage]) -> None:
    async with outbox.transaction() as tx:
        tx.add(messages)


def listening_pids(dsn: str, schema: str) -> list[int]:
    """The sessions LISTENing on this schema's outbox channel."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE query = %s",
            [sql.SQL("LISTEN {}").format(sql.Identifier(channel_name(schema, "messagebus_outbox")))
             .as_string(connection)],
        ).fetchall()  # fmt: skip
    return [pid for (pid,) in rows]


async def eventually(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds: the server ends a closed session on its own time."""
    with anyio.fail_after(DEADLINE):
        while not check():  # noqa: ASYNC110  # a server-side state: no event to wait on
            await anyio.sleep(0.05)


def terminate(dsn: str, pids: Sequence[int]) -> None:
    assert pids
    with psycopg.connect(dsn, autocommit=True) as connection:
        for pid in pids:
            connection.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.fixture
def make(postgres_dsn: str, postgres_schema: str) -> Callable[..., PostgresOutbox]:
    """Make a store on the test's schema, each with a pool of its own: another process."""
    return lambda **kwargs: PostgresOutbox(postgres_dsn, schema=postgres_schema, **kwargs)


class TestChannelName:
    """The channel is the schema and table, within PostgreSQL's 63 bytes."""

    def test_short_names_read_plainly(self) -> None:
        """A channel names its schema and table."""
        assert (
            channel_name("shop", "messagebus_outbox") == "messagebus_outbox:shop.messagebus_outbox"
        )
        assert channel_name(None, "outbox") == "messagebus_outbox:.outbox"

    def test_long_names_are_hashed_within_63_bytes(self) -> None:
        """Too long a name is hashed: distinct tables keep distinct channels."""
        first, second = channel_name("s" * 63, "a" * 48), channel_name("s" * 63, "b" * 48)
        assert len(first.encode()) == len(second.encode()) == 63
        assert first != second
        assert first.startswith("messagebus_outbox:")


class TestCrossProcessWakeUp:
    """A relay polling once an hour still delivers at once what another store commits."""

    async def test_a_commit_by_another_store_wakes_the_relay(
        self, make: Callable[..., PostgresOutbox]
    ) -> None:
        """Rows committed on another pool arrive long before the poll, one wake per commit."""
        sink = Arrivals()
        async with make() as producer, make() as consumer:
            relay = OutboxRelay(consumer, sink, poll_interval=3600, cleanup_interval=3600)
            async with anyio.create_task_group() as tasks:
                await tasks.start(relay.run)
                for number in (1, 2, 3):
                    await commit(producer, [message(number)])
                    await sink.wait(f"m-{number:04d}")
                tasks.cancel_scope.cancel()
        assert sink.delivered == ["m-0001", "m-0002", "m-0003"]

    async def test_a_borrowed_pool_listens_with_its_settings(
        self, postgres_dsn: str, postgres_schema: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """A store on your pool listens on a connection made from the pool's conninfo."""
        sink = Arrivals()
        with ConnectionPool(postgres_dsn, min_size=1, max_size=2, open=True) as pool:
            async with make() as producer, PostgresOutbox(pool, schema=postgres_schema) as consumer:
                relay = OutboxRelay(consumer, sink, poll_interval=3600, cleanup_interval=3600)
                async with anyio.create_task_group() as tasks:
                    await tasks.start(relay.run)
                    await commit(producer, [message(1)])
                    await sink.wait("m-0001")
                    tasks.cancel_scope.cancel()

    async def test_insert_on_your_own_connection_notifies_at_your_commit(
        self, postgres_dsn: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """insert() on your connection sends the NOTIFY too, delivered when you commit."""
        sink = Arrivals()
        async with make() as producer, make() as consumer:
            relay = OutboxRelay(consumer, sink, poll_interval=3600, cleanup_interval=3600)
            async with anyio.create_task_group() as tasks:
                await tasks.start(relay.run)

                def write() -> None:
                    with psycopg.connect(postgres_dsn) as connection:
                        producer.insert(connection, [message(1)])

                await anyio.to_thread.run_sync(write)
                await sink.wait("m-0001")
                tasks.cancel_scope.cancel()

    async def test_notify_false_sends_nothing_and_does_not_listen(
        self, postgres_dsn: str, postgres_schema: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """notify=False: no NOTIFY in the commit, and watch_commits returns at once."""
        channel = sql.Identifier(channel_name(postgres_schema, "messagebus_outbox"))
        async with make(notify=False) as quiet:
            with anyio.fail_after(DEADLINE):
                await quiet.watch_commits(lambda: None)
            with psycopg.connect(postgres_dsn, autocommit=True) as listener:
                listener.execute(sql.SQL("LISTEN {}").format(channel))
                await commit(quiet, [message(1)])
                listener.execute(sql.SQL("NOTIFY {}, 'marker'").format(channel))
                notes = [n.payload for n in listener.notifies(timeout=DEADLINE, stop_after=1)]
        assert notes == ["marker"]

    async def test_own_commits_wake_only_a_store_without_listeners(
        self, make: Callable[..., PostgresOutbox]
    ) -> None:
        """The store's own commits, told to its commit listeners, do not wake its watch."""
        wakes = Wakes()
        async with make() as store, make() as other, anyio.create_task_group() as tasks:
            tasks.start_soon(store.watch_commits, wakes)
            await wakes.next()  # connected
            await commit(store, [message(1)])  # no listener yet: wakes
            await wakes.next()
            store.on_commit(lambda ids: None)
            await commit(store, [message(2)])  # told to the listener: no wake
            await commit(other, [message(3)])  # another store: wakes
            await wakes.next()
            tasks.cancel_scope.cancel()
        assert wakes.count == 3

    async def test_sqlite_is_not_a_commit_watcher(self, sqlite_path: Any) -> None:
        """SQLite has no signal between processes: its relays poll."""
        assert not isinstance(SQLiteOutbox(sqlite_path), CommitWatcher)
        assert isinstance(PostgresOutbox("postgresql://nowhere/test"), CommitWatcher)


class Wakes:
    """A wake() that counts its calls; ``next()`` waits for the next one."""

    def __init__(self) -> None:
        self.count = 0
        self._seen = 0
        self._event = anyio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    async def next(self) -> None:
        with anyio.fail_after(DEADLINE):
            while self._seen == self.count:
                await self._event.wait()
                self._event = anyio.Event()
        self._seen += 1


class GatedOutbox(PostgresOutbox):
    """A store whose listener may reconnect only once the test opens the gate."""

    def __init__(self, dsn: str, schema: str) -> None:
        super().__init__(dsn, schema=schema)
        self.gate = threading.Event()
        self.connections = 0

    def _connect_with(self) -> tuple[str, dict[str, Any]]:  # called in a worker thread
        self.connections += 1
        if self.connections > 1:
            self.gate.wait(DEADLINE)
        return super()._connect_with()


class TestListenerRecovery:
    """A lost listener is logged and made again; polling and the reconnection lose nothing."""

    async def test_a_killed_listener_reconnects_and_rows_in_between_arrive(
        self, postgres_dsn: str, postgres_schema: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """Rows committed while it was down arrive on reconnection; later ones by NOTIFY."""
        sink = Arrivals()
        consumer = GatedOutbox(postgres_dsn, postgres_schema)
        with capture_logs() as logs:
            async with make() as producer, consumer:
                relay = OutboxRelay(consumer, sink, poll_interval=3600, cleanup_interval=3600)
                async with anyio.create_task_group() as tasks:
                    await tasks.start(relay.run)
                    await commit(producer, [message(1)])
                    await sink.wait("m-0001")  # listening
                    terminate(postgres_dsn, listening_pids(postgres_dsn, postgres_schema))
                    # Gone for sure (termination is asynchronous); the gate holds the new one.
                    await eventually(lambda: listening_pids(postgres_dsn, postgres_schema) == [])
                    await commit(producer, [message(2)])  # nobody listening for it
                    consumer.gate.set()
                    await sink.wait("m-0002")  # found by the flush after reconnecting
                    await commit(producer, [message(3)])
                    await sink.wait("m-0003")  # NOTIFY works again
                    tasks.cancel_scope.cancel()
        lost = [log for log in logs if log["event"] == "outbox.listener_lost"]
        assert len(lost) == 1
        assert lost[0]["log_level"] == "warning"
        assert lost[0]["retry_in"] == 0.1

    async def test_the_watch_wakes_on_reconnection_then_on_notifications_again(
        self, postgres_dsn: str, postgres_schema: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """Wakes: connected, a commit, (killed) reconnected, a commit: nothing else wakes it."""
        wakes = Wakes()
        watched = GatedOutbox(postgres_dsn, postgres_schema)
        async with make() as producer, watched, anyio.create_task_group() as tasks:
            tasks.start_soon(watched.watch_commits, wakes)
            await wakes.next()  # connected
            await commit(producer, [message(1)])
            await wakes.next()  # notified
            terminate(postgres_dsn, listening_pids(postgres_dsn, postgres_schema))
            await eventually(lambda: listening_pids(postgres_dsn, postgres_schema) == [])
            await commit(producer, [message(2)])  # nobody listening: no wake for it
            watched.gate.set()
            await wakes.next()  # reconnected: the relay would flush everything now
            assert watched.connections == 2
            await commit(producer, [message(3)])
            await wakes.next()  # notified on the new connection
            tasks.cancel_scope.cancel()
        assert wakes.count == 4

    async def test_an_unreachable_server_is_tried_again_with_backoff(self) -> None:
        """Each failed connection is logged; the delay doubles."""
        attempts = 0
        third = anyio.Event()

        def connect_with() -> tuple[str, dict[str, Any]]:  # in a worker thread
            nonlocal attempts
            attempts += 1
            if attempts == 3:
                anyio.from_thread.run_sync(third.set)
            return "postgresql://root@127.0.0.1:1/test?connect_timeout=2", {}

        watch = CommitWatch(connect_with, "messagebus_outbox:.x", lambda: None)
        with capture_logs() as logs:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watch.run, lambda: None)
                with anyio.fail_after(DEADLINE):
                    await third.wait()
                tasks.cancel_scope.cancel()
        delays = [log["retry_in"] for log in logs if log["event"] == "outbox.listener_lost"]
        assert delays[:2] == [0.1, 0.2]


class TestShutdown:
    """Cancelling run() stops the listener promptly and closes its connection."""

    async def test_cancelling_run_returns_promptly_and_closes_the_listener(
        self, postgres_dsn: str, postgres_schema: str, make: Callable[..., PostgresOutbox]
    ) -> None:
        """run() returns within a few waits of cancellation; no session LISTENs after."""
        sink = Arrivals()
        async with make() as producer, make() as consumer:
            relay = OutboxRelay(consumer, sink, poll_interval=3600, cleanup_interval=3600)
            async with anyio.create_task_group() as tasks:
                await tasks.start(relay.run)
                await commit(producer, [message(1)])
                await sink.wait("m-0001")
                assert len(listening_pids(postgres_dsn, postgres_schema)) == 1
                tasks.cancel_scope.cancel()
                cancelled = anyio.current_time()
            assert anyio.current_time() - cancelled < 4 * WAIT + 1
        await eventually(lambda: listening_pids(postgres_dsn, postgres_schema) == [])
