"""Every transport passes the public conformance suite (messagebus.testing).

To add a transport, add a function that returns a TransportHarness to HARNESSES (one
that needs an external server fails when CI is set and skips locally when unreachable,
as tests/databases.py does; an asyncio-only transport skips trio).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from messagebus.testing import TRANSPORT_CHECKS, NotApplicable, TransportCheck, TransportHarness
from messagebus.transports import InMemoryTransport, MemoryBroker

pytestmark = pytest.mark.anyio


def memory(anyio_backend: str) -> TransportHarness:
    """Transports on one broker: a second one opened is a restart of the first."""
    broker = MemoryBroker()
    return TransportHarness(lambda: InMemoryTransport(broker), short=0.1, patience=10.0)


HARNESSES: dict[str, Callable[[str], TransportHarness]] = {"memory": memory}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, anyio_backend: str) -> TransportHarness:
    return HARNESSES[request.param](anyio_backend)


class TestConformance:
    """Each check of the suite, on every transport and both event loops."""

    @pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda check: check.__name__)
    async def test_check(self, harness: TransportHarness, check: TransportCheck) -> None:
        """The transport keeps the property the check names."""
        try:
            await check(harness)
        except NotApplicable as reason:
            pytest.skip(str(reason))
