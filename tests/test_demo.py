from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from messagebus.demo import main

pytestmark = pytest.mark.anyio


class TestDemo:
    """The README's demo runs to the end and tells each step of its story."""

    async def test_story(self) -> None:
        """Each scenario's outcome shows in the log lines."""
        with capture_logs() as logs:
            await main()
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
        handled = [line for line in logs if line["event"] == "message handled"]
        publish, notify = handled[0], handled[1]
        assert notify["causation_id"] == publish["message_id"]
        assert notify["correlation_id"] == publish["correlation_id"]
