"""DynamoDB stores: idempotency records and dead letters where there is no SQL database.

Install with ``pip install 'anyio-messagebus[dynamodb]'`` (aiobotocore). asyncio only:
aiobotocore needs an asyncio event loop, so every call under trio raises
:class:`~messagebus.UnsupportedBackendError`.

- :class:`DynamoDBIdempotencyStore`: the :class:`~messagebus.extension.IdempotencyStore`
  contract with one conditional PutItem per claim, a payload fingerprint, a lease, the
  stored result, and an ``expiration`` attribute for DynamoDB's own Time to Live.
- :class:`DynamoDBDeadLetterStore`: the :class:`~messagebus.extension.DeadLetterStore`
  contract.

Each store makes its own client, or borrows an open one (``client=``). Its
``create_table()`` makes its table for development and tests; for infrastructure as
code, :data:`IDEMPOTENCY_TABLE` and :data:`DEAD_LETTER_TABLE` give the layouts (a
string partition key, on-demand billing, Time to Live for the idempotency table), and
the README lists the IAM actions. Vendor errors are translated at the boundary: see
:class:`~messagebus.StoreError` and :class:`~messagebus.StoreUnavailableError`.
"""

from messagebus.dynamodb._dead_letters import DynamoDBDeadLetterStore
from messagebus.dynamodb._idempotency import DynamoDBIdempotencyStore
from messagebus.dynamodb._tables import DEAD_LETTER_TABLE, IDEMPOTENCY_TABLE, TableLayout

__all__ = [
    "DEAD_LETTER_TABLE",
    "IDEMPOTENCY_TABLE",
    "DynamoDBDeadLetterStore",
    "DynamoDBIdempotencyStore",
    "TableLayout",
]
