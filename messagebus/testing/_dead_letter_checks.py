"""The dead-letter store conformance checks: one coroutine per part of the contract.

Each ``check_dead_letters_*`` takes a :class:`DeadLetterHarness`, opens stores with it
and raises :class:`AssertionError` saying what went wrong. Nothing here imports a test
framework; see :mod:`messagebus.testing` for running them from pytest, or run them all
with :func:`check_dead_letter_store`. The contract is
:class:`~messagebus.dead_letters.DeadLetterStore`'s docstring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

import attrs

from messagebus.dead_letters._record import DeadLetter
from messagebus.dead_letters._store import DeadLetterStore
from messagebus.testing._store_support import T0, at_once, run_checks

__all__ = [
    "DEAD_LETTER_CHECKS",
    "DeadLetterCheck",
    "DeadLetterHarness",
    "check_dead_letter_store",
    "check_dead_letters_concurrent_writers",
    "check_dead_letters_delete",
    "check_dead_letters_list_filters",
    "check_dead_letters_list_order",
    "check_dead_letters_purge",
    "check_dead_letters_replace",
    "check_dead_letters_round_trip",
]

_START = datetime.fromtimestamp(T0, UTC)


@attrs.frozen
class DeadLetterHarness:
    """How the checks make the dead-letter store under test.

    Attributes:
        open: makes a store, as an async context manager. Every call within one check
            must give a store on the same records: a new object on the same database (a
            second one stands for another process), or the same object for a store that
            keeps its records in itself (in memory). Use a new harness, on an empty
            store, for each check.
        concurrency: how many writers the concurrency check runs at once.
    """

    open: Callable[[], AbstractAsyncContextManager[DeadLetterStore]]
    concurrency: int = 20


DeadLetterCheck = Callable[[DeadLetterHarness], Awaitable[None]]
"""One dead-letter store check."""


def _letter(
    n: int, *, handler: str = "notify", message_type: str = "blog.post", **fields: object
) -> DeadLetter:
    """Return dead letter ``n``: its id ``dl-<n>``, its last failure ``n`` minutes after T0."""
    values: dict[str, object] = {
        "id": f"dl-{n:04d}",
        "handler": handler,
        "message_type": message_type,
        "message_id": f"m-{n}",
        "correlation_id": f"c-{n}",
        "body": f'{{"n": {n}}}',
        "error_type": "builtins.ValueError",
        "error_message": f"failure {n}",
        "traceback": f"Traceback (most recent call last):\nValueError: failure {n}\n",
        "attempts": 3,
        "first_failed_at": _START,
        "last_failed_at": _START + timedelta(minutes=n),
    }
    values.update(fields)
    return DeadLetter(**values)  # type: ignore[arg-type]  # the fields of DeadLetter


def _ids(letters: Sequence[DeadLetter]) -> list[str]:
    return [dead_letter.id for dead_letter in letters]


async def check_dead_letters_round_trip(harness: DeadLetterHarness) -> None:
    """Check that a record comes back equal: any text, datetimes to the microsecond.

    ``get`` of an unknown id is None. Times come back aware: a time added in UTC comes
    back in UTC, one added in another zone as the same instant.
    """
    plus_two = timezone(timedelta(hours=2))
    letters = [
        _letter(1),
        _letter(
            2,
            body='Zoë "the" 🦊 — 行\n\t\\ \' \r\n' * 3000,
            error_message="",
            traceback="x" * 100_000,
            first_failed_at=_START + timedelta(microseconds=1),
            last_failed_at=_START + timedelta(days=400, microseconds=999_999),
        ),
        _letter(3, last_failed_at=datetime(2024, 5, 1, 14, 0, 0, 123_456, tzinfo=plus_two)),
    ]
    async with harness.open() as store:
        for dead_letter in letters:
            await store.add(dead_letter)
        for dead_letter in letters:
            got = await store.get(dead_letter.id)
            assert got == dead_letter, (
                f"get({dead_letter.id!r}) returned {got!r}, not what was added"
            )
            for name in ("first_failed_at", "last_failed_at"):
                moment, added = getattr(got, name), getattr(dead_letter, name)
                assert moment.tzinfo is not None, f"{name} came back naive"
                if added.utcoffset() == timedelta(0):
                    offset = moment.utcoffset()
                    assert offset == timedelta(0), f"{name} added in UTC came back at {offset}"
        missing = await store.get("dl-unknown")
        assert missing is None, f"get of an unknown id returned {missing!r}"


async def check_dead_letters_replace(harness: DeadLetterHarness) -> None:
    """Check that adding an existing id replaces the record in one step: one record, the new one."""
    async with harness.open() as store:
        await store.add(_letter(1))
        replacement = _letter(1, handler="other", attempts=9, error_message="again")
        await store.add(replacement)
        got = await store.get(replacement.id)
        assert got == replacement, f"after a replace get returned {got!r}"
        listed = await store.list()
        assert list(listed) == [replacement], f"after a replace list returned {_ids(listed)}"


async def check_dead_letters_list_order(harness: DeadLetterHarness) -> None:
    """Check that list returns the oldest last failure first, and ``limit`` takes the oldest."""
    order = [5, 1, 4, 2, 3]
    async with harness.open() as store:
        for n in order:
            await store.add(_letter(n))
        want = [_letter(n).id for n in sorted(order)]
        listed = _ids(await store.list())
        assert listed == want, f"list returned {listed}, want oldest first {want}"
        limited = _ids(await store.list(limit=2))
        assert limited == want[:2], f"list(limit=2) returned {limited}, want {want[:2]}"
        nothing = _ids(await store.list(limit=0))
        assert nothing == [], f"list(limit=0) returned {nothing}"


async def check_dead_letters_list_filters(harness: DeadLetterHarness) -> None:
    """Check every filter of list, alone and together (``since`` inclusive, ``until`` exclusive)."""
    letters = [
        _letter(1, handler="a", message_type="x"),
        _letter(2, handler="b", message_type="x"),
        _letter(3, handler="a", message_type="y"),
        _letter(4, handler="b", message_type="y"),
    ]
    at = {n: _START + timedelta(minutes=n) for n in range(1, 5)}
    cases: list[tuple[str, dict[str, object], list[int]]] = [
        ("handler='a'", {"handler": "a"}, [1, 3]),
        ("message_type='y'", {"message_type": "y"}, [3, 4]),
        ("since=the 2nd's time", {"since": at[2]}, [2, 3, 4]),
        ("until=the 3rd's time", {"until": at[3]}, [1, 2]),
        ("since=2nd, until=4th", {"since": at[2], "until": at[4]}, [2, 3]),
        ("handler='b', message_type='y'", {"handler": "b", "message_type": "y"}, [4]),
        ("handler='b', since=3rd, limit=1", {"handler": "b", "since": at[3], "limit": 1}, [4]),
        ("handler='nobody'", {"handler": "nobody"}, []),
    ]
    async with harness.open() as store:
        for dead_letter in letters:
            await store.add(dead_letter)
        for name, filters, numbers in cases:
            got = _ids(await store.list(**filters))  # type: ignore[arg-type]  # the filters
            want = [_letter(n).id for n in numbers]
            assert got == want, f"list({name}) returned {got}, want {want}"


async def check_dead_letters_delete(harness: DeadLetterHarness) -> None:
    """Check that delete removes one record, says whether there was one, and leaves the rest."""
    async with harness.open() as store:
        for n in range(1, 4):
            await store.add(_letter(n))
        first = await store.delete(_letter(2).id)
        assert first is True, f"delete of a stored id returned {first!r}, want True"
        again = await store.delete(_letter(2).id)
        assert again is False, f"a second delete of one id returned {again!r}, want False"
        unknown = await store.delete("dl-unknown")
        assert unknown is False, f"delete of an unknown id returned {unknown!r}, want False"
        gone = await store.get(_letter(2).id)
        assert gone is None, "get found the deleted record"
        rest = _ids(await store.list())
        assert rest == [_letter(1).id, _letter(3).id], f"after the delete list returned {rest}"


async def check_dead_letters_purge(harness: DeadLetterHarness) -> None:
    """Check that purge removes what matches every filter given, counts it, and keeps the rest."""
    async with harness.open() as store:
        for n in range(1, 7):
            await store.add(
                _letter(n, handler="a" if n % 2 else "b", message_type="x" if n < 4 else "y")
            )
        steps: list[tuple[str, dict[str, object], int, list[int]]] = [
            (
                "handler='a', until=the 5th's time",
                {"handler": "a", "until": _START + timedelta(minutes=5)},
                2,
                [2, 4, 5, 6],
            ),
            ("message_type='y'", {"message_type": "y"}, 3, [2]),
            ("handler='nobody'", {"handler": "nobody"}, 0, [2]),
            ("no filter", {}, 1, []),
        ]
        for name, filters, count, left in steps:
            purged = await store.purge(**filters)  # type: ignore[arg-type]  # the filters
            assert purged == count, f"purge({name}) returned {purged}, want {count}"
            rest = _ids(await store.list())
            want = [_letter(n).id for n in left]
            assert rest == want, f"after purge({name}) list returned {rest}, want {want}"


async def check_dead_letters_concurrent_writers(harness: DeadLetterHarness) -> None:
    """Check that many writers at once (two store objects) lose nothing and mix no records.

    Distinct ids are all kept; writers replacing one id at once leave exactly one record,
    equal to one of the versions written.
    """
    count = harness.concurrency
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(harness.open()) for _ in range(2)]
        distinct = [_letter(n) for n in range(count)]
        await at_once([partial(stores[n % 2].add, distinct[n]) for n in range(count)])
        listed = _ids(await stores[0].list())
        want = _ids(distinct)
        assert listed == want, (
            f"{count} concurrent adds left {len(listed)} records; missing "
            f"{sorted(set(want) - set(listed))}"
        )
        versions = [_letter(999, handler=f"writer-{n}", attempts=n + 1) for n in range(count)]
        await at_once([partial(stores[n % 2].add, versions[n]) for n in range(count)])
        got = await stores[1].get(versions[0].id)
        assert got in versions, f"concurrent replaces of one id left {got!r}, none of the versions"
        same = [
            dead_letter
            for dead_letter in await stores[1].list()
            if dead_letter.id == versions[0].id
        ]
        assert len(same) == 1, f"concurrent replaces of one id left {len(same)} records"


DEAD_LETTER_CHECKS: tuple[DeadLetterCheck, ...] = (
    check_dead_letters_round_trip,
    check_dead_letters_replace,
    check_dead_letters_list_order,
    check_dead_letters_list_filters,
    check_dead_letters_delete,
    check_dead_letters_purge,
    check_dead_letters_concurrent_writers,
)
"""Every dead-letter store check, the basics first."""


async def check_dead_letter_store(make: Callable[[], DeadLetterHarness]) -> list[str]:
    """Run every check in :data:`DEAD_LETTER_CHECKS`, each on ``make()``'s new harness.

    Returns the names of the checks that were not applicable (none so far).

    Raises:
        AssertionError: the first check that failed, its name first in the message.
    """
    return await run_checks(DEAD_LETTER_CHECKS, make)
