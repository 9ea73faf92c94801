"""Message contracts: every registered type as JSON Schema, and breaking-change checks.

:func:`export_schemas` describes a registry as one JSON document (schemas made by
msgspec, which reads attrs classes)::

    {"format": 1,
     "types": {"blog.post.published": {"1": {"kind": "event", "schema": {...}}}},
     "$defs": {...shared definitions of nested types...}}

:func:`breaking_changes` compares a saved export with the current one, type by type,
by wire name and version, with the usual rules for a message contract:

- a type (name + version) that disappeared breaks (renaming a type is removing one);
- a field that was required and is gone, or whose schema changed, breaks;
- a new required field breaks (messages written before it lack it);
- a new optional field, a removed optional field, or a new type does not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from messagebus._errors import InvalidArgumentError, InvalidMessageTypeError
from messagebus._messages import message_kind
from messagebus._registry import MessageRegistry

__all__ = ["FORMAT", "breaking_changes", "export_schemas"]

FORMAT = 1
"""The layout of the export document; bumped if it ever changes."""

_REF_TEMPLATE = "#/$defs/{name}"


def export_schemas(registry: MessageRegistry) -> dict[str, Any]:
    """Return every type in ``registry`` with its kind and JSON Schema.

    Raises:
        InvalidMessageTypeError: a type's field annotations do not resolve (a name
            defined inside a function, under ``from __future__ import annotations``)
            or have no JSON Schema.
    """
    message_types = list(registry)
    try:
        schemas, definitions = msgspec.json.schema_components(
            message_types, ref_template=_REF_TEMPLATE
        )
    except (NameError, TypeError) as exc:
        raise InvalidMessageTypeError(f"cannot describe the message types: {exc}") from exc
    types: dict[str, dict[str, Any]] = {}
    for message_type, reference in zip(message_types, schemas, strict=True):
        name = reference["$ref"].removeprefix("#/$defs/")
        types.setdefault(message_type.__message_name__, {})[
            str(message_type.__message_version__)
        ] = {"kind": message_kind(message_type), "schema": definitions[name]}
    return {"format": FORMAT, "types": types, "$defs": definitions}


def breaking_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Return a sentence per breaking change from ``saved`` to ``current`` (empty: none).

    Raises:
        InvalidArgumentError: either document is not an export of this format.
    """
    for document in (saved, current):
        if document.get("format") != FORMAT or not isinstance(document.get("types"), dict):
            raise InvalidArgumentError(f"not a messagebus schema export (format {FORMAT})")
    changes: list[str] = []
    for name, versions in saved["types"].items():
        for version, entry in versions.items():
            now = current["types"].get(name, {}).get(version)
            if now is None:
                changes.append(f"{name} v{version}: the type is gone (removed or renamed)")
                continue
            changes.extend(
                f"{name} v{version}: {change}"
                for change in _field_changes(entry["schema"], saved, now["schema"], current)
            )
    return changes


def _field_changes(
    before: Mapping[str, Any],
    saved: Mapping[str, Any],
    after: Mapping[str, Any],
    current: Mapping[str, Any],
) -> list[str]:
    """Compare one type's schema in the saved export with its schema in the current one."""
    old_fields, new_fields = before.get("properties", {}), after.get("properties", {})
    old_required, new_required = set(before.get("required", ())), set(after.get("required", ()))
    changes = []
    for field in sorted(old_fields):
        if field not in new_fields:
            if field in old_required:
                changes.append(f"required field {field!r} was removed")
        elif _canonical(old_fields[field], saved) != _canonical(new_fields[field], current):
            changes.append(f"field {field!r} changed type")
    changes.extend(f"new required field {field!r}" for field in sorted(new_required - old_required))
    return changes


def _resolve(schema: Mapping[str, Any], document: Mapping[str, Any]) -> Mapping[str, Any]:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        return dict(document.get("$defs", {}).get(reference.removeprefix("#/$defs/"), {}))
    return schema


def _canonical(schema: Any, document: Mapping[str, Any]) -> str:
    """Return a field's schema as text, nested references expanded, defaults left out."""

    def expand(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference not in seen:
                return expand(_resolve(node, document), seen | {reference})
            return {
                key: expand(value, seen)
                for key, value in node.items()
                if key not in ("default", "title", "description")
            }
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        return node

    return json.dumps(expand(schema, frozenset()), sort_keys=True)
