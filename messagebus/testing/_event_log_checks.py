"""The event log conformance checks: one coroutine per part of the contract.

Each ``check_event_log_*`` takes an :class:`EventLogHarness`, opens logs with it and
raises :class:`AssertionError` saying what went wrong. Nothing here imports a test
framework; see :mod:`messagebus.testing` for running them from pytest, or run them all
with :func:`check_event_log`. The contract is :class:`~messagebus.eventlog.EventLog`'s
docstring (and :class:`~messagebus.eventlog.CheckpointStore`'s for its checkpoints).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack

import anyio
import anyio.lowlevel
import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import EncodeError, MessageKindError
from messagebus._messages import Command, Event, Message
from messagebus._registry import MessageRegistry
from messagebus.eventlog._record import SEQUENCE_HEADER, LogRecord
from messagebus.eventlog._store import EventLog
from messagebus.testing._harness import Probe
from messagebus.testing._store_support import run_checks

__all__ = [
    "EVENT_LOG_CHECKS",
    "LOG_CODEC",
    "EventLogCheck",
    "EventLogHarness",
    "check_event_log",
    "check_event_log_append_only",
    "check_event_log_checkpoints",
    "check_event_log_commands_refused",
    "check_event_log_concurrent_appends",
    "check_event_log_numbering",
    "check_event_log_read_paging",
    "check_event_log_read_stream_paging",
    "check_event_log_round_trip",
    "check_event_log_unencodable_refused",
]


@attrs.frozen
class _Order(Command[None], name="messagebus.testing.order"):
    """A command: the log must refuse it."""

    text: str


@attrs.frozen
class _Unencodable(Event, name="messagebus.testing.unencodable"):
    """An event whose field JSON cannot express: the log must refuse it."""

    value: object


_registry = MessageRegistry()
for _type in (Probe, _Order, _Unencodable):
    _registry.add(_type)
LOG_CODEC = WireCodec(_registry, source="/messagebus/testing")
"""The codec the checks give the log: it knows their events (and a command)."""

# Names of methods that would change or remove records: an append-only log has none.
_MUTATORS = (
    "clear",
    "compact",
    "delete",
    "drop",
    "edit",
    "modify",
    "pop",
    "prune",
    "purge",
    "remove",
    "replace",
    "rewrite",
    "set",
    "trim",
    "truncate",
    "update",
)


@attrs.frozen
class EventLogHarness:
    """How the checks make the event log under test.

    Attributes:
        open: ``open(codec)`` makes a log that encodes and decodes with ``codec``, as an
            async context manager. Every call within one check must give a log on the
            same records: a new object on the same database (a second one stands for
            another process), or the same object for a log that keeps its records in
            itself (in memory). Use a new harness, on an empty log, for each check.
        concurrency: how many tasks append at once in the concurrency check.
    """

    open: Callable[[WireCodec], AbstractAsyncContextManager[EventLog]]
    concurrency: int = 8


EventLogCheck = Callable[[EventLogHarness], Awaitable[None]]
"""One event log check."""


def _event(n: int, stream: str | None = None, **headers: str) -> Envelope[Message]:
    return Envelope(Probe(f"event {n}", n), group_key=stream, headers=headers)


def _numbers(records: Sequence[LogRecord]) -> list[tuple[int, str | None, int | None]]:
    return [(record.position, record.stream, record.sequence) for record in records]


def _positions(records: Sequence[LogRecord]) -> list[int]:
    return [record.position for record in records]


def _gapless(records: Sequence[LogRecord], what: str) -> None:
    """Check positions 1..n in order, and each stream's sequences 1..k, rising with position."""
    got = _positions(records)
    assert got == list(range(1, len(records) + 1)), f"{what}: positions {_runs(got)}, want 1..n"
    streams: dict[str, list[int | None]] = {}
    for record in records:
        if record.stream is not None:
            streams.setdefault(record.stream, []).append(record.sequence)
    for stream, sequences in streams.items():
        want = list(range(1, len(sequences) + 1))
        assert sequences == want, f"{what}: stream {stream!r} has sequences {sequences}"


def _runs(numbers: Sequence[int]) -> str:
    """Return ``numbers`` short: the first few and the first place they break step."""
    breaks = [i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1]
    where = f", first break after {numbers[breaks[0] - 1]}: {numbers[breaks[0]]}" if breaks else ""
    return f"{list(numbers[:5])}{'...' if len(numbers) > 5 else ''} ({len(numbers)}{where})"


async def check_event_log_numbering(harness: EventLogHarness) -> None:
    """Check positions 1, 2, 3... over the log and sequences 1, 2, 3... per stream.

    An event without a group key is in no stream, has no sequence header and no stream
    read finds it; the log writes the sequence header itself, whatever the envelope had;
    an empty append uses no position.
    """
    async with harness.open(LOG_CODEC) as log:
        empty = await log.append([])
        assert list(empty) == [], f"an empty append returned {empty!r}"
        last = await log.last_position()
        assert last == 0, f"last_position of an empty log is {last}, want 0"
        records = [*await log.append([_event(1, "a"), _event(2, "b"), _event(3, "a")])]
        records += await log.append([_event(4, "a", **{SEQUENCE_HEADER: "99"}), _event(5)])
        want = [(1, "a", 1), (2, "b", 1), (3, "a", 2), (4, "a", 3), (5, None, None)]
        got = _numbers(records)
        assert got == want, f"append numbered (position, stream, sequence) {got}, want {want}"
        headers = [record.envelope.headers.get(SEQUENCE_HEADER) for record in records]
        assert headers == ["1", "1", "2", "3", None], f"sequence headers are {headers}"
        last = await log.last_position()
        assert last == 5, f"last_position is {last} after 5 events"
        nowhere = await log.read_stream("")
        assert list(nowhere) == [], f"read_stream('') found {_positions(nowhere)}"


async def check_event_log_round_trip(harness: EventLogHarness) -> None:
    """Check that reads return what append returned: the envelope, headers, UTC time."""
    sent = [
        _event(1, "a", trace="t-1", tenant='Zoë "the" 🦊'),
        Envelope(Probe("x" * 10_000 + " ✓\n\t\\", 7), idempotency_key="k-1", attempt=3),
    ]
    async with harness.open(LOG_CODEC) as log:
        appended = await log.append(sent)
        for record, envelope in zip(appended, sent, strict=True):
            want = envelope
            if record.sequence is not None:
                want = envelope.replace(
                    headers={**envelope.headers, SEQUENCE_HEADER: str(record.sequence)}
                )
            assert record.envelope == want, f"append returned {record.envelope!r}, sent {want!r}"
            offset = record.recorded_at.utcoffset()
            assert offset is not None, "recorded_at is a naive datetime"
        read = await log.read()
        assert list(read) == list(appended), "read returned other records than append did"
        streamed = await log.read_stream("a")
        assert list(streamed) == [appended[0]], "read_stream returned another record"


async def check_event_log_read_paging(harness: EventLogHarness) -> None:
    """Check that read pages by position: ``from_position`` inclusive, ``limit`` caps the page."""
    async with harness.open(LOG_CODEC) as log:
        await log.append([_event(n, "s" if n % 2 else None) for n in range(1, 11)])
        cases = [
            ((4, 3), [4, 5, 6]),
            ((9,), [9, 10]),
            ((11,), []),
            ((1, 0), []),
            ((), list(range(1, 11))),
        ]
        for args, want in cases:
            got = _positions(await log.read(*args))
            assert got == want, f"read{args} returned positions {got}, want {want}"


async def check_event_log_read_stream_paging(harness: EventLogHarness) -> None:
    """Check that read_stream pages a stream by sequence, and only that stream."""
    async with harness.open(LOG_CODEC) as log:
        await log.append([_event(n, "odd" if n % 2 else "even") for n in range(1, 11)])
        # (from_sequence, limit) of the stream, and the event numbers wanted
        cases: list[tuple[str, int, int | None, list[int]]] = [
            ("odd", 1, None, [1, 3, 5, 7, 9]),
            ("even", 2, None, [4, 6, 8, 10]),
            ("odd", 2, 2, [3, 5]),
            ("odd", 1, 0, []),
            ("odd", 6, None, []),
            ("none", 1, None, []),
        ]
        for stream, start, limit, want in cases:
            call = f"read_stream({stream!r}, {start}, {limit})"
            records = await log.read_stream(stream, start, limit)
            got = [_number(record) for record in records]
            assert got == want, f"{call} returned events {got}, want {want}"
            sequences = [record.sequence for record in records]
            want_sequences = list(range(start, start + len(records)))
            assert sequences == want_sequences, f"{call} returned sequences {sequences}"


def _number(record: LogRecord) -> int:
    message = record.envelope.message
    assert isinstance(message, Probe), f"the log returned {message!r}, not what was appended"
    return message.number


async def check_event_log_append_only(harness: EventLogHarness) -> None:
    """Check that records never change: later appends leave them, and no method removes them."""
    async with harness.open(LOG_CODEC) as log:
        first = await log.append([_event(n, "a") for n in range(3)])
        for n in range(3):
            await log.append([_event(10 + n, "a"), _event(20 + n)])
        again = await log.read(1, 3)
        assert list(again) == list(first), "later appends changed earlier records"
        methods = {name for name, _ in inspect.getmembers(type(log)) if not name.startswith("_")}
        mutators = sorted(name for name in methods if name.startswith(_MUTATORS))
        assert not mutators, f"an append-only log has methods that change records: {mutators}"


async def check_event_log_commands_refused(harness: EventLogHarness) -> None:
    """Check that a command in a batch refuses the batch: MessageKindError, nothing kept."""
    async with harness.open(LOG_CODEC) as log:
        try:
            await log.append([_event(1, "a"), Envelope(_Order("x"))])
        except MessageKindError:
            pass
        else:
            raise AssertionError("appending a command did not raise MessageKindError")
        await _untouched(log, "a refused command")


async def check_event_log_unencodable_refused(harness: EventLogHarness) -> None:
    """Check that an event the codec cannot encode refuses its batch: EncodeError, nothing kept."""
    async with harness.open(LOG_CODEC) as log:
        try:
            await log.append([_event(1, "a"), Envelope(_Unencodable(object()), group_key="a")])
        except EncodeError:
            pass
        else:
            raise AssertionError("appending an unencodable event did not raise EncodeError")
        await _untouched(log, "an unencodable event")


async def _untouched(log: EventLog, after: str) -> None:
    kept = await log.read()
    assert list(kept) == [], f"after {after} the log holds positions {_positions(kept)}"
    (record,) = await log.append([_event(2, "a")])
    got = (record.position, record.sequence)
    assert got == (1, 1), f"after {after} the next event got (position, sequence) {got}"


async def check_event_log_concurrent_appends(harness: EventLogHarness) -> None:
    """Check positions without gaps or twins under concurrent appends (two log objects).

    Tasks append batches of one to three events on a few streams while a reader reads
    from the start: every read is gapless (a reader that sees a position sees all before
    it), each batch's positions are consecutive, and at the end every event is there
    once with its streams numbered 1, 2, 3...
    """
    rng = random.Random(8)
    sent: list[str] = []
    batches = [
        [
            [_event(task * 100 + n, rng.choice("abc")) for _ in range(rng.randint(1, 3))]
            for n in range(5)
        ]
        for task in range(harness.concurrency)
    ]
    async with AsyncExitStack() as stack:
        logs = [await stack.enter_async_context(harness.open(LOG_CODEC)) for _ in range(2)]
        done = anyio.Event()
        split: list[list[int]] = []
        seen: list[Sequence[LogRecord]] = []

        async def appender(task: int) -> None:
            for batch in batches[task]:
                sent.extend(envelope.message_id for envelope in batch)
                returned = _positions(await logs[task % 2].append(batch))
                if returned != list(range(returned[0], returned[0] + len(batch))):
                    split.append(returned)

        async def reader() -> None:
            while not done.is_set():
                seen.append(await logs[1].read(1, 10_000))
                await anyio.lowlevel.checkpoint()  # let the appenders on

        async with anyio.create_task_group() as readers:
            readers.start_soon(reader)
            async with anyio.create_task_group() as appenders:
                for task in range(harness.concurrency):
                    appenders.start_soon(appender, task)
            done.set()
        # Failures are raised here, not in the tasks: a task group would wrap them.
        assert not split, f"batches took positions {split[:3]}, not consecutive"
        for read in seen:
            _gapless(read, "a read during the appends")
        records = await logs[0].read(1, 10_000)
        _gapless(records, "after the appends")
        got = sorted(record.envelope.message_id for record in records)
        assert got == sorted(sent), f"{len(sent)} events appended, {len(got)} read back"
        last = await logs[1].last_position()
        assert last == len(sent), f"last_position is {last} after {len(sent)} events"


async def check_event_log_checkpoints(harness: EventLogHarness) -> None:
    """Check the log's checkpoints: None until saved, then the last saved, None after reset."""
    async with harness.open(LOG_CODEC) as log:
        checkpoints = log.checkpoints
        first = await checkpoints.load("projection")
        assert first is None, f"load of a name never saved returned {first!r}"
        await checkpoints.save("projection", 3)
        await checkpoints.save("projection", 7)
        await checkpoints.save("other", 1)
        got = await checkpoints.load("projection")
        assert got == 7, f"load returned {got!r} after saving 3 then 7"
        await checkpoints.reset("projection")
        got = await checkpoints.load("projection")
        assert got is None, f"load after reset returned {got!r}"
        other = await checkpoints.load("other")
        assert other == 1, f"reset of one name changed another's: {other!r}"
        await checkpoints.reset("never-saved")


EVENT_LOG_CHECKS: tuple[EventLogCheck, ...] = (
    check_event_log_numbering,
    check_event_log_round_trip,
    check_event_log_read_paging,
    check_event_log_read_stream_paging,
    check_event_log_append_only,
    check_event_log_commands_refused,
    check_event_log_unencodable_refused,
    check_event_log_concurrent_appends,
    check_event_log_checkpoints,
)
"""Every event log check, the basics first."""


async def check_event_log(make: Callable[[], EventLogHarness]) -> list[str]:
    """Run every check in :data:`EVENT_LOG_CHECKS`, each on ``make()``'s new harness.

    Returns the names of the checks that were not applicable (none so far).

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    return await run_checks(EVENT_LOG_CHECKS, make)
