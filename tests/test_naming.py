from __future__ import annotations

import attrs
import pytest

from messagebus import Command, Event, InvalidMessageTypeError, MessageBus
from messagebus._naming import is_past_tense, lint_names
from tests.conftest import Cli
from tests.messages import ChargeCard, FollowersNotified, PostPublished, PublishPost


@attrs.frozen
class PostEvent(Event, name="blog.post.event"):
    post_id: int


@attrs.frozen
class PaymentSent(Event, name="billing.payment.sent"):
    amount: int


@attrs.frozen
class PostCreated(Command[None], name="blog.post.created"):
    title: str


@attrs.frozen
class SeedFeed(Command[None], name="feeds.feed.seed"):
    url: str


class TestHeuristic:
    """What counts as past tense."""

    @pytest.mark.parametrize("word", ["Published", "notified", "Sent", "Paid", "written"])
    def test_past(self, word: str) -> None:
        """Regular -ed forms and irregular participles."""
        assert is_past_tense(word)

    @pytest.mark.parametrize("word", ["Publish", "Send", "Red", "Post", "Bed"])
    def test_not_past(self, word: str) -> None:
        """Base forms, and short words that merely end in -ed."""
        assert not is_past_tense(word)


class TestLint:
    """Findings, each explaining itself; the allow-list silences the heuristic's mistakes."""

    def test_good_names_pass(self) -> None:
        """Well-named events and commands produce nothing."""
        assert lint_names([PublishPost, PostPublished, FollowersNotified, ChargeCard]) == []
        assert lint_names([PaymentSent]) == []

    def test_event_not_in_the_past_tense(self) -> None:
        """An event named as a thing, class and wire name both."""
        findings = [str(finding) for finding in lint_names([PostEvent])]
        assert findings == [
            "PostEvent: class name 'PostEvent' should end in a past-tense verb: an event is "
            "a fact (for example PostPublished)",
            "PostEvent: wire name 'blog.post.event' should end in a past-tense verb "
            "(for example blog.post.published)",
        ]

    def test_command_named_like_an_event(self) -> None:
        """A command whose names read as facts."""
        findings = lint_names([PostCreated])
        assert [finding.which for finding in findings] == ["class name", "wire name"]
        assert "'Created' is past tense" in findings[0].problem

    def test_words_that_are_both_forms(self) -> None:
        """SetPrice is a fine command and PriceSet a fine event."""

        @attrs.frozen
        class SetPrice(Command[None], name="shop.price.set"):
            cents: int

        @attrs.frozen
        class PriceSet(Event, name="shop.price.set"):
            cents: int

        assert lint_names([SetPrice, PriceSet]) == []

    def test_allow_list(self) -> None:
        """A false positive is allowed by class name or by wire name."""
        assert len(lint_names([SeedFeed])) == 2  # "seed" ends in -ed: a known false positive
        assert lint_names([SeedFeed], allow={"SeedFeed"}) == []
        assert lint_names([PostEvent], allow={"blog.post.event"}) == []


class TestStrictRegistration:
    """strict_names refuses badly named types at registration."""

    def test_refused(self) -> None:
        """A misnamed subscriber's type is a configuration error, explained."""
        bus = MessageBus(strict_names=True)
        with pytest.raises(InvalidMessageTypeError, match="past-tense"):
            bus.subscriber(PostEvent, lambda event: None)
        with pytest.raises(InvalidMessageTypeError, match="reads as an event"):
            bus.handler(PostCreated, lambda command: None)
        assert PostEvent not in bus.registry

    def test_allowed_and_off_by_default(self) -> None:
        """naming_allow lets a name through; without strict_names nothing is checked."""
        MessageBus(strict_names=True, naming_allow={"SeedFeed"}).handler(SeedFeed, print)
        MessageBus().subscriber(PostEvent, print)


class TestLintCommand:
    """`messagebus lint --app`."""

    def test_clean(self, cli: Cli) -> None:
        """A well-named app passes."""
        status, out, _ = cli("lint", "--app", "tests.cli_app:bus")
        assert (status, out.strip()) == (0, "message names read right")

    def test_findings_fail(self, cli: Cli) -> None:
        """Findings are printed and the exit status is 1; --allow silences them."""
        status, out, err = cli("lint", "--app", "tests.test_naming:misnamed")
        assert status == 1
        assert out.splitlines() == [
            "class      which       name             problem",
            "PostEvent  class name  PostEvent        should end in a past-tense verb: an event "
            "is a fact (for example PostPublished)",
            "PostEvent  wire name   blog.post.event  should end in a past-tense verb (for "
            "example blog.post.published)",
        ]
        assert "2 naming finding(s)" in err
        status, _, _ = cli("lint", "--app", "tests.test_naming:misnamed", "--allow", "PostEvent")
        assert status == 0


misnamed = MessageBus()
misnamed.subscriber(PostEvent, print)
