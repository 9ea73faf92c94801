"""Dead letters in a DynamoDB table, for services without a SQL database.

Item layout (partition key ``id``, no sort key; see :data:`DEAD_LETTER_TABLE`)::

    id, handler, message_type, message_id, correlation_id, error_type, error_message   S
    attempts                                                                           N
    first_failed_at, last_failed_at   N   microseconds since the Unix epoch (exact)
    body, traceback                   B   zlib-compressed UTF-8 text

The body and traceback are compressed because DynamoDB caps an item at 400 KB and
envelopes are JSON, which compresses several times over; a record still over the cap is
refused (:class:`~messagebus.StoreError`), never cut.

:meth:`~DynamoDBDeadLetterStore.add` is a PutItem (a record with the same id replaced
in one step), :meth:`~DynamoDBDeadLetterStore.get` a consistent GetItem,
:meth:`~DynamoDBDeadLetterStore.delete` a DeleteItem. :meth:`~DynamoDBDeadLetterStore.list`
and :meth:`~DynamoDBDeadLetterStore.purge` scan the table with the filters as a
FilterExpression (a dead-letter table is small: a cost proportional to its size is
fine for an operator's tool; there is no index to keep); ``list`` sorts in the process.
``purge`` deletes each match on the condition that it still matches, so a record
replaced meanwhile by one outside the filters is kept, and not counted.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from messagebus._errors import InvalidArgumentError, StoreError
from messagebus.dead_letters._record import DeadLetter
from messagebus.dynamodb._errors import condition_failed, translated
from messagebus.dynamodb._store import DynamoDBStore
from messagebus.dynamodb._tables import DEAD_LETTER_TABLE

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["DynamoDBDeadLetterStore"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TEXT = ("handler", "message_type", "message_id", "correlation_id", "error_type", "error_message")
# DynamoDB's item size limit, and the most a number attribute counts towards it.
MAX_ITEM_BYTES = 400 * 1024
_NUMBER_BYTES = 21
# Deletes a purge keeps in flight at once.
_PURGE_CONCURRENCY = 16


def _micros(moment: datetime) -> dict[str, str]:
    if moment.tzinfo is None:
        raise InvalidArgumentError(f"datetimes must be aware (with a time zone): {moment}")
    return {"N": str((moment - _EPOCH) // _MICROSECOND)}


def _size(item: Mapping[str, Any]) -> int:
    """Return the item's size as DynamoDB counts it, or a little more (numbers at most)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        if "S" in value:
            size += len(value["S"].encode())
        elif "B" in value:
            size += len(value["B"])
        else:
            size += _NUMBER_BYTES
    return size


def _item(letter: DeadLetter) -> dict[str, Any]:
    item: dict[str, Any] = {"id": {"S": letter.id}}
    item.update({name: {"S": getattr(letter, name)} for name in _TEXT})
    item["attempts"] = {"N": str(letter.attempts)}
    item["first_failed_at"] = _micros(letter.first_failed_at)
    item["last_failed_at"] = _micros(letter.last_failed_at)
    item["body"] = {"B": zlib.compress(letter.body.encode())}
    item["traceback"] = {"B": zlib.compress(letter.traceback.encode())}
    return item


def _letter(item: Mapping[str, Any]) -> DeadLetter:
    def moment(name: str) -> datetime:
        return _EPOCH + int(item[name]["N"]) * _MICROSECOND

    def text(name: str) -> str:
        return zlib.decompress(item[name]["B"]).decode()

    return DeadLetter(
        id=item["id"]["S"],
        handler=item["handler"]["S"],
        message_type=item["message_type"]["S"],
        message_id=item["message_id"]["S"],
        correlation_id=item["correlation_id"]["S"],
        body=text("body"),
        error_type=item["error_type"]["S"],
        error_message=item["error_message"]["S"],
        traceback=text("traceback"),
        attempts=int(item["attempts"]["N"]),
        first_failed_at=moment("first_failed_at"),
        last_failed_at=moment("last_failed_at"),
    )


def _filters(
    message_type: str | None,
    handler: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    """Return the FilterExpression arguments for the filters given ({} for none)."""
    terms: list[str] = []
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    for name, op, value in (
        ("message_type", "=", None if message_type is None else {"S": message_type}),
        ("handler", "=", None if handler is None else {"S": handler}),
        ("last_failed_at", ">=", None if since is None else _micros(since)),
        ("last_failed_at", "<", None if until is None else _micros(until)),
    ):
        if value is not None:
            placeholder = f":v{len(values)}"
            terms.append(f"#{name} {op} {placeholder}")
            names[f"#{name}"] = name
            values[placeholder] = value
    if not terms:
        return {}
    return {
        "FilterExpression": " AND ".join(terms),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


class DynamoDBDeadLetterStore(DynamoDBStore):
    """Keeps dead letters in a DynamoDB table; see the module docstring for how.

    Make the table with :meth:`create_table` (development, tests) or with infrastructure
    code (see :data:`~messagebus.dynamodb.DEAD_LETTER_TABLE`; IAM actions
    ``dynamodb:PutItem``, ``GetItem``, ``DeleteItem`` and ``Scan``).

    Args: as :class:`~messagebus.dynamodb.DynamoDBIdempotencyStore`'s, without ``clock``;
    ``table`` defaults to ``"messagebus_dead_letters"``.
    """

    _layout = DEAD_LETTER_TABLE

    def __init__(
        self,
        table: str = "messagebus_dead_letters",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        session: AioSession | None = None,
        config: AioConfig | None = None,
        client: DynamoDBClient | None = None,
    ) -> None:
        super().__init__(
            table,
            region=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            session=session,
            config=config,
            client=client,
        )

    async def add(self, dead_letter: DeadLetter) -> None:
        """Keep ``dead_letter``, replacing any record with the same id in one step."""
        item = _item(dead_letter)
        if (size := _size(item)) > MAX_ITEM_BYTES:
            # Refused here, clearly, rather than by DynamoDB (or not at all by an emulator).
            raise StoreError(
                f"DynamoDB table {self._table!r}: dead letter {dead_letter.id!r} is "
                f"{size} bytes with its body and traceback compressed, over DynamoDB's "
                f"{MAX_ITEM_BYTES}-byte item limit; it was not kept"
            )
        client = await self._dynamodb()
        with translated(self._table):
            await client.put_item(TableName=self._table, Item=item)

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        """Return the record with this id, or None."""
        client = await self._dynamodb()
        with translated(self._table):
            answer = await client.get_item(
                TableName=self._table, Key={"id": {"S": dead_letter_id}}, ConsistentRead=True
            )
        item = answer.get("Item")
        return None if item is None else _letter(item)

    async def list(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Sequence[DeadLetter]:
        """Return records matching every filter given, oldest last failure first.

        ``since`` and ``until`` bound ``last_failed_at`` (inclusive, exclusive). Scans
        the whole table, then sorts.
        """
        if limit is not None and limit < 0:
            raise InvalidArgumentError(f"limit must be >= 0, not {limit}")
        filters = _filters(message_type, handler, since, until)
        found = [_letter(item) for item in await self._scan(filters)]
        found.sort(key=lambda letter: (letter.last_failed_at, letter.id))
        return tuple(found if limit is None else found[:limit])

    async def delete(self, dead_letter_id: str) -> bool:
        """Remove the record with this id; return whether there was one."""
        client = await self._dynamodb()
        with translated(self._table):
            answer = await client.delete_item(
                TableName=self._table, Key={"id": {"S": dead_letter_id}}, ReturnValues="ALL_OLD"
            )
        return "Attributes" in answer

    async def purge(
        self,
        *,
        message_type: str | None = None,
        handler: str | None = None,
        until: datetime | None = None,
    ) -> int:
        """Remove every record matching the filters given; return how many went."""
        filters = _filters(message_type, handler, None, until)
        ids = [item["id"] for item in await self._scan(filters, projection="id")]
        client = await self._dynamodb()
        # Deleted only if it still exists and still matches: a record replaced meanwhile
        # by one outside the filters stays, and is not counted.
        terms = ["attribute_exists(#id)", *filters.get("FilterExpression", "").split(" AND ")]
        condition: dict[str, Any] = {
            "ConditionExpression": " AND ".join(term for term in terms if term),
            "ExpressionAttributeNames": {
                "#id": "id",
                **filters.get("ExpressionAttributeNames", {}),
            },
        }
        if "ExpressionAttributeValues" in filters:
            condition["ExpressionAttributeValues"] = filters["ExpressionAttributeValues"]
        deleted = 0
        failures: list[StoreError] = []
        limiter = anyio.CapacityLimiter(_PURGE_CONCURRENCY)

        async def remove(key: dict[str, Any], scope: anyio.CancelScope) -> None:
            nonlocal deleted
            async with limiter:
                try:
                    with translated(self._table):
                        await client.delete_item(
                            TableName=self._table, Key={"id": key}, **condition
                        )
                except StoreError as error:
                    cause = error.__cause__
                    if isinstance(cause, ClientError) and condition_failed(cause):
                        return  # gone, or changed meanwhile
                    # The caller gets the error itself, not a task group's ExceptionGroup.
                    failures.append(error)
                    scope.cancel()
                    return
            deleted += 1

        async with anyio.create_task_group() as tasks:
            for key in ids:
                tasks.start_soon(remove, key, tasks.cancel_scope)
        if failures:
            raise failures[0]
        return deleted

    async def _scan(
        self, filters: Mapping[str, Any], *, projection: str | None = None
    ) -> Sequence[dict[str, Any]]:
        client = await self._dynamodb()
        arguments: dict[str, Any] = {"TableName": self._table, "ConsistentRead": True, **filters}
        if projection is not None:
            arguments["ProjectionExpression"] = f"#{projection}"
            names = dict(arguments.get("ExpressionAttributeNames", {}))
            names[f"#{projection}"] = projection
            arguments["ExpressionAttributeNames"] = names
        items: list[dict[str, Any]] = []
        with translated(self._table):
            async for page in client.get_paginator("scan").paginate(**arguments):
                items.extend(page.get("Items", []))
        return items
