"""What both DynamoDB stores share: their client, opened on first use, and its lifecycle.

A store either makes its own aiobotocore client (from ``region``, ``endpoint_url``,
credentials, ``session`` and ``config``), opened on its first call or on ``async with``
and closed by :meth:`DynamoDBStore.aclose`; or borrows an open client (``client=``),
which it never closes. Borrowing one client lets several stores share its connection
pool.

aiobotocore needs an asyncio event loop: every call under another async library (trio)
raises :class:`~messagebus.UnsupportedBackendError` before doing anything.
"""

from __future__ import annotations

# asyncio only to ask whether its loop runs this task: aiobotocore needs one.
import asyncio
import contextlib
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from messagebus._errors import UnsupportedBackendError
from messagebus.dynamodb._errors import translated
from messagebus.dynamodb._tables import TableLayout, create_table

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

__all__ = ["DynamoDBStore", "require_asyncio"]


def require_asyncio(what: str) -> None:
    """Raise :class:`UnsupportedBackendError` unless an asyncio event loop runs this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise UnsupportedBackendError(
            f"{what} runs on asyncio only (aiobotocore needs an asyncio event loop), but "
            "this code runs under another async library such as trio: start it with "
            "anyio.run(..., backend='asyncio'), or use a store that supports it (SQLite, "
            "PostgreSQL)"
        ) from None


class DynamoDBStore:
    """Base of the DynamoDB stores: the table, the client, ``async with`` and :meth:`aclose`."""

    _layout: TableLayout

    def __init__(
        self,
        table: str,
        *,
        region: str | None,
        endpoint_url: str | None,
        aws_access_key_id: str | None,
        aws_secret_access_key: str | None,
        aws_session_token: str | None,
        session: AioSession | None,
        config: AioConfig | None,
        client: DynamoDBClient | None,
    ) -> None:
        self._table = table
        self._client_args: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            # Bounded retries (throttling, 5xx) in botocore's standard mode, then the
            # error surfaces as StoreUnavailableError; short timeouts: a store call is
            # on a handler's path.
            "config": config
            or AioConfig(
                retries={"total_max_attempts": 3, "mode": "standard"},
                connect_timeout=5.0,
                read_timeout=10.0,
                max_pool_connections=50,
            ),
        }
        self._session = session
        self._client = client
        self._borrowed = client is not None
        self._stack: contextlib.AsyncExitStack | None = None
        self._opening = anyio.Lock()
        self._closed = False

    @property
    def table(self) -> str:
        """The DynamoDB table's name."""
        return self._table

    async def _dynamodb(self) -> DynamoDBClient:
        """Return the client, making it on first use."""
        require_asyncio(type(self).__name__)
        if self._closed:
            raise anyio.ClosedResourceError
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                session = self._session or get_session()
                self._client = await stack.enter_async_context(
                    session.create_client("dynamodb", **self._client_args)
                )
                self._stack = stack
            return self._client

    async def create_table(self) -> bool:
        """Make the store's table (on-demand, Time to Live on) unless it exists; wait for it.

        For development and tests; in production make it with infrastructure code (the
        README lists the table's layout and the IAM actions the store needs). Returns
        whether it was created.
        """
        return await create_table(await self._dynamodb(), self._table, self._layout)

    async def __aenter__(self) -> Self:
        await self._dynamodb()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client the store made (a borrowed one stays open); later calls refuse.

        Calls after this raise :class:`anyio.ClosedResourceError`.
        """
        self._closed = True
        stack, self._stack = self._stack, None
        if stack is not None:
            self._client = None
            with anyio.CancelScope(shield=True), translated(self._table):
                await stack.aclose()
