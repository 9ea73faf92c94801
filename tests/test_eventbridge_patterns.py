"""EventBridge event patterns (the in-memory double's matcher), as AWS documents them."""

from __future__ import annotations

from typing import Any

import pytest

from messagebus import InvalidArgumentError
from messagebus.transports.eventbridge import matches
from messagebus.transports.eventbridge._patterns import check_pattern

EVENT: dict[str, Any] = {
    "version": "0",
    "id": "e1",
    "detail-type": "blog.post.published",
    "source": "blog",
    "account": "000000000000",
    "time": "2026-12-04T18:00:00Z",
    "region": "us-east-1",
    "resources": [],
    "detail": {"type": "blog.post.published", "data": {"words": 120, "tags": ["a", "b"]}},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail-type": ["blog.post.published"]}, True),
        ({"detail-type": ["blog.post.deleted", "blog.post.published"]}, True),
        ({"detail-type": ["blog.post.deleted"]}, False),
        ({"source": ["blog"], "detail-type": ["blog.post.deleted"]}, False),
        ({"detail": {"type": ["blog.post.published"]}}, True),
        ({"detail": {"data": {"words": [120.0]}}}, True),
        ({"detail": {"data": {"tags": ["b"]}}}, True),
        ({"detail": {"data": {"tags": ["c"]}}}, False),
    ],
)
def test_exact_values_and_nesting(pattern: dict[str, Any], expected: bool) -> None:
    """Keys AND, a list's values OR, nested objects match nested objects, lists any item."""
    assert matches(pattern, EVENT) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail-type": [{"prefix": "blog."}]}, True),
        ({"detail-type": [{"prefix": "shop."}]}, False),
        ({"source": [{"anything-but": "shop"}]}, True),
        ({"source": [{"anything-but": ["shop", "blog"]}]}, False),
        ({"detail-type": [{"anything-but": {"prefix": "blog."}}]}, False),
        ({"detail": {"data": {"words": [{"numeric": [">", 100]}]}}}, True),
        ({"detail": {"data": {"words": [{"numeric": [">=", 0, "<", 120]}]}}}, False),
        ({"detail": {"data": {"words": [{"numeric": ["=", 120]}]}}}, True),
        ({"detail": {"type": [{"numeric": [">", 0]}]}}, False),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"missing": [{"anything-but": "x"}]}}, False),
    ],
)
def test_content_filters(pattern: dict[str, Any], expected: bool) -> None:
    """prefix, anything-but (values or a prefix), numeric ranges, exists."""
    assert matches(pattern, EVENT) is expected


def test_a_boolean_is_not_a_number() -> None:
    """JSON equality: true does not equal 1, and is not numeric."""
    event = {"detail": {"flag": True}}
    assert not matches({"detail": {"flag": [1]}}, event)
    assert matches({"detail": {"flag": [True]}}, event)
    assert not matches({"detail": {"flag": [{"numeric": [">", 0]}]}}, event)


@pytest.mark.parametrize(
    "pattern",
    [
        {},
        {"source": "blog"},
        {"source": []},
        {"source": [{"prefix": 1}]},
        {"source": [{"suffix": "g", "prefix": "b"}]},
        {"source": [{"numeric": [">"]}]},
        {"source": [{"numeric": ["~", 1]}]},
        {"source": [{"anything-but": {"suffix": "x"}}]},
        {"source": [{"exists": "yes"}]},
        {"source": [{"unknown-filter": 1}]},
        {"source": [["nested"]]},
    ],
)
def test_unreadable_patterns_are_refused(pattern: dict[str, Any]) -> None:
    """A pattern AWS would refuse in PutRule is an InvalidArgumentError, never a non-match."""
    with pytest.raises(InvalidArgumentError):
        check_pattern(pattern)
