"""The messagebus pytest plugin: fixtures for testing an application built on the bus.

pytest loads it in every session of an environment where messagebus is installed (the
``pytest11`` entry point ``messagebus``). So that a session that uses none of its
fixtures is unchanged, it is a top-level module, as Hypothesis's
``_hypothesis_pytestplugin`` is: loading it imports pytest alone, never messagebus (whose
import costs hundreds of milliseconds), and it defines no hooks and no options. Each
fixture imports the library when a test asks for it. ``-p no:messagebus`` disables it.

Fixtures (see docs/testing.md):

- ``fake_clock``: a new :class:`messagebus.testing.FakeClock`.
- ``messagebus_bus``: the application's bus, for the harness. The plugin's own raises
  a usage error: override it in the application's ``conftest.py`` to build a new bus on
  the fake clock for each test::

      @pytest.fixture
      def messagebus_bus(fake_clock):
          return build_bus(clock=fake_clock)

- ``messagebus_harness`` (async; tests marked ``pytest.mark.anyio``): the bus running
  and provisioned, with a :class:`messagebus.testing.BusHarness` around it (recorder,
  the fake clock, run until idle, replacements, dead letters) for the test.
- ``messagebus_logs``: the library's (and the application's) structlog lines of the
  test, as dicts (``{"event": ..., "log_level": ..., **fields}``), through
  :func:`structlog.testing.capture_logs`. While it runs structlog counts as configured,
  so the library logs through structlog rather than ``logging`` (see
  ``messagebus._log``); afterwards an unconfigured structlog is reset to unconfigured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from messagebus import MessageBus
    from messagebus.testing import BusHarness, FakeClock

__all__ = ["fake_clock", "messagebus_bus", "messagebus_harness", "messagebus_logs"]


@pytest.fixture
def fake_clock() -> FakeClock:
    """Return a new fake clock: give it to the bus's timed parts, advance it in the test."""
    from messagebus.testing import FakeClock  # noqa: PLC0415  # only when asked for

    return FakeClock()


@pytest.fixture
def messagebus_bus() -> MessageBus:
    """Return the application's bus: override this fixture to make a new one per test."""
    pytest.fail(
        "messagebus_harness needs the application's bus: define a fixture named "
        "messagebus_bus in conftest.py that returns a new MessageBus (built on the "
        "fake_clock fixture's clock) for each test",
        pytrace=False,
    )


@pytest.fixture
async def messagebus_harness(
    messagebus_bus: MessageBus, fake_clock: FakeClock
) -> AsyncIterator[BusHarness]:
    """Run the application's bus for the test, with the kit around it."""
    from messagebus.testing import BusHarness  # noqa: PLC0415  # only when asked for

    async with BusHarness.running(messagebus_bus, fake_clock) as harness:
        yield harness


@pytest.fixture
def messagebus_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Collect the structlog lines logged during the test, as dicts."""
    import structlog  # noqa: PLC0415  # only when asked for
    import structlog.testing  # noqa: PLC0415

    configured = structlog.is_configured()
    with structlog.testing.capture_logs() as logs:
        yield logs
    if not configured:
        # capture_logs leaves structlog configured; the library would log through it.
        structlog.reset_defaults()
