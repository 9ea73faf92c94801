"""Idempotency records in a DynamoDB table, shared by every process and Lambda that uses it.

Item layout (partition key ``pk``, no sort key; see :data:`IDEMPOTENCY_TABLE`)::

    pk           S   JSON array [scope, key]: unambiguous whatever the two contain
    fingerprint  S   the payload's fingerprint, as the first claim gave it
    token        S   the current claim's token (a UUIDv7)
    result       S   the handler's result; absent while in progress
    expires_at   N   the lease's end while in progress, the TTL's end once completed
                     (seconds since the Unix epoch, with the fraction)
    expiration   N   expires_at rounded up to whole seconds: DynamoDB's Time to Live
                     attribute, so that DynamoDB deletes expired items by itself

The contract (see :class:`~messagebus.extension.IdempotencyStore`):

- :meth:`~DynamoDBIdempotencyStore.claim` is one conditional PutItem,
  ``attribute_not_exists(pk) OR expires_at <= :now``. DynamoDB applies conditional
  writes to one item one at a time, so of many concurrent claims of a key exactly one
  writes its item; each other one fails its condition and gets the live item back in the
  same answer (``ReturnValuesOnConditionCheckFailure=ALL_OLD``): no second read, no race
  between reading and writing. A failed condition is the answer, not an error.
- :meth:`~DynamoDBIdempotencyStore.complete` is an UpdateItem and
  :meth:`~DynamoDBIdempotencyStore.release` a DeleteItem, both on the condition
  ``token = :token``: a holder whose lease lapsed and whose key was claimed again changes
  nothing.
- Expiry: a record whose ``expires_at`` has passed counts as absent for every call,
  whether or not DynamoDB's Time to Live has deleted it yet (it deletes expired items
  within days, not at once). :meth:`~DynamoDBIdempotencyStore.cleanup` is for tables
  without Time to Live: it scans the table (every item read costs), deleting expired
  records, each on the condition that it is still expired.

Time: DynamoDB has no server clock a condition can use, so "now" is this process's
clock (``time.time``, or the ``clock`` given). Processes sharing the table must keep
their clocks in step (NTP); keep leases well above the clock skew between them.

Limits: a partition key holds at most 2048 bytes and an item 400 KB, so a very long key
or a result of about 400 KB is refused by DynamoDB
(:class:`~messagebus.StoreError`). There is no inbox mode: DynamoDB writes cannot join a
SQL transaction. asyncio only (aiobotocore); see :mod:`messagebus.dynamodb`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from messagebus._errors import InvalidArgumentError, StoreError
from messagebus._ids import new_message_id
from messagebus.dynamodb._errors import condition_failed, translated
from messagebus.dynamodb._store import DynamoDBStore
from messagebus.dynamodb._tables import IDEMPOTENCY_TABLE
from messagebus.idempotency._store import Claimed, ClaimOutcome, live_outcome

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["DynamoDBIdempotencyStore"]

# Attribute names go through ExpressionAttributeNames: several are DynamoDB reserved
# words (TOKEN, RESULT), and this way none can ever clash.
_NAMES = {
    "#pk": "pk",
    "#fingerprint": "fingerprint",
    "#token": "token",
    "#result": "result",
    "#expires_at": "expires_at",
    "#expiration": "expiration",
}
_FREE = "attribute_not_exists(#pk) OR #expires_at <= :now"


def _number(seconds: float) -> dict[str, str]:
    # repr() of a float is the shortest text that reads back as the same float, and
    # DynamoDB compares numbers as decimals: a time written is the time compared.
    return {"N": repr(float(seconds))}


def _names(*names: str) -> dict[str, str]:
    return {name: _NAMES[name] for name in names}


def _seconds(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be a finite number of seconds >= 0: {value}")
    return value


class DynamoDBIdempotencyStore(DynamoDBStore):
    """Keeps idempotency records in a DynamoDB table; see the module docstring for how.

    Make the table with :meth:`create_table` (development, tests) or with infrastructure
    code (see :data:`~messagebus.dynamodb.IDEMPOTENCY_TABLE`; IAM actions
    ``dynamodb:PutItem``, ``UpdateItem``, ``DeleteItem``, and ``Scan`` for
    :meth:`cleanup`).

    Args:
        table: the table's name.
        region: the AWS region; by default botocore's (``AWS_REGION`` and the rest).
        endpoint_url: a DynamoDB-compatible endpoint instead of AWS's.
        aws_access_key_id, aws_secret_access_key, aws_session_token: credentials; by
            default botocore's standard chain (environment, profile, Lambda role).
        session: the aiobotocore session to make the client with.
        config: the client config; by default three attempts in all (standard retry
            mode), 5 s to connect, 10 s to read.
        client: an open aiobotocore DynamoDB client to use (and never close) instead of
            making one; the arguments above are then unused.
        clock: seconds since the Unix epoch (``time.time``); tests pass a fake.
    """

    _layout = IDEMPOTENCY_TABLE

    def __init__(
        self,
        table: str = "messagebus_idempotency",
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        session: AioSession | None = None,
        config: AioConfig | None = None,
        client: DynamoDBClient | None = None,
        clock: Callable[[], float] = time.time,
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
        self._clock = clock

    def _key(self, scope: str, key: str) -> dict[str, Any]:
        pk = json.dumps([scope, key], ensure_ascii=False, separators=(",", ":"))
        return {"pk": {"S": pk}}

    async def claim(self, scope: str, key: str, fingerprint: str, lease: float) -> ClaimOutcome:
        """Claim ``key`` in ``scope`` for ``lease`` seconds, or report who has it.

        Raises:
            InvalidArgumentError: ``lease`` is negative or not finite.
            StoreError: DynamoDB refused the write, or its answer to a failed condition
                did not carry the live item (a server without
                ``ReturnValuesOnConditionCheckFailure``).
            StoreUnavailableError: DynamoDB could not be reached or throttled the call.
        """
        _seconds("lease", lease)
        client = await self._dynamodb()
        now = self._clock()
        expires_at = now + lease
        token = new_message_id()
        item = {
            **self._key(scope, key),
            "fingerprint": {"S": fingerprint},
            "token": {"S": token},
            "expires_at": _number(expires_at),
            "expiration": {"N": str(math.ceil(expires_at))},
        }
        with translated(self._table):
            try:
                await client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=_FREE,
                    ExpressionAttributeNames=_names("#pk", "#expires_at"),
                    ExpressionAttributeValues={":now": _number(now)},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if not condition_failed(error):
                    raise
                live = error.response.get("Item")  # with ALL_OLD: the item that failed it
                if not isinstance(live, Mapping):
                    raise StoreError(
                        f"DynamoDB table {self._table!r}: a failed claim came back without "
                        "the live item; the server must support "
                        "ReturnValuesOnConditionCheckFailure"
                    ) from error
                return _outcome(live, fingerprint)
        return Claimed(token)

    async def complete(self, scope: str, key: str, token: str, result: str, ttl: float) -> None:
        """Record the claim's result, to be returned to duplicates for ``ttl`` seconds."""
        _seconds("ttl", ttl)
        client = await self._dynamodb()
        expires_at = self._clock() + ttl
        with translated(self._table):
            try:
                await client.update_item(
                    TableName=self._table,
                    Key=self._key(scope, key),
                    UpdateExpression=(
                        "SET #result = :result, #expires_at = :expires_at, "
                        "#expiration = :expiration"
                    ),
                    ConditionExpression="#token = :token",
                    ExpressionAttributeNames=_names(
                        "#result", "#expires_at", "#expiration", "#token"
                    ),
                    ExpressionAttributeValues={
                        ":result": {"S": result},
                        ":expires_at": _number(expires_at),
                        ":expiration": {"N": str(math.ceil(expires_at))},
                        ":token": {"S": token},
                    },
                )
            except ClientError as error:
                if not condition_failed(error):  # else: the claim is no longer ours
                    raise

    async def release(self, scope: str, key: str, token: str) -> None:
        """Delete the claim (the handler failed), so that the key can be claimed again."""
        client = await self._dynamodb()
        with translated(self._table):
            try:
                await client.delete_item(
                    TableName=self._table,
                    Key=self._key(scope, key),
                    ConditionExpression="#token = :token",
                    ExpressionAttributeNames=_names("#token"),
                    ExpressionAttributeValues={":token": {"S": token}},
                )
            except ClientError as error:
                if not condition_failed(error):  # else: the claim is no longer ours
                    raise

    async def cleanup(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired records; return how many went.

        Scans the table (a cost proportional to its size): on a table with Time to Live
        on, DynamoDB deletes expired items itself and this is not needed. Each delete is
        on the condition that the record is still expired, so a key claimed again
        meanwhile is kept (and not counted). A negative ``limit`` raises
        :class:`~messagebus.InvalidArgumentError`.
        """
        if limit < 0:
            raise InvalidArgumentError(f"limit must not be negative: {limit}")
        if limit == 0:
            return 0
        client = await self._dynamodb()
        now = {":now": _number(self._clock())}
        deleted = 0
        with translated(self._table):
            pages = client.get_paginator("scan").paginate(
                TableName=self._table,
                FilterExpression="#expires_at <= :now",
                ProjectionExpression="#pk",
                ExpressionAttributeNames=_names("#pk", "#expires_at"),
                ExpressionAttributeValues=now,
                ConsistentRead=True,
            )
            async for page in pages:
                for item in page.get("Items", []):
                    try:
                        await client.delete_item(
                            TableName=self._table,
                            Key={"pk": item["pk"]},
                            ConditionExpression="#expires_at <= :now",
                            ExpressionAttributeNames=_names("#expires_at"),
                            ExpressionAttributeValues=now,
                        )
                    except ClientError as error:
                        if not condition_failed(error):  # else: claimed again meanwhile
                            raise
                        continue
                    deleted += 1
                    if deleted == limit:
                        return deleted
        return deleted


def _outcome(item: Mapping[str, Any], fingerprint: str) -> ClaimOutcome:
    """Map the live item a failed claim got back to what the claim sees."""
    result = item.get("result")
    return live_outcome(
        fingerprint,
        item["fingerprint"]["S"],
        None if result is None else result["S"],
        float(item["expires_at"]["N"]),
    )
