"""What the codec checks beyond msgspec, per message type, and the custom types it knows.

msgspec decodes strictly (no value changes JSON type on the way in) but leaves four
things to us, each checked here by a walk compiled once per message type from the same
type information msgspec uses (:func:`msgspec.inspect.type_info`), and skipped entirely
for a type with none of these fields:

- on encode, a ``float`` NaN or Infinity (msgspec writes ``null``), a ``Decimal`` NaN
  or Infinity, and a datetime without a UTC offset are refused;
- on decode, a ``Decimal`` must arrive as a JSON string of a finite number (msgspec
  also takes a JSON number, which the schema does not allow), and a datetime must carry
  its offset (msgspec reads one without as a naive datetime).

A walk raises :class:`Refused` with the field path (``data.lines[1].price``); the codec
turns it into its typed error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, get_type_hints

import attrs
import msgspec
import msgspec.inspect as mi

from messagebus._errors import InvalidMessageTypeError, SerializationError

__all__ = [
    "DECIMAL_PATTERN",
    "Check",
    "CustomType",
    "Refused",
    "check_decodable",
    "check_untyped",
    "decode_check",
    "describe",
    "encode_check",
]

DECIMAL_PATTERN = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
"""A finite decimal number as JSON text: what a ``Decimal`` field travels as."""

_DECIMAL = re.compile(DECIMAL_PATTERN)
_OFFSET = re.compile(r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$")

Check = Callable[[Any, str], None]
"""Checks one value at a field path; raises :class:`Refused`."""


class Refused(SerializationError):
    """A value the wire contract does not allow, at ``path``; the codec re-raises it typed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")


@attrs.frozen
class CustomType:
    """How one Python type the codec does not know travels (see :meth:`WireCodec.add_type`).

    Attributes:
        python_type: the class, as it appears in message annotations.
        encode: turns an instance into a JSON value (str, int, float, bool, None, or
            lists and dicts of those).
        decode: turns that JSON value back into an instance; raising ``ValueError`` or
            ``TypeError`` refuses the body (a ``DecodeError`` naming the field).
        schema: the JSON Schema of the JSON value, for the exported contracts.
    """

    python_type: type[Any]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    schema: Mapping[str, Any]


def encode_check(message_type: type[Any]) -> Check | None:
    """Return the walk that refuses what JSON cannot carry; None when nothing can fail."""
    return _Compiler(encoding=True).compile(mi.type_info(message_type))


def decode_check(message_type: type[Any]) -> Check | None:
    """Return the walk over decoded JSON values that msgspec's own rules leave open."""
    return _Compiler(encoding=False).compile(mi.type_info(message_type))


def _refuse_float(value: Any, path: str) -> None:
    if type(value) is float and not math.isfinite(value):
        raise Refused(path, "NaN and Infinity have no JSON form")


def _refuse_decimal(value: Any, path: str) -> None:
    if isinstance(value, Decimal) and not value.is_finite():
        raise Refused(path, "a Decimal NaN or Infinity has no JSON form")


def _refuse_naive(value: Any, path: str) -> None:
    if isinstance(value, datetime) and value.utcoffset() is None:
        raise Refused(
            path, "a datetime without a UTC offset (naive) is ambiguous; give it a tzinfo"
        )


def _decimal_text(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise Refused(path, "expected a decimal as a JSON string, got a number")
    if _DECIMAL.match(value) is None:
        raise Refused(path, f"{value[:40]!r} is not a finite decimal number")


def _datetime_text(value: Any, path: str) -> None:
    if isinstance(value, str) and _OFFSET.search(value) is None:
        raise Refused(path, "expected an RFC 3339 date-time with a UTC offset")


def check_untyped(value: Any, path: str) -> None:
    """Refuse what JSON cannot carry in a value of no known type, by its run-time types."""
    if isinstance(value, float):
        _refuse_float(value, path)
    elif isinstance(value, Decimal):
        _refuse_decimal(value, path)
    elif isinstance(value, datetime):
        _refuse_naive(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_untyped(item, f"{path}[{key!r}]")
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            check_untyped(item, f"{path}[{index}]")
    elif attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            check_untyped(getattr(value, field.name), f"{path}.{field.name}")


class _Compiler:
    """Builds the walk for one direction; a class seen twice (recursion) is walked lazily."""

    def __init__(self, *, encoding: bool) -> None:
        self.encoding = encoding
        self.classes: dict[type[Any], Check | None] = {}
        self.pending: set[type[Any]] = set()

    def compile(self, info: mi.Type) -> Check | None:
        if isinstance(info, mi.Metadata):
            return self.compile(info.type)
        if isinstance(info, mi.FloatType):
            return _refuse_float if self.encoding else None
        if isinstance(info, mi.DecimalType):
            return _refuse_decimal if self.encoding else _decimal_text
        if isinstance(info, mi.DateTimeType):
            return _refuse_naive if self.encoding else _datetime_text
        if isinstance(info, mi.AnyType):
            return check_untyped if self.encoding else None
        if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
            return _items(self.compile(info.item_type))
        if isinstance(info, mi.TupleType):
            return _positions([self.compile(item) for item in info.item_types])
        if isinstance(info, mi.DictType):
            return _values(self.compile(info.value_type))
        if isinstance(info, mi.DataclassType | mi.StructType):
            return self.fields(info)
        if isinstance(info, mi.UnionType):
            return self.union(info)
        return None

    def fields(self, info: mi.DataclassType | mi.StructType) -> Check | None:
        cls = info.cls
        if cls in self.pending:  # a recursive type: look its walk up when it runs
            classes = self.classes

            def later(value: Any, path: str) -> None:
                check = classes.get(cls)
                if check is not None:
                    check(value, path)

            return later
        if cls in self.classes:
            return self.classes[cls]
        self.pending.add(cls)
        checks = [
            (field.name, field.encode_name, check)
            for field in info.fields
            if (check := self.compile(field.type)) is not None
        ]
        self.pending.discard(cls)
        walk = (_attributes if self.encoding else _members)(checks) if checks else None
        self.classes[cls] = walk
        return walk

    def union(self, info: mi.UnionType) -> Check | None:
        # Each member is checked only on values of its own shape (by Python type when
        # encoding, by JSON type when decoding): msgspec allows one member per shape.
        members = [(member, self.compile(member)) for member in info.types]
        if self.encoding:
            if all(check is None for _, check in members):
                return None
            return check_untyped
        number_ok = any(isinstance(m, mi.IntType | mi.FloatType) for m, _ in members)
        by_json: dict[type[Any], Check] = {}
        for member, check in members:
            if check is None:
                continue
            if isinstance(member, mi.DecimalType | mi.DateTimeType):
                by_json[str] = check
                if not number_ok and isinstance(member, mi.DecimalType):
                    by_json[int] = by_json[float] = check
            elif isinstance(member, mi.DataclassType | mi.StructType | mi.DictType):
                by_json[dict] = check
            else:
                by_json[list] = check
        if not by_json:
            return None

        def union(value: Any, path: str) -> None:
            check = by_json.get(type(value))
            if check is not None:
                check(value, path)

        return union


def _items(check: Check | None) -> Check | None:
    if check is None:
        return None

    def items(value: Any, path: str) -> None:
        for index, item in enumerate(value):
            check(item, f"{path}[{index}]")

    return items


def _positions(checks: list[Check | None]) -> Check | None:
    if all(check is None for check in checks):
        return None

    def positions(value: Any, path: str) -> None:
        for index, (item, check) in enumerate(zip(value, checks, strict=False)):
            if check is not None:
                check(item, f"{path}[{index}]")

    return positions


def _values(check: Check | None) -> Check | None:
    if check is None:
        return None

    def values(value: Any, path: str) -> None:
        for key, item in value.items():
            check(item, f"{path}[{key!r}]")

    return values


def _attributes(checks: list[tuple[str, str, Check]]) -> Check:
    def attributes(value: Any, path: str) -> None:
        for name, wire_name, check in checks:
            check(getattr(value, name), f"{path}.{wire_name}")

    return attributes


def _members(checks: list[tuple[str, str, Check]]) -> Check:
    def members(value: Any, path: str) -> None:
        for _, wire_name, check in checks:
            if wire_name in value:
                check(value[wire_name], f"{path}.{wire_name}")

    return members


def describe(error: msgspec.ValidationError, root: str) -> str:
    """Return msgspec's validation message as ``root.path: what`` (``data.skus[1]: ...``)."""
    text = str(error)
    what, _, where = text.partition(" - at `$")
    where = where.removesuffix("`")
    path = f"{root}{where}" if root else where.removeprefix(".")
    what = what.replace("`", "")
    what = what[:1].lower() + what[1:]
    return f"{path}: {what}" if path else what


_UNION_OF_CLASSES = "Type unions may not contain more than one"


def _any_hook(python_type: type[Any], value: Any) -> Any:
    return value  # never called: a decoder is only built, to learn whether it can be


def _union_error(python_type: Any) -> TypeError | None:
    """Return msgspec's refusal of a union in ``python_type``, or None (it can decode)."""
    try:
        msgspec.json.Decoder(python_type, dec_hook=_any_hook)
    except TypeError as exc:
        if str(exc).startswith(_UNION_OF_CLASSES):
            return exc
    except NameError:  # annotations that do not resolve yet: the codec reports them in use
        pass
    return None


def check_decodable(message_type: type[Any]) -> None:
    """Refuse a message type msgspec cannot decode at all, at registration, not per body.

    msgspec tells the members of a union apart by their JSON type alone, so a union of
    two attrs classes (``Card | Transfer``: both JSON objects) has no decoder.

    Raises:
        InvalidMessageTypeError: a field's type is such a union; the message names it.
    """
    error = _union_error(message_type)
    if error is None:
        return
    # The type resolved for msgspec, so its hints resolve; the first failing field is it.
    hints = get_type_hints(message_type)
    field = next((f".{name}" for name, hint in hints.items() if _union_error(hint)), "")
    raise InvalidMessageTypeError(
        f"{message_type.__qualname__}{field} cannot be decoded: {error}. msgspec tells "
        "union members apart by JSON type, and attrs classes are all objects: use one "
        "class with an enum or Literal field saying which kind it is, or separate "
        "message types"
    ) from error
