"""Every transport passes the public conformance suite (messagebus.testing).

To add a transport, add a function that returns a TransportHarness to HARNESSES (one
that needs an external server fails when CI is set and skips locally when unreachable,
as tests/databases.py does; an asyncio-only transport skips trio).

SQS runs on LocalStack (tests/localstack.py), asyncio only, at a smaller scale than the
default (1,000 messages, 4 producers and 4 consumers) so that the suite takes about a
minute there; ``short`` stays at 1 s, LocalStack's timer tick.

EventBridge runs on its in-memory double (both event loops) and on LocalStack's
EventBridge with SQS for the queues, configured by URL as an application is. LocalStack
delivers to SQS asynchronously and slowly (about 200 events/s), which the checks' polling
absorbs; its other gaps (order scrambled within a PutEvents call, an unknown bus silently
accepted, no target dead-letter queue) touch no check here: the checks publish one event
at a time, to a bus that exists, and dead letters are the queues' own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from messagebus.testing import TRANSPORT_CHECKS, NotApplicable, TransportCheck, TransportHarness
from messagebus.transports import TransportWrapper, transport_from_url
from messagebus.transports.eventbridge import EventBridgeTransport, MemoryEventBridge
from messagebus.transports.memory import InMemoryTransport, MemoryBroker

pytestmark = pytest.mark.anyio


def memory(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """Transports on one broker: a second one opened is a restart of the first."""
    broker = MemoryBroker()
    return TransportHarness(lambda: InMemoryTransport(broker), short=0.1, patience=10.0)


def wrapped(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """A bare TransportWrapper around memory: wrapping alone changes nothing."""
    broker = MemoryBroker()
    return TransportHarness(
        lambda: TransportWrapper(InMemoryTransport(broker)), short=0.1, patience=10.0
    )


def traced(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """TracedTransport around memory: tracing changes nothing either."""
    from messagebus.otel import TracedTransport

    broker = MemoryBroker()
    return TransportHarness(
        lambda: TracedTransport(InMemoryTransport(broker), metrics=False), short=0.1, patience=10.0
    )


def sqs(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """SQSTransports on LocalStack under one fresh prefix: a second one is a restart."""
    if anyio_backend != "asyncio":
        pytest.skip("SQSTransport runs on asyncio only (its refusal of trio is tested apart)")
    from messagebus.transports.sqs import SQSTransport

    endpoint = str(request.getfixturevalue("localstack_endpoint"))
    prefix = f"c{secrets.token_hex(4)}-"

    def open_transport() -> SQSTransport:
        return SQSTransport(
            region="us-east-1",
            endpoint_url=endpoint,
            prefix=prefix,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return TransportHarness(
        open_transport, prefix="cf", messages=1000, concurrency=4, short=1.0, patience=30.0
    )


def eventbridge(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """The EventBridge double and memory queues on one broker: a second one is a restart."""
    broker = MemoryBroker()
    bridge = MemoryEventBridge(broker)
    return TransportHarness(
        lambda: EventBridgeTransport(InMemoryTransport(broker), bridge, bus="conformance"),
        short=0.1,
        patience=10.0,
    )


def eventbridge_localstack(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    """eventbridge:// on LocalStack: a fresh bus and prefix; a second one is a restart."""
    if anyio_backend != "asyncio":
        pytest.skip("the EventBridge transport on AWS runs on asyncio only (aiobotocore)")
    endpoint = str(request.getfixturevalue("localstack_endpoint"))
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    prefix = f"b{secrets.token_hex(4)}-"
    url = f"eventbridge://us-east-1?bus={prefix}bus&prefix={prefix}&endpoint_url={endpoint}"
    return TransportHarness(
        lambda: transport_from_url(url),
        prefix="cf",
        messages=1000,
        concurrency=4,
        short=1.0,
        patience=30.0,
    )


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, str], TransportHarness]] = {
    "eventbridge": eventbridge,
    "eventbridge_localstack": eventbridge_localstack,
    "memory": memory,
    "sqs": sqs,
    "traced": traced,
    "wrapped": wrapped,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    return HARNESSES[request.param](request, anyio_backend)


class TestConformance:
    """Each check of the suite, on every transport and both event loops."""

    @pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda check: check.__name__)
    async def test_check(self, harness: TransportHarness, check: TransportCheck) -> None:
        """The transport keeps the property the check names."""
        try:
            await check(harness)
        except NotApplicable as reason:
            pytest.skip(str(reason))
