"""The pytest plugin: its fixtures work, and a session that does not use them is unchanged."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

import _messagebus_pytestplugin

pytest_plugins = ["pytester"]

APP = """
from __future__ import annotations

import attrs
import pytest

from messagebus import Command, Context, Event, MessageBus
from messagebus.middleware import RetryMiddleware
from messagebus.retry import FixedBackoff, RetryPolicy
from messagebus.transports.memory import InMemoryTransport


@attrs.frozen
class Greet(Command[None], name="app.greet"):
    who: str


@attrs.frozen
class Greeted(Event, name="app.greeted"):
    who: str


def build_bus(clock) -> MessageBus:
    policy = RetryPolicy(max_attempts=2, backoff=FixedBackoff(60.0), jitter="none")
    bus = MessageBus(
        transport=InMemoryTransport(clock=clock),
        middleware=[RetryMiddleware(events=policy, clock=clock)],
    )

    @bus.handler(Greet)
    async def greet(command: Greet, ctx: Context[Greet]) -> None:
        ctx.publish(Greeted(command.who))

    @bus.subscriber(Greeted, name="wave")
    async def wave(event: Greeted) -> None:
        if event.who == "nobody":
            raise RuntimeError("no one to wave at")

    return bus


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


@pytest.fixture
def messagebus_bus(fake_clock):
    return build_bus(fake_clock)
"""


def write_app(pytester: pytest.Pytester, tests: str) -> None:
    pytester.makeconftest(APP)
    pytester.makepyfile(test_app=textwrap.dedent(tests))


class TestRegistration:
    """The plugin is found through its entry point and defines no hooks."""

    def test_entry_point_names_the_module(self) -> None:
        """``pytest11`` entry point ``messagebus`` loads ``_messagebus_pytestplugin``."""
        found = {e.name: e.value for e in entry_points(group="pytest11")}
        assert found["messagebus"] == "_messagebus_pytestplugin"

    def test_defines_no_hooks(self) -> None:
        """Nothing named ``pytest_*``: loading the plugin changes no behaviour of pytest."""
        assert [n for n in vars(_messagebus_pytestplugin) if n.startswith("pytest_")] == []


class TestUnusedSession:
    """A session that uses no fixture of the plugin imports nothing of messagebus."""

    def test_plain_session_imports_no_messagebus(self, pytester: pytest.Pytester) -> None:
        """The plugin is loaded, and messagebus is not imported, in a fresh process."""
        pytester.makepyfile(
            test_plain="""
            import sys

            def test_plain(pytestconfig):
                assert pytestconfig.pluginmanager.has_plugin("messagebus")
                assert sorted(m for m in sys.modules if m.startswith("messagebus")) == []
            """
        )
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)

    def test_disabled_with_p_no(self, pytester: pytest.Pytester) -> None:
        """``-p no:messagebus`` unloads it: plain tests pass, its fixtures are unknown."""
        pytester.makepyfile(
            test_plain="""
            def test_plain(pytestconfig):
                assert not pytestconfig.pluginmanager.has_plugin("messagebus")

            def test_wants_the_clock(fake_clock):
                pass
            """
        )
        result = pytester.runpytest_subprocess("-p", "no:messagebus", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*fixture 'fake_clock' not found*"])


class TestFixtures:
    """The fixtures on an application's bus, on asyncio and trio (run in this process)."""

    def test_harness_clock_and_logs(self, pytester: pytest.Pytester) -> None:
        """Follow-ups recorded, a retry advanced on the fake clock, a dead letter, the logs."""
        write_app(
            pytester,
            """
            import pytest
            from conftest import Greet, Greeted

            pytestmark = pytest.mark.anyio

            async def test_follow_up(messagebus_harness):
                await messagebus_harness.bus.send(Greet("ada"))
                messagebus_harness.recorder.assert_published(Greeted, who="ada")

            async def test_dead_letter(messagebus_harness, fake_clock, messagebus_logs):
                await messagebus_harness.bus.publish(Greeted("nobody"))
                idle = await messagebus_harness.run_until_idle()
                assert idle.advanced == 60 == fake_clock.elapsed
                letter = await messagebus_harness.assert_dead_lettered(Greeted, handler="wave")
                assert letter.attempts == 2
                events = [line["event"] for line in messagebus_logs]
                assert "retry deferred to the queue" in events
                assert "handler failed; message dead-lettered" in events
            """,
        )
        pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=4)

    def test_failing_assertion_reads_well(self, pytester: pytest.Pytester) -> None:
        """A missing event and a missing dead letter fail with what was recorded."""
        write_app(
            pytester,
            """
            import pytest
            from conftest import Greet, Greeted

            pytestmark = pytest.mark.anyio

            async def test_wrong_name(messagebus_harness):
                await messagebus_harness.bus.send(Greet("ada"))
                messagebus_harness.recorder.assert_published(Greeted, who="bob")

            async def test_no_dead_letter(messagebus_harness):
                await messagebus_harness.assert_dead_lettered(Greeted)

            async def test_another_dead_letter(messagebus_harness):
                await messagebus_harness.bus.publish(Greeted("nobody"))
                await messagebus_harness.run_until_idle()
                await messagebus_harness.assert_dead_lettered(Greeted, handler="other")
            """,
        )
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "asyncio")
        result.assert_outcomes(failed=3)
        result.stdout.fnmatch_lines(
            [
                "*expected Greeted(who='bob') to be published; 1 message recorded:",
                "*published Greeted(who='ada') by conftest.build_bus.greet (correlation *",
                "*expected one dead letter of Greeted, found 0; dead letters: none*",
                "*expected one dead letter of Greeted by other, found 0; dead letters:",
                "*app.greeted by wave after 2 attempt(s): *RuntimeError: no one to wave at",
            ]
        )

    def test_bus_not_overridden(self, pytester: pytest.Pytester) -> None:
        """Without an application's messagebus_bus, the harness says what to define."""
        pytester.makepyfile(
            test_app="""
            import pytest

            @pytest.fixture
            def anyio_backend():
                return "asyncio"

            @pytest.mark.anyio
            async def test_needs_a_bus(messagebus_harness):
                pass
            """
        )
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
        result.assert_outcomes(errors=1)
        result.stdout.fnmatch_lines(["*define a fixture named messagebus_bus in conftest.py*"])

    def test_logs_leave_structlog_unconfigured(self, pytester: pytest.Pytester) -> None:
        """After messagebus_logs, an unconfigured structlog is unconfigured again."""
        pytester.makepyfile(
            test_logs="""
            import structlog

            def test_capture(messagebus_logs):
                structlog.get_logger().info("hello", n=1)
                assert messagebus_logs == [{"event": "hello", "n": 1, "log_level": "info"}]

            def test_after():
                assert not structlog.is_configured()
            """
        )
        # A fresh process: here, another test may have configured structlog already.
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
