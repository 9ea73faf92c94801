"""The DynamoDB stores: the public conformance checks, the conditional claim, the table.

Against moto's DynamoDB on loopback (tests/dynamodb_local.py: failing, not skipping,
when CI is set). aiobotocore runs on asyncio only: these tests run there, and
TestBackend checks that trio is refused with UnsupportedBackendError.
"""

from __future__ import annotations

import json
import math
import secrets
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)
from structlog.testing import capture_logs

from messagebus import (
    InvalidArgumentError,
    MessageBus,
    StoreError,
    StoreUnavailableError,
    UnsupportedBackendError,
)
from messagebus.dead_letters import DeadLetter
from messagebus.dynamodb import (
    DEAD_LETTER_TABLE,
    IDEMPOTENCY_TABLE,
    DynamoDBDeadLetterStore,
    DynamoDBIdempotencyStore,
)
from messagebus.dynamodb._errors import store_error
from messagebus.idempotency import Claimed, Completed, InProgress
from messagebus.middleware import IdempotencyMiddleware
from messagebus.testing import (
    DEAD_LETTER_CHECKS,
    IDEMPOTENCY_CHECKS,
    DeadLetterCheck,
    DeadLetterHarness,
    IdempotencyCheck,
    IdempotencyHarness,
    NotApplicable,
)
from tests.messages import ChargeCard, Receipt

if TYPE_CHECKING:
    # The stubs are a dev tool: the lowest-versions run has aiobotocore without them.
    from types_aiobotocore_dynamodb import DynamoDBClient

pytestmark = pytest.mark.anyio
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])

REGION = "us-east-1"
NOWHERE = "http://127.0.0.1:1"  # nothing listens there
T0 = 1_714_564_800.0
# One session for every store the tests make: a session loads DynamoDB's service model
# once (a new session per client costs a few hundred milliseconds each).
SESSION = get_session()


def fresh_table() -> str:
    return f"t{secrets.token_hex(6)}"


def idempotency_store(
    endpoint: str, table: str, clock: Callable[[], float] = lambda: T0, **options: Any
) -> DynamoDBIdempotencyStore:
    return DynamoDBIdempotencyStore(
        table,
        region=REGION,
        endpoint_url=endpoint,
        clock=clock,
        session=SESSION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


def dead_letter_store(endpoint: str, table: str, **options: Any) -> DynamoDBDeadLetterStore:
    return DynamoDBDeadLetterStore(
        table,
        region=REGION,
        endpoint_url=endpoint,
        session=SESSION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **options,
    )


@pytest.fixture
async def client(dynamodb_endpoint: str) -> AsyncIterator[DynamoDBClient]:
    async with SESSION.create_client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=dynamodb_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as opened:
        yield opened


@pytest.fixture
async def idempotency_table(dynamodb_endpoint: str) -> str:
    table = fresh_table()
    async with idempotency_store(dynamodb_endpoint, table) as store:
        assert await store.create_table() is True
    return table


@pytest.fixture
async def dead_letter_table(dynamodb_endpoint: str) -> str:
    table = fresh_table()
    async with dead_letter_store(dynamodb_endpoint, table) as store:
        assert await store.create_table() is True
    return table


def by_name(check: object) -> str:
    return str(getattr(check, "__name__", check))


@asyncio_only
class TestConformance:
    """Both stores pass every public store check of their family."""

    @pytest.mark.parametrize("check", IDEMPOTENCY_CHECKS, ids=by_name)
    async def test_idempotency(
        self, dynamodb_endpoint: str, idempotency_table: str, check: IdempotencyCheck
    ) -> None:
        """The idempotency store keeps the part of the contract the check names."""
        harness = IdempotencyHarness(
            lambda clock: idempotency_store(dynamodb_endpoint, idempotency_table, clock),
            concurrency=50,
        )
        try:
            await check(harness)
        except NotApplicable as reason:  # pragma: no cover - every check applies
            pytest.fail(f"the DynamoDB store takes a clock: {reason}")

    @pytest.mark.parametrize("check", DEAD_LETTER_CHECKS, ids=by_name)
    async def test_dead_letters(
        self, dynamodb_endpoint: str, dead_letter_table: str, check: DeadLetterCheck
    ) -> None:
        """The dead-letter store keeps the part of the contract the check names."""
        harness = DeadLetterHarness(lambda: dead_letter_store(dynamodb_endpoint, dead_letter_table))
        await check(harness)


@asyncio_only
class TestClaim:
    """The claim is one conditional PutItem; its record carries DynamoDB's TTL attribute."""

    async def test_fifty_concurrent_duplicate_claims_one_winner(
        self, dynamodb_endpoint: str, idempotency_table: str
    ) -> None:
        """50 claims of one key, from 5 stores with their own clients: one Claimed.

        The 49 others all see the winner's lease, and the item holds the winner's token.
        """
        stores = [idempotency_store(dynamodb_endpoint, idempotency_table) for _ in range(5)]
        outcomes: list[Any] = [None] * 50

        async def claim(n: int) -> None:
            outcomes[n] = await stores[n % 5].claim("charge", "order-1", "fp", 30)

        async with anyio.create_task_group() as tasks:
            for n in range(50):
                tasks.start_soon(claim, n)
        for store in stores:
            await store.aclose()
        winners = [outcome for outcome in outcomes if isinstance(outcome, Claimed)]
        assert len(winners) == 1
        assert [o for o in outcomes if o is not winners[0]] == [InProgress(T0 + 30)] * 49
        async with idempotency_store(dynamodb_endpoint, idempotency_table) as store:
            await store.complete("charge", "order-1", winners[0].token, "ok", 60)
            assert await store.claim("charge", "order-1", "fp", 30) == Completed("ok")

    async def test_item_layout_and_ttl_attribute(
        self, dynamodb_endpoint: str, idempotency_table: str, client: DynamoDBClient
    ) -> None:
        """pk is [scope, key] as JSON; expiration is expires_at in whole seconds, up."""
        now = [T0 + 0.25]
        async with idempotency_store(dynamodb_endpoint, idempotency_table, lambda: now[0]) as s:
            claimed = await s.claim("a|b", 'k"1', "fp", 10.5)
            assert isinstance(claimed, Claimed)
            key = {"pk": {"S": '["a|b","k\\"1"]'}}
            item = (await client.get_item(TableName=idempotency_table, Key=key))["Item"]
            assert json.loads(item["pk"]["S"]) == ["a|b", 'k"1']
            assert float(item["expires_at"]["N"]) == T0 + 10.75
            assert item["expiration"]["N"] == str(math.ceil(T0 + 10.75))
            assert "result" not in item
            now[0] = T0 + 5
            await s.complete("a|b", 'k"1', claimed.token, "done", 100)
            item = (await client.get_item(TableName=idempotency_table, Key=key))["Item"]
            assert item["result"] == {"S": "done"}
            assert item["expiration"]["N"] == str(int(T0 + 105))
            # Another split of the same characters is another record.
            assert isinstance(await s.claim("a", 'b","k"1', "fp", 10), Claimed)

    async def test_create_table_is_idempotent_and_turns_ttl_on(
        self, dynamodb_endpoint: str, idempotency_table: str, client: DynamoDBClient
    ) -> None:
        """A second create_table finds the table (False); TTL is on, on 'expiration'."""
        async with idempotency_store(dynamodb_endpoint, idempotency_table) as store:
            assert store.table == idempotency_table
            assert await store.create_table() is False
        ttl = (await client.describe_time_to_live(TableName=idempotency_table))[
            "TimeToLiveDescription"
        ]
        assert ttl.get("TimeToLiveStatus") == "ENABLED"
        assert ttl.get("AttributeName") == IDEMPOTENCY_TABLE.ttl_attribute == "expiration"
        described = (await client.describe_table(TableName=idempotency_table))["Table"]
        assert described.get("KeySchema") == [{"AttributeName": "pk", "KeyType": "HASH"}]
        assert described.get("BillingModeSummary", {}).get("BillingMode") == "PAY_PER_REQUEST"

    async def test_bad_lease_or_ttl_is_refused(
        self, dynamodb_endpoint: str, idempotency_table: str
    ) -> None:
        """A negative or infinite lease or TTL: InvalidArgumentError, nothing written."""
        async with idempotency_store(dynamodb_endpoint, idempotency_table) as store:
            with pytest.raises(InvalidArgumentError, match="lease"):
                await store.claim("s", "k", "fp", -1)
            with pytest.raises(InvalidArgumentError, match="ttl"):
                await store.complete("s", "k", "token", "r", math.inf)
            with pytest.raises(InvalidArgumentError, match="limit"):
                await store.cleanup(limit=-1)
            assert isinstance(await store.claim("s", "k", "fp", 1), Claimed)

    async def test_the_middleware_runs_a_handler_once_on_dynamodb(
        self, dynamodb_endpoint: str, idempotency_table: str
    ) -> None:
        """IdempotencyMiddleware on the DynamoDB store: one charge, the stored receipt twice."""
        async with DynamoDBIdempotencyStore(
            idempotency_table,
            region=REGION,
            endpoint_url=dynamodb_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ) as store:
            bus = MessageBus(middleware=[IdempotencyMiddleware(store)])
            charges: list[int] = []

            @bus.handler(ChargeCard, name="charge")
            async def charge(command: ChargeCard) -> Receipt:
                charges.append(command.amount)
                return Receipt(command.amount)

            with capture_logs():
                first = await bus.send(ChargeCard(5), idempotency_key="order-9")
                second = await bus.send(ChargeCard(5), idempotency_key="order-9")
        assert first == second == Receipt(5)
        assert charges == [5]


def letter(n: int, *, body: str = "{}") -> DeadLetter:
    at = datetime.fromtimestamp(T0 + n, UTC)
    return DeadLetter(
        id=f"dl-{n}",
        handler="notify",
        message_type="blog.post",
        message_id=f"m-{n}",
        correlation_id=f"c-{n}",
        body=body,
        error_type="builtins.ValueError",
        error_message="boom",
        traceback="Traceback\n",
        attempts=1,
        first_failed_at=at,
        last_failed_at=at,
    )


@asyncio_only
class TestDeadLetters:
    """Bodies are compressed under DynamoDB's 400 KB item cap; over it, a StoreError."""

    async def test_a_one_mebibyte_envelope_fits(
        self, dynamodb_endpoint: str, dead_letter_table: str, client: DynamoDBClient
    ) -> None:
        """A 1 MiB JSON body (SQS's largest) round-trips; the item stores it compressed."""
        body = json.dumps({"data": [{"n": n, "text": "módulo"} for n in range(40_000)]})
        assert len(body.encode()) > 1_000_000
        async with dead_letter_store(dynamodb_endpoint, dead_letter_table) as store:
            await store.add(letter(1, body=body))
            assert await store.get("dl-1") == letter(1, body=body)
        item = await client.get_item(TableName=dead_letter_table, Key={"id": {"S": "dl-1"}})
        assert zlib.decompress(item["Item"]["body"]["B"]).decode() == body
        assert DEAD_LETTER_TABLE.partition_key == "id"

    async def test_an_item_over_the_cap_is_refused(
        self, dynamodb_endpoint: str, dead_letter_table: str
    ) -> None:
        """A body that does not compress below 400 KB: StoreError, nothing kept."""
        body = secrets.token_hex(450_000)  # 900 KB of hex: compresses to about half
        async with dead_letter_store(dynamodb_endpoint, dead_letter_table) as store:
            with pytest.raises(StoreError, match=r"over DynamoDB.s 409600-byte item limit"):
                await store.add(letter(1, body=body))
            assert await store.list() == ()

    async def test_naive_datetimes_are_refused(
        self, dynamodb_endpoint: str, dead_letter_table: str
    ) -> None:
        """A naive filter time or a negative limit: InvalidArgumentError."""
        async with dead_letter_store(dynamodb_endpoint, dead_letter_table) as store:
            with pytest.raises(InvalidArgumentError, match="aware"):
                await store.list(since=datetime(2024, 5, 1))
            with pytest.raises(InvalidArgumentError, match="limit"):
                await store.list(limit=-1)


@asyncio_only
class TestErrors:
    """Vendor errors leave the stores as StoreError or StoreUnavailableError, from them."""

    async def test_a_missing_table(self, dynamodb_endpoint: str) -> None:
        """No such table: StoreError saying how to make it."""
        async with idempotency_store(dynamodb_endpoint, "no-such-table") as store:
            with pytest.raises(StoreError, match=r"does not exist.*create_table") as raised:
                await store.claim("s", "k", "fp", 1)
        assert isinstance(raised.value.__cause__, ClientError)
        assert not isinstance(raised.value, StoreUnavailableError)

    async def test_an_unreachable_endpoint(self) -> None:
        """Nothing listening: StoreUnavailableError."""
        once = AioConfig(retries={"total_max_attempts": 1}, connect_timeout=1)
        async with dead_letter_store(NOWHERE, "t", config=once) as store:
            with pytest.raises(StoreUnavailableError, match="could not be reached"):
                await store.get("x")

    @pytest.mark.parametrize(
        "code",
        [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "InternalServerError",
        ],
    )
    async def test_throttling_is_unavailable(self, code: str) -> None:
        """Throttled or failing on AWS's side: StoreUnavailableError, worth a later retry."""
        store = DynamoDBIdempotencyStore("t", client=FakeClient(code))  # type: ignore[arg-type]
        with pytest.raises(StoreUnavailableError, match=code) as raised:
            await store.claim("s", "k", "fp", 1)
        assert isinstance(raised.value.__cause__, ClientError)

    async def test_a_failed_condition_without_the_item(self) -> None:
        """A server that does not return the live item: StoreError naming what is missing."""
        store = DynamoDBIdempotencyStore(
            "t",
            client=FakeClient("ConditionalCheckFailedException"),  # type: ignore[arg-type]
        )
        with pytest.raises(StoreError, match="ReturnValuesOnConditionCheckFailure"):
            await store.claim("s", "k", "fp", 1)

    async def test_a_refused_complete_or_release_is_an_error(self) -> None:
        """Only a failed condition is swallowed; anything else is raised."""
        store = DynamoDBIdempotencyStore(
            "t",
            client=FakeClient("AccessDeniedException"),  # type: ignore[arg-type]
        )
        for call in (
            store.complete("s", "k", "token", "r", 1),
            store.release("s", "k", "token"),
            store.cleanup(),
        ):
            with pytest.raises(StoreError, match="AccessDeniedException"):
                await call
        dead_letters = DynamoDBDeadLetterStore(
            "t",
            client=FakeClient("AccessDeniedException"),  # type: ignore[arg-type]
        )
        with pytest.raises(StoreError, match="AccessDeniedException"):
            await dead_letters.purge()


@asyncio_only
class TestRaces:
    """A record that changes between a scan and its delete is kept, and not counted."""

    async def test_cleanup_skips_a_record_claimed_again(self) -> None:
        """The delete's condition (still expired) fails: cleanup counts 0."""
        store = DynamoDBIdempotencyStore(
            "t",
            client=FakeClient("ConditionalCheckFailedException"),  # type: ignore[arg-type]
        )
        assert await store.cleanup() == 0

    async def test_purge_skips_a_record_replaced_meanwhile(self) -> None:
        """The delete's condition (still matching) fails: purge counts 0."""
        store = DynamoDBDeadLetterStore(
            "t",
            client=FakeClient("ConditionalCheckFailedException"),  # type: ignore[arg-type]
        )
        assert await store.purge(handler="notify") == 0

    async def test_create_table_refused(self) -> None:
        """CreateTable refused for another reason than an existing table: StoreError."""
        store = DynamoDBDeadLetterStore(
            "t",
            client=FakeClient("AccessDeniedException"),  # type: ignore[arg-type]
        )
        with pytest.raises(StoreError, match="AccessDeniedException"):
            await store.create_table()


class FakeClient:
    """A DynamoDB client whose every call fails with one AWS error code, no item attached."""

    def __init__(self, code: str) -> None:
        self.code = code

    def _fail(self, operation: str) -> ClientError:
        return ClientError({"Error": {"Code": self.code, "Message": "no"}}, operation)

    async def put_item(self, **_: object) -> None:
        raise self._fail("PutItem")

    async def update_item(self, **_: object) -> None:
        raise self._fail("UpdateItem")

    async def delete_item(self, **_: object) -> None:
        raise self._fail("DeleteItem")

    async def create_table(self, **_: object) -> None:
        raise self._fail("CreateTable")

    def get_paginator(self, _: str) -> FakeClient:
        return self

    async def paginate(self, **_: object) -> AsyncIterator[dict[str, Any]]:
        yield {"Items": [{"pk": {"S": "x"}, "id": {"S": "x"}}]}


class TestLifecycle:
    """Borrowed clients stay open; a closed store refuses; trio is refused."""

    @asyncio_only
    async def test_a_borrowed_client_is_never_closed(
        self, dynamodb_endpoint: str, idempotency_table: str, client: DynamoDBClient
    ) -> None:
        """Two stores on one client; closing them leaves it usable."""
        for _ in range(2):
            async with DynamoDBIdempotencyStore(idempotency_table, client=client) as store:
                assert isinstance(await store.claim("s", secrets.token_hex(4), "fp", 5), Claimed)
        await client.describe_table(TableName=idempotency_table)

    @asyncio_only
    async def test_a_closed_store_refuses(self, dynamodb_endpoint: str) -> None:
        """Calls after aclose raise anyio.ClosedResourceError; closing twice is fine."""
        store = dead_letter_store(dynamodb_endpoint, "t")
        await store.aclose()
        await store.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await store.get("x")

    @pytest.mark.parametrize("anyio_backend", ["trio"])
    async def test_trio_is_refused(self) -> None:
        """Entering or calling under trio: UnsupportedBackendError naming the way out."""
        idempotency = DynamoDBIdempotencyStore("t", region=REGION, endpoint_url=NOWHERE)
        with pytest.raises(UnsupportedBackendError, match=r"asyncio only.*backend='asyncio'"):
            await idempotency.__aenter__()
        with pytest.raises(UnsupportedBackendError):
            await idempotency.claim("s", "k", "fp", 1)
        dead_letters = DynamoDBDeadLetterStore("t", region=REGION, endpoint_url=NOWHERE)
        with pytest.raises(UnsupportedBackendError):
            await dead_letters.add(letter(1))


def test_vendor_errors_below_the_answer() -> None:
    """Network failures are unavailable; missing credentials and others are StoreError."""
    unreachable = store_error(EndpointConnectionError(endpoint_url=NOWHERE), "t")
    assert isinstance(unreachable, StoreUnavailableError)
    credentials = store_error(NoCredentialsError(), "t")
    assert type(credentials) is StoreError
    assert "credentials" in str(credentials)
    answer: Any = {"ResponseMetadata": {"HTTPStatusCode": 503}}  # no error code at all
    server = ClientError(answer, "PutItem")
    assert isinstance(store_error(server, "t"), StoreUnavailableError)
    other = store_error(ParamValidationError(report="Invalid type for parameter Key"), "t")
    assert type(other) is StoreError
    assert "Invalid type" in str(other)
