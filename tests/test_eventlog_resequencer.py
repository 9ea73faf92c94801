from __future__ import annotations

import random

import pytest

from messagebus import SequenceGapError
from messagebus._envelope import Envelope
from messagebus._errors import DecodeError, DispatchError
from messagebus._messages import Message
from messagebus.eventlog import SEQUENCE_HEADER, Resequenced, Resequencer
from tests.eventlog_fixtures import event


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def numbered(stream: str, sequence: int) -> Envelope[Message]:
    return event(sequence, stream, **{SEQUENCE_HEADER: str(sequence)})


def ids(envelopes: tuple[Envelope[Message], ...]) -> list[tuple[str | None, int]]:
    return [(e.group_key, int(e.headers[SEQUENCE_HEADER])) for e in envelopes]


class TestResequencer:
    """Each stream in sequence; early arrivals held, bounded; stale redeliveries skipped."""

    def test_in_order_arrivals_pass_straight_through(self) -> None:
        """Sequence 1, 2, 3 of a stream are each ready on arrival."""
        resequencer = Resequencer()
        for n in (1, 2, 3):
            assert ids(resequencer.push(numbered("a", n)).ready) == [("a", n)]
        assert resequencer.last_delivered("a") == 3
        assert resequencer.held == 0

    def test_early_arrivals_wait_for_the_gap(self) -> None:
        """3 and 2 are held until 1 comes; then all three are ready, in order."""
        resequencer = Resequencer()
        assert resequencer.push(numbered("a", 3)) == Resequenced()
        assert resequencer.push(numbered("a", 2)) == Resequenced()
        assert resequencer.held == 2
        assert ids(resequencer.push(numbered("a", 1)).ready) == [("a", 1), ("a", 2), ("a", 3)]
        assert resequencer.held == 0

    def test_streams_do_not_wait_for_each_other(self) -> None:
        """A gap in one stream holds only that stream."""
        resequencer = Resequencer()
        resequencer.push(numbered("a", 2))
        assert ids(resequencer.push(numbered("b", 1)).ready) == [("b", 1)]

    def test_unordered_envelopes_are_ready_at_once(self) -> None:
        """No group_key, or no sequence header: nothing to order by."""
        resequencer = Resequencer()
        no_stream, no_header = event(1), event(2, "a")
        assert resequencer.push(no_stream).ready == (no_stream,)
        assert resequencer.push(no_header).ready == (no_header,)

    @pytest.mark.parametrize("seed", range(5))
    def test_shuffled_input_comes_out_in_sequence(self, seed: int) -> None:
        """Four streams of 50, shuffled together, redeliveries mixed in: each in order, once."""
        rng = random.Random(seed)
        sent = [numbered(stream, n) for stream in "abcd" for n in range(1, 51)]
        arrivals = sent + rng.sample(sent, 40)  # 40 redeliveries
        rng.shuffle(arrivals)
        resequencer = Resequencer(max_held=1000)
        delivered: dict[str | None, list[int]] = {}
        duplicates = 0
        for envelope in arrivals:
            outcome = resequencer.push(envelope)
            assert outcome.failed == ()
            duplicates += len(outcome.duplicates)
            for stream, n in ids(outcome.ready):
                delivered.setdefault(stream, []).append(n)
        assert delivered == {stream: list(range(1, 51)) for stream in "abcd"}
        assert duplicates == 40
        assert resequencer.held == 0

    def test_stale_redeliveries_are_duplicates(self) -> None:
        """A sequence at or below the last delivered, or already held, is skipped."""
        resequencer = Resequencer()
        resequencer.push(numbered("a", 1))
        resequencer.push(numbered("a", 3))
        stale, twin = numbered("a", 1), numbered("a", 3)
        assert resequencer.push(stale) == Resequenced(duplicates=(stale,))
        assert resequencer.push(twin) == Resequenced(duplicates=(twin,))
        assert resequencer.held == 1

    def test_a_gap_that_never_fills_times_out(self) -> None:
        """Held past max_wait: a SequenceGapError naming the envelope, to dead-letter."""
        clock = FakeClock()
        resequencer = Resequencer(max_wait=30, clock=clock)
        held = numbered("a", 3)
        resequencer.push(numbered("a", 1))
        resequencer.push(held)
        clock.now += 10
        resequencer.push(numbered("a", 4))
        assert resequencer.next_deadline() == 130
        clock.now += 19.5
        assert resequencer.expire() == Resequenced()
        clock.now += 0.5
        (error,) = resequencer.expire().failed
        assert isinstance(error, SequenceGapError)
        assert isinstance(error, DispatchError)
        assert error.envelope is held
        assert (error.stream, error.sequence, error.expected, error.reason) == (
            "a",
            3,
            2,
            "timeout",
        )
        assert "sequence 2 is missing" in str(error)
        assert resequencer.next_deadline() == 140
        clock.now += 10
        outcome = resequencer.push(numbered("b", 1))  # a push applies the time bound too
        assert [e.sequence for e in outcome.failed] == [4]
        assert resequencer.next_deadline() is None
        assert resequencer.held == 0

    def test_after_a_timeout_the_stream_still_keeps_order(self) -> None:
        """The missing event arriving late is delivered; the expired one must come again."""
        clock = FakeClock()
        resequencer = Resequencer(max_wait=1, clock=clock)
        resequencer.push(numbered("a", 2))
        clock.now += 1
        assert len(resequencer.expire().failed) == 1
        assert ids(resequencer.push(numbered("a", 1)).ready) == [("a", 1)]
        assert ids(resequencer.push(numbered("a", 2)).ready) == [("a", 2)]

    def test_delivered_envelopes_never_time_out(self) -> None:
        """Once a held envelope is delivered, its deadline passes without a failure."""
        clock = FakeClock()
        resequencer = Resequencer(max_wait=1, clock=clock)
        resequencer.push(numbered("a", 2))
        resequencer.push(numbered("a", 1))
        clock.now += 5
        assert resequencer.expire() == Resequenced()

    def test_a_full_resequencer_refuses_early_arrivals(self) -> None:
        """Past max_held, an early arrival fails at once; the gap filler still goes through."""
        resequencer = Resequencer(max_held=2)
        resequencer.push(numbered("a", 2))
        resequencer.push(numbered("b", 2))
        refused = numbered("a", 3)
        (error,) = resequencer.push(refused).failed
        assert (error.envelope, error.reason) == (refused, "full")
        assert ids(resequencer.push(numbered("a", 1)).ready) == [("a", 1), ("a", 2)]

    def test_skip_to_accepts_a_loss(self) -> None:
        """An operator skips a lost range: what was held after it is released."""
        resequencer = Resequencer()
        for n in (2, 4, 5):
            resequencer.push(numbered("a", n))
        outcome = resequencer.skip_to("a", 3)
        assert ids(outcome.ready) == [("a", 4), ("a", 5)]
        assert ids(outcome.duplicates) == [("a", 2)]
        assert resequencer.last_delivered("a") == 5
        assert resequencer.held == 0
        assert resequencer.next_deadline() is None

    def test_resuming_from_known_positions(self) -> None:
        """delivered= says where each stream stands, so a restart does not wait for 1."""
        resequencer = Resequencer(delivered={"a": 41})
        assert ids(resequencer.push(numbered("a", 42)).ready) == [("a", 42)]

    @pytest.mark.parametrize("header", ["0", "-1", "x", "", " 3", "٣"])
    def test_a_malformed_sequence_header_is_refused(self, header: str) -> None:
        """The header must be a positive decimal integer."""
        with pytest.raises(DecodeError, match="positive integer"):
            Resequencer().push(event(1, "a", **{SEQUENCE_HEADER: header}))

    def test_negative_bounds_are_refused(self) -> None:
        """max_held and max_wait are counts and seconds, not negative."""
        with pytest.raises(ValueError, match="negative"):
            Resequencer(max_wait=-1)
