"""EventBridge event patterns: does an event match a rule's pattern? A pure function.

The subset of AWS's pattern language the in-memory double needs (AWS documentation,
"Amazon EventBridge event patterns"):

- A pattern is a JSON object whose keys are the event's keys; a nested object matches a
  nested object (``detail``), every key of the pattern must match (AND).
- A key's value is a list of alternatives (OR). An alternative is an exact value (a
  string, a number, a boolean, null) or one content filter:
  ``{"prefix": "..."}``, ``{"anything-but": value | [values] | {"prefix": "..."}}``,
  ``{"numeric": [op, number, (op, number)]}`` with ``<``, ``<=``, ``=``, ``>=``, ``>``,
  ``{"exists": bool}``.
- When the event's value is a list, the key matches if any of its items matches.
- A key the event lacks matches only ``{"exists": false}``.

Anything else in a pattern raises :class:`~messagebus.InvalidArgumentError` (AWS refuses
such a pattern in PutRule, so the double refuses it too).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from messagebus._errors import InvalidArgumentError

__all__ = ["check_pattern", "matches"]

_MISSING = object()
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    "=": operator.eq,
    ">=": operator.ge,
    ">": operator.gt,
}


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Return whether ``event`` (a decoded AWS event) matches ``pattern``.

    Raises:
        InvalidArgumentError: ``pattern`` is not a pattern this module reads.
    """
    for key, wanted in pattern.items():
        value = event.get(key, _MISSING) if isinstance(event, Mapping) else _MISSING
        if isinstance(wanted, Mapping):
            if not isinstance(value, Mapping) or not matches(wanted, value):
                return False
        elif isinstance(wanted, list):
            if not any(_alternative(choice, value) for choice in wanted):
                return False
        else:
            raise InvalidArgumentError(
                f"pattern key {key!r} must map to a list or an object, not {wanted!r}"
            )
    return True


def check_pattern(pattern: object) -> None:
    """Raise :class:`~messagebus.InvalidArgumentError` unless ``pattern`` is readable here."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise InvalidArgumentError(f"an event pattern is a non-empty JSON object: {pattern!r}")
    _check_leaves(pattern)


def _check_leaves(pattern: Mapping[str, Any]) -> None:
    for wanted in pattern.values():
        if isinstance(wanted, Mapping):
            _check_leaves(wanted)
        elif isinstance(wanted, list) and wanted:
            for choice in wanted:
                _alternative(choice, "")  # builds each filter, which checks its argument
        else:
            raise InvalidArgumentError(f"a pattern key maps to a non-empty list: {wanted!r}")


def _alternative(choice: object, value: object) -> bool:
    """One alternative of a key against the event's value (any item of a list)."""
    if isinstance(choice, Mapping):
        if len(choice) != 1:
            raise InvalidArgumentError(f"a content filter has exactly one key: {choice!r}")
        ((kind, argument),) = choice.items()
        if kind == "exists":
            if not isinstance(argument, bool):
                raise InvalidArgumentError(f"exists takes true or false: {argument!r}")
            return (value is not _MISSING) == argument
        test = _filter(kind, argument)
        return value is not _MISSING and any(test(item) for item in _items(value))
    if isinstance(choice, (list, tuple)):
        raise InvalidArgumentError(f"a pattern value is not a list of lists: {choice!r}")
    return value is not _MISSING and any(_same(choice, item) for item in _items(value))


def _filter(kind: str, argument: object) -> Callable[[object], bool]:
    if kind == "prefix":
        if not isinstance(argument, str):
            raise InvalidArgumentError(f"prefix takes a string: {argument!r}")
        return lambda item: isinstance(item, str) and item.startswith(argument)
    if kind == "anything-but":
        return _anything_but(argument)
    if kind == "numeric":
        return _numeric(argument)
    raise InvalidArgumentError(f"content filter {kind!r} is not one this double reads")


def _anything_but(argument: object) -> Callable[[object], bool]:
    if isinstance(argument, Mapping):
        if set(argument) != {"prefix"} or not isinstance(argument["prefix"], str):
            raise InvalidArgumentError(f"anything-but takes values or a prefix: {argument!r}")
        prefix = argument["prefix"]
        return lambda item: not (isinstance(item, str) and item.startswith(prefix))
    refused = list(argument) if isinstance(argument, list) else [argument]
    for value in refused:
        if isinstance(value, (Mapping, list)):
            raise InvalidArgumentError(f"anything-but takes plain values: {argument!r}")
    return lambda item: not any(_same(value, item) for value in refused)


def _numeric(argument: object) -> Callable[[object], bool]:
    if not isinstance(argument, list) or len(argument) not in (2, 4):
        raise InvalidArgumentError(f"numeric takes [op, n] or [op, n, op, n]: {argument!r}")
    tests: list[tuple[Callable[[float, float], bool], float]] = []
    for index in range(0, len(argument), 2):
        op, bound = argument[index], argument[index + 1]
        if op not in _COMPARISONS or not _is_number(bound):
            raise InvalidArgumentError(f"numeric takes an operator and a number: {argument!r}")
        tests.append((_COMPARISONS[op], float(bound)))
    return lambda item: (
        _is_number(item)
        and all(
            compare(float(item), bound)  # type: ignore[arg-type]
            for compare, bound in tests
        )
    )


def _same(expected: object, item: object) -> bool:
    # JSON equality: 1 and 1.0 match, True and 1 do not.
    if isinstance(expected, bool) or isinstance(item, bool):
        return expected is item
    if _is_number(expected) and _is_number(item):
        return float(expected) == float(item)  # type: ignore[arg-type]
    return expected == item


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _items(value: object) -> Sequence[object]:
    return value if isinstance(value, list) else [value]
