"""Every transport passes the public conformance suite (messagebus.testing).

To add a transport, add a function that returns a TransportHarness to HARNESSES (one
that needs an external server fails when CI is set and skips locally when unreachable,
as tests/databases.py does; an asyncio-only transport skips trio).

SQS runs on LocalStack (tests/localstack.py), asyncio only, at a smaller scale than the
default (1,000 messages, 4 producers and 4 consumers) so that the suite takes about a
minute there; ``short`` stays at 1 s, LocalStack's timer tick.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import pytest

from messagebus.testing import TRANSPORT_CHECKS, NotApplicable, TransportCheck, TransportHarness
from messagebus.transports import TransportWrapper
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


HARNESSES: dict[str, Callable[[pytest.FixtureRequest, str], TransportHarness]] = {
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
