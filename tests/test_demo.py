from __future__ import annotations

import secrets

import pytest
from structlog.testing import capture_logs

from messagebus.demo import main
from messagebus.extension import Transport
from messagebus.transports import transport_from_url

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["memory", "sqs"])
def transport(request: pytest.FixtureRequest, anyio_backend: str) -> Transport:
    """The demo's transport: in memory, or SQS on LocalStack (asyncio only)."""
    if request.param == "memory":
        return transport_from_url("memory://")
    if anyio_backend != "asyncio":
        pytest.skip("the SQS transport runs on asyncio only (refusing trio is tested)")
    endpoint = request.getfixturevalue("localstack_endpoint")
    prefix = f"demo-{secrets.token_hex(4)}-"
    return transport_from_url(f"sqs://us-east-1?endpoint_url={endpoint}&prefix={prefix}")


class TestDemo:
    """The README's demo runs to the end and tells each step of its story, on either transport."""

    async def test_story(self, transport: Transport, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each scenario's outcome shows in the log lines."""
        # LocalStack takes any credentials; the standard chain needs some to sign with.
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with capture_logs() as logs:
            await main(transport=transport)
        events = [line["event"] for line in logs]
        assert events[-1] == "done"
        rejected = next(line for line in logs if line["event"] == "   rejected")
        assert rejected["reason"] == "a post needs a title"
        assert rejected["posts"] == 1
        failed = [line for line in logs if line["log_level"] == "error"]
        assert {line["handler"] for line in failed} == {"update-search-index"}
        carried_on = next(line for line in logs if line["event"] == "   the publisher carried on")
        assert carried_on["linus_inbox"] == ["ada: Hello messagebus", "ada: Events are facts"]
        letter = next(line for line in logs if line["event"] == "   dead letter")
        assert letter["handler"] == "update-search-index"
        assert letter["attempts"] == 3
        retries = [line for line in logs if line["event"] == "retrying handler"]
        assert [line["handler"] for line in retries[:2]] == ["send-welcome-email"] * 2
        welcomed = next(line for line in logs if line["event"] == "   registered, and welcomed")
        assert welcomed["emails"] == ["welcome, grace <grace@example.org>"]
        paid = next(line for line in logs if line["event"] == "   paid")
        assert paid["first"] == paid["again"]
        assert paid["charges"] == [("grace", 500)]
        replayed = next(line for line in logs if line["event"] == "   replayed")
        assert replayed["dead_letters"] == 0
        assert "facts" in replayed["words"]
        relayed = [line for line in logs if line["event"].startswith("   relay -> transport")]
        assert relayed[0]["topic"] == "blog-post-published"
        assert relayed[0]["types"] == ["blog.post.published"]
        received = [line for line in logs if line["event"].startswith("   worker <- queue")]
        assert {line["queue"] for line in received} == {"blog"}
        handled = [line for line in logs if line["event"] == "message handled"]
        publish, notify = handled[0], handled[1]
        assert notify["causation_id"] == publish["message_id"]
        assert notify["correlation_id"] == publish["correlation_id"]

    async def test_the_process_manager_step(self) -> None:
        """Step 8: the unpaid subscription is cancelled at its deadline, the paid one kept."""
        with capture_logs() as logs:
            await main()
        events = [line["event"] for line in logs]
        step = events.index(
            "8. a process manager: linus and grace ask for paid subscriptions to ada; each"
        )
        assert step > events.index("   replayed")  # after the blog's story
        invoiced = next(line for line in logs if line["event"] == "   invoices sent")
        assert invoiced["invoices"] == ["linus: 5.00 for sub-linus", "grace: 5.00 for sub-grace"]
        assert invoiced["deadlines_waiting"] == 2
        assert invoiced["linus_process"] == "waiting for payment"
        paid = next(line for line in logs if line["event"] == "   grace paid in time")
        assert paid["notices"] == ["grace: welcome to ada's paid posts"]
        assert paid["grace_process"] == "completed"
        cancelled = next(line for line in logs if line["event"].startswith("   linus never paid"))
        assert cancelled["notices"] == [
            "linus: subscription cancelled, no payment within 30 minutes"
        ]
        assert cancelled["linus_process"] == "completed"
        assert cancelled["deadlines_waiting"] == 0
        ignored = [
            line for line in logs if line["event"] == "message for a completed process ignored"
        ]
        assert [line["key"] for line in ignored] == ["sub-grace"]
        # Both deadlines ran the process's handler; the fake clock made it instant.
        deadlines = [
            line
            for line in logs
            if line["event"] == "message handled"
            and line["handler"] == "billing.subscription:billing.subscription.cancel-unpaid"
        ]
        assert len(deadlines) == 2
        assert events[-1] == "done"
