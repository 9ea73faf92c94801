from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from messagebus import Envelope
from messagebus._envelope import wire_envelope
from messagebus._ids import new_message_id
from tests.messages import ChargeCard, PostPublished, PublishPost

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class TestMessageIds:
    """Message ids are UUIDv7 text, time-ordered to the millisecond."""

    def test_layout(self) -> None:
        """Version 7, RFC variant, lowercase hex with dashes."""
        for _ in range(200):
            assert UUID7.fullmatch(new_message_id())

    def test_carries_the_current_millisecond(self) -> None:
        """The first 48 bits are Unix milliseconds."""
        before = int(datetime.now(UTC).timestamp() * 1000)
        millis = int(new_message_id().replace("-", "")[:12], 16)
        after = int(datetime.now(UTC).timestamp() * 1000)
        assert before <= millis <= after

    def test_unique(self) -> None:
        """No repeats in a burst made within the same milliseconds."""
        ids = [new_message_id() for _ in range(10_000)]
        assert len(set(ids)) == len(ids)

    def test_each_millisecond_its_own(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The timestamp's text, kept for its millisecond, changes with the millisecond."""
        import messagebus._ids

        for millis in (0x0193_B1C4_1D2E, 0x0193_B1C4_1D2E, 0x0193_B1C4_1D2F, 0xFFFF_FFFF_FFFF, 5):
            monkeypatch.setattr(messagebus._ids, "time_ns", lambda m=millis: m * 1_000_000 + 999)
            made = new_message_id()
            assert UUID7.fullmatch(made)
            assert int(made.replace("-", "")[:12], 16) == millis

    def test_random_bits_all_vary(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each of a batch's 62 random bits takes both values (none is stuck by the layout)."""
        import messagebus._ids

        fixed = (0xF << 76) | (0x3 << 62) | 0xFFF  # the version, variant and counter bits
        seen_one, seen_zero = 0, 0
        for millis in range(1, 2_001):  # a millisecond, hence a batch, per id
            monkeypatch.setattr(messagebus._ids, "time_ns", lambda m=millis: m * 1_000_000)
            value = int(new_message_id().replace("-", ""), 16) & ((1 << 80) - 1)
            assert value & 0xFFF == 0  # a batch's first id
            seen_one |= value & ~fixed
            seen_zero |= ~value
        random_bits = ((1 << 80) - 1) & ~fixed
        assert seen_one & random_bits == random_bits
        assert seen_zero & random_bits == random_bits

    def test_one_millisecond_counts_in_order(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Ids of one millisecond count up, past the 12-bit counter's 4,096 too."""
        import messagebus._ids

        monkeypatch.setattr(messagebus._ids, "time_ns", lambda: 0x0193_B1C4_1D2E * 1_000_000)
        ids = [new_message_id() for _ in range(3 * 4096 + 5)]
        values = [int(made.replace("-", ""), 16) for made in ids]
        assert all(UUID7.fullmatch(made) for made in ids)
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        # Within a batch the counter adds one; the next batch's random bits add one.
        assert values[1] - values[0] == 1
        assert (values[4096] >> 12) - (values[4095] >> 12) == 1
        assert values[4096] & 0xFFF == 0

    def test_random_bits_that_overflow_are_drawn_again(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A batch whose random bits are all ones cannot add one: the next batch redraws."""
        import messagebus._ids

        draws = iter([(1 << 62) - 1, 5])
        monkeypatch.setattr(messagebus._ids, "time_ns", lambda: 0x0193_B1C4_1D2F * 1_000_000)
        monkeypatch.setattr(messagebus._ids, "getrandbits", lambda bits: next(draws))
        ids = [new_message_id() for _ in range(4097)]
        assert UUID7.fullmatch(ids[4096])
        assert int(ids[4096].replace("-", ""), 16) & ((1 << 62) - 1) == 5 << 12
        assert len(set(ids)) == len(ids)

    def test_a_forked_child_starts_its_own_batch(self, tmp_path: Path) -> None:
        """A child forked mid-batch does not continue its parent's counter."""
        script = tmp_path / "fork_ids.py"
        script.write_text(
            textwrap.dedent(
                """
                import os, sys
                import messagebus._ids as ids

                ids.time_ns = lambda: 0x0193_B1C4_1D2E * 1_000_000  # one millisecond
                first = ids.new_message_id()
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.write(write, ids.new_message_id().encode())
                    os._exit(0)
                os.waitpid(pid, 0)
                child = os.read(read, 100).decode()
                print(first, ids.new_message_id(), child)
                """
            )
        )
        completed = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True
        )
        first, parent, child = completed.stdout.split()
        assert len({first, parent, child}) == 3
        assert child.endswith("000")  # the first id of a batch of its own
        assert child[:33] != first[:33]  # with random bits of its own


class TestEnvelope:
    """Envelope metadata, made lazily and stable once made."""

    def test_root_envelope(self) -> None:
        """A root's correlation id is its own id; it has no cause."""
        envelope = Envelope(PublishPost("hello"))
        assert UUID7.fullmatch(envelope.message_id)
        assert envelope.message_id == envelope.message_id
        assert envelope.correlation_id == envelope.message_id
        assert envelope.causation_id is None
        assert envelope.attempt == 1
        assert dict(envelope.headers) == {}
        assert envelope.idempotency_key is None
        assert envelope.group_key is None
        assert envelope.message_type == "blog.post.publish"
        assert envelope.message_version == 1
        assert envelope.kind == "command"

    def test_child_inherits_correlation_and_points_at_its_cause(self) -> None:
        """A child carries the root's correlation id and its parent's id as cause."""
        root = Envelope(PublishPost("hello"))
        child = Envelope(PostPublished(1, "hello"), parent=root)
        grandchild = Envelope(ChargeCard(5), parent=child)
        assert child.correlation_id == root.message_id
        assert child.causation_id == root.message_id
        assert grandchild.correlation_id == root.message_id
        assert grandchild.causation_id == child.message_id
        assert child.kind == "event"

    def test_explicit_ids_win(self) -> None:
        """Ids given to the constructor are kept as given."""
        root = Envelope(PublishPost("x"))
        envelope = Envelope(
            PostPublished(1, "x"),
            message_id="m",
            correlation_id="c",
            causation_id="k",
            parent=root,
        )
        assert (envelope.message_id, envelope.correlation_id, envelope.causation_id) == (
            "m",
            "c",
            "k",
        )

    def test_timestamp_is_utc_now(self) -> None:
        """The timestamp is taken when the envelope is made, in UTC."""
        before = datetime.now(UTC)
        envelope = Envelope(PublishPost("x"))
        after = datetime.now(UTC)
        assert before - timedelta(microseconds=1) <= envelope.timestamp <= after
        assert envelope.timestamp.tzinfo is UTC

    def test_given_timestamp_is_kept_to_the_microsecond(self) -> None:
        """A timestamp read from the wire round-trips."""
        when = datetime(2026, 11, 26, 12, 30, 1, 123456, tzinfo=UTC)
        assert Envelope(PublishPost("x"), timestamp=when).timestamp == when

    def test_headers_are_a_read_only_copy(self) -> None:
        """Changing the caller's dict afterwards does not change the envelope."""
        headers = {"tenant": "acme"}
        envelope = Envelope(PublishPost("x"), headers=headers)
        headers["tenant"] = "evil"
        assert envelope.headers == {"tenant": "acme"}
        with pytest.raises(TypeError):
            envelope.headers["x"] = "y"  # type: ignore[index]

    def test_replace_keeps_ids_and_time(self) -> None:
        """replace() changes only what it is given."""
        envelope = Envelope(PublishPost("x"), idempotency_key="k", headers={"a": "b"})
        retried = envelope.replace(attempt=2)
        assert retried.attempt == 2
        assert retried.message_id == envelope.message_id
        assert retried.correlation_id == envelope.correlation_id
        assert retried.timestamp == envelope.timestamp
        assert retried.idempotency_key == "k"
        assert retried.headers == {"a": "b"}
        assert retried != envelope
        assert retried.replace(attempt=1) == envelope

    def test_replace_refuses_unknown_fields(self) -> None:
        """A typo in replace() is an error, not a silent no-op."""
        with pytest.raises(TypeError, match="atempt"):
            Envelope(PublishPost("x")).replace(atempt=2)

    def test_only_messages_travel(self) -> None:
        """An envelope refuses to carry anything but a Command or an Event."""
        with pytest.raises(TypeError):
            Envelope("not a message")  # type: ignore[type-var]

    def test_equality_and_repr(self) -> None:
        """Envelopes compare by content; the repr shows the ids."""
        envelope = Envelope(PublishPost("x"))
        assert envelope == envelope.replace()
        assert envelope != object()
        assert envelope.message_id in repr(envelope)


class TestWireEnvelope:
    """The codec's shortcut builds exactly what Envelope() would."""

    @pytest.mark.parametrize("correlation_id", [None, "c-1"])
    def test_equals_the_keyword_constructor(self, correlation_id: str | None) -> None:
        """Every field, the timestamp's precision and the correlation default agree."""
        values = {
            "message_id": "m-1",
            "correlation_id": correlation_id,
            "causation_id": "k-1",
            "timestamp": datetime(2026, 12, 4, 12, 0, 0, 123456, tzinfo=UTC),
            "headers": {"a": "b"},
            "idempotency_key": "key",
            "group_key": "g",
            "attempt": 3,
        }
        built = wire_envelope(PostPublished(1, "t"), **values)  # type: ignore[arg-type]
        expected = Envelope(PostPublished(1, "t"), **values)  # type: ignore[arg-type]
        assert built == expected
        assert built.correlation_id == (correlation_id or "m-1")
        assert built.timestamp == expected.timestamp
        assert isinstance(built, Envelope)
