"""AWS's own events as a rule's builder sees them: S3, DynamoDB Streams, EventBridge.

Each view reads the fields rules match on and builders usually need, from AWS's
documented formats, and keeps the record as delivered in ``raw`` for the rest. Each has
an ``identity``: the text a redelivery of the same event repeats (the S3 object's
sequencer, the stream record's ``eventID``, the EventBridge event's ``id``, which an
archive replay keeps), from which the entry point derives a stable message id, so
idempotency treats a redelivery or a replay as the duplicate it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import attrs

from messagebus._errors import DecodeError

__all__ = ["DynamoDBChange", "EventBridgeEvent", "S3Notification"]


@attrs.frozen
class S3Notification:
    """One S3 event notification record (``eventSource == "aws:s3"``).

    Attributes:
        event_name: ``"ObjectCreated:Put"``, ``"ObjectRemoved:Delete"`` and so on.
        bucket: the bucket's name.
        key: the object's key, URL-decoded (S3 sends it encoded, a space as ``+``).
        size: the object's size in bytes; None for removals.
        etag: the object's ETag, when S3 sends one.
        version_id: the object's version, on a versioned bucket.
        sequencer: orders the events of one key; the same for a redelivered event.
        time: when the event happened (``eventTime``).
        raw: the record as delivered.
    """

    event_name: str
    bucket: str
    key: str
    size: int | None
    etag: str | None
    version_id: str | None
    sequencer: str | None
    time: datetime | None
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> S3Notification:
        """Read ``record``; raise :class:`~messagebus.DecodeError` if it lacks the S3 part."""
        try:
            s3 = record["s3"]
            obj = s3["object"]
            return cls(
                event_name=str(record["eventName"]),
                bucket=str(s3["bucket"]["name"]),
                key=unquote_plus(str(obj["key"])),
                size=obj.get("size"),
                etag=obj.get("eTag"),
                version_id=obj.get("versionId"),
                sequencer=obj.get("sequencer"),
                time=_iso(record.get("eventTime")),
                raw=record,
            )
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"S3 record without {exc}: {_brief(record)}") from exc

    @property
    def identity(self) -> str:
        """What a redelivery of this event repeats."""
        request = (self.raw.get("responseElements") or {}).get("x-amz-request-id")
        parts = [self.bucket, self.key, self.version_id, self.event_name]
        return "s3:" + json.dumps([*parts, self.sequencer or request])

    def describe(self) -> str:
        """Return a line naming the record, for a dead letter's reason."""
        return f"S3 {self.event_name} s3://{self.bucket}/{self.key}"


@attrs.frozen
class DynamoDBChange:
    """One DynamoDB Streams record (``eventSource == "aws:dynamodb"``).

    The images are plain Python values, read by boto3's
    :class:`~boto3.dynamodb.types.TypeDeserializer` (numbers are :class:`~decimal.Decimal`,
    sets are :class:`set`, binary values :class:`~boto3.dynamodb.types.Binary`); boto3
    is in Lambda's Python runtimes, and in the ``aws-lambda`` extra.

    Attributes:
        event_name: ``"INSERT"``, ``"MODIFY"`` or ``"REMOVE"``.
        table: the table's name (from the stream's ARN).
        keys: the item's key attributes.
        new_image: the item after the change (None for REMOVE, or when the stream's
            view type leaves it out).
        old_image: the item before the change (None for INSERT, or left out).
        sequence_number: the record's place in its shard: what a partial batch
            response reports.
        time: ``ApproximateCreationDateTime``.
        raw: the record as delivered (typed attribute values untouched).
    """

    event_name: str
    table: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    sequence_number: str
    time: datetime | None
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> DynamoDBChange:
        """Read ``record``; raise :class:`~messagebus.DecodeError` on a malformed one."""
        try:
            change = record["dynamodb"]
            created = change.get("ApproximateCreationDateTime")
            return cls(
                event_name=str(record["eventName"]),
                table=table_of(record.get("eventSourceARN")),
                keys=_image(change["Keys"]),
                new_image=_image(change["NewImage"]) if "NewImage" in change else None,
                old_image=_image(change["OldImage"]) if "OldImage" in change else None,
                sequence_number=str(change["SequenceNumber"]),
                time=None if created is None else datetime.fromtimestamp(float(created), UTC),
                raw=record,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(
                f"DynamoDB Streams record unreadable ({exc!r}): {_brief(record)}"
            ) from exc

    @property
    def identity(self) -> str:
        """What a redelivery of this record repeats: its ``eventID``."""
        return f"dynamodb:{self.raw.get('eventID') or self.sequence_number}"

    def describe(self) -> str:
        """Return a line naming the record, for a dead letter's reason."""
        return f"DynamoDB {self.event_name} on table {self.table}"


@attrs.frozen
class EventBridgeEvent:
    """An EventBridge event whose ``detail`` is not our envelope (an ``aws.*`` or other source).

    Attributes:
        id: the event's id; an archive replay delivers the same id again.
        source: ``"aws.s3"``, ``"com.example.billing"`` and so on.
        detail_type: the event's ``detail-type``.
        detail: the event's ``detail`` (any JSON).
        time: the event's ``time``.
        resources: the ARNs the event concerns.
        replay_name: the archive replay that delivered it (``replay-name``), if any.
        raw: the event as delivered.
    """

    id: str
    source: str
    detail_type: str
    detail: Any
    time: datetime | None
    resources: tuple[str, ...]
    replay_name: str | None
    raw: Mapping[str, Any] = attrs.field(repr=False)

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> EventBridgeEvent:
        """Read ``event``; raise :class:`~messagebus.DecodeError` if it has no id or source."""
        try:
            return cls(
                id=str(event["id"]),
                source=str(event["source"]),
                detail_type=str(event["detail-type"]),
                detail=event.get("detail"),
                time=_iso(event.get("time")),
                resources=tuple(event.get("resources") or ()),
                replay_name=event.get("replay-name"),
                raw=event,
            )
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"EventBridge event without {exc}: {_brief(event)}") from exc

    @property
    def identity(self) -> str:
        """What a redelivery or an archive replay of this event repeats: its ``id``."""
        return f"eventbridge:{self.id}"

    def describe(self) -> str:
        """Return a line naming the record, for a dead letter's reason."""
        return f"EventBridge {self.detail_type!r} from {self.source}"


def table_of(arn: object) -> str:
    """Return the table's name in a stream's ARN (``...:table/NAME/stream/...``)."""
    if isinstance(arn, str) and ":table/" in arn:
        return arn.split(":table/", 1)[1].split("/", 1)[0]
    return "?"


def _image(attributes: Mapping[str, Any]) -> dict[str, Any]:
    # boto3 is imported on the first DynamoDB record only: a cold start of a function
    # fed by SQS does not pay for it.
    from boto3.dynamodb.types import TypeDeserializer  # noqa: PLC0415

    deserialize = TypeDeserializer().deserialize
    return {name: deserialize(value) for name, value in attributes.items()}


def _iso(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _brief(record: object) -> str:
    if isinstance(record, Mapping):
        return "keys " + ", ".join(sorted(str(key) for key in record)[:8])
    return type(record).__name__
