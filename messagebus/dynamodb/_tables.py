"""The two tables' layouts, and making them for development and tests.

Both tables have a single string partition key and no sort key, and bill on demand.
For infrastructure as code, make them as :data:`IDEMPOTENCY_TABLE` and
:data:`DEAD_LETTER_TABLE` describe (the README lists the same): nothing else is needed,
no index, no stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from botocore.exceptions import ClientError

from messagebus.dynamodb._errors import error_code, translated

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["DEAD_LETTER_TABLE", "IDEMPOTENCY_TABLE", "TableLayout", "create_table"]

# How often, and how many times, create_table asks whether a new table is ACTIVE:
# DynamoDB takes a few seconds; emulators answer ACTIVE at once.
WAIT_DELAY = 1
WAIT_ATTEMPTS = 120


@attrs.frozen
class TableLayout:
    """What a store needs of its table.

    Attributes:
        partition_key: the name of the string (``S``) partition key; no sort key.
        ttl_attribute: the number attribute (epoch seconds) DynamoDB's Time to Live
            deletes expired items by, or None if the table needs none.
    """

    partition_key: str
    ttl_attribute: str | None = None


IDEMPOTENCY_TABLE = TableLayout(partition_key="pk", ttl_attribute="expiration")
"""The idempotency table: partition key ``pk`` (S); Time to Live on ``expiration``."""

DEAD_LETTER_TABLE = TableLayout(partition_key="id")
"""The dead-letter table: partition key ``id`` (S); no Time to Live (kept until purged)."""


async def create_table(client: DynamoDBClient, table: str, layout: TableLayout) -> bool:
    """Make ``table`` with ``layout`` unless it exists; wait until it is ACTIVE.

    On-demand billing. Turns Time to Live on if the layout has a TTL attribute and the
    table does not have it on yet. Returns whether the table was created (False: it was
    there already, made by this function, by infrastructure code, or by a concurrent
    caller).

    Raises:
        StoreError: DynamoDB refused (permissions, a table of that name with another
            key); StoreUnavailableError: it could not be reached.
    """
    key = layout.partition_key
    created = True
    with translated(table):
        try:
            await client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as error:
            if error_code(error) != "ResourceInUseException":
                raise
            created = False
        waiter = client.get_waiter("table_exists")
        await waiter.wait(
            TableName=table, WaiterConfig={"Delay": WAIT_DELAY, "MaxAttempts": WAIT_ATTEMPTS}
        )
        if layout.ttl_attribute is not None:
            described = await client.describe_time_to_live(TableName=table)
            status = described.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
            # Turning it on twice is an error in DynamoDB; ENABLING counts as on.
            if status not in ("ENABLED", "ENABLING"):
                await client.update_time_to_live(
                    TableName=table,
                    TimeToLiveSpecification={
                        "Enabled": True,
                        "AttributeName": layout.ttl_attribute,
                    },
                )
    return created
