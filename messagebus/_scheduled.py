"""The bus's ``schedule`` and ``cancel_scheduled``: in the caller's unit of work, or their own.

The rules of scheduled messages are in :mod:`messagebus._schedule`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from messagebus._messages import Message
from messagebus._schedule import ScheduleId, Scheduling, require
from messagebus._unit_of_work import current_unit_of_work

if TYPE_CHECKING:
    from messagebus._unit_of_work import UnitOfWork

__all__ = ["cancel_scheduled", "schedule"]


async def schedule(
    scheduling: Scheduling | None,
    open_unit: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    message: Message,
    *,
    at: datetime | None,
    delay: timedelta | float | None,
    idempotency_key: str | None,
    group_key: str | None,
    headers: Mapping[str, str] | None,
) -> ScheduleId:
    """Schedule ``message`` in the current unit of work, or in one of its own from ``open_unit``.

    Raises:
        ConfigurationError: the bus cannot schedule (no outbox), or see
            :meth:`Scheduling.headers`.
    """
    unit = _unit_on(require(scheduling).store)
    if unit is not None:
        return unit.schedule(
            message,
            at=at,
            delay=delay,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )
    async with open_unit() as unit:
        return unit.schedule(
            message,
            at=at,
            delay=delay,
            idempotency_key=idempotency_key,
            group_key=group_key,
            headers=headers,
        )


async def cancel_scheduled(scheduling: Scheduling | None, schedule_id: str) -> bool:
    """Cancel the scheduled message ``schedule_id`` if not delivered yet; see the bus."""
    store = require(scheduling).store
    unit = _unit_on(store)
    # In a unit of work on this outbox, cancel in its transaction (on SQLite, a call of
    # its own would wait for the unit's lock, held by this very task).
    return await store.cancel(schedule_id, None if unit is None else unit.transaction)


def _unit_on(store: object) -> UnitOfWork | None:
    """Return the unit of work open in this task if it is on ``store`` (this bus's outbox)."""
    unit = current_unit_of_work()
    return unit if unit is not None and unit.store is store else None
