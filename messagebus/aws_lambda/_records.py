"""The shapes of what Lambda hands a function, read into records of one kind.

A Lambda event is one of:

- an SQS batch (``{"Records": [...]}`` with ``eventSource == "aws:sqs"``), each record's
  ``body`` being our CloudEvents envelope, an SNS notification whose ``Message`` is the
  envelope (a subscription with raw message delivery off), an EventBridge event whose
  ``detail`` is the envelope (a rule with an SQS target), or a foreign event in the
  same wrappings: an S3 notification (``{"Records": [...]}``, one or more), or an
  EventBridge event whose ``detail`` is not our envelope;
- an SNS invocation (``{"Records": [...]}`` with ``EventSource == "aws:sns"``; in practice
  one record), each ``Sns.Message`` being the envelope (or a foreign event, as above);
- an EventBridge invocation: the event itself (``detail-type``, ``detail``), its
  ``detail`` being the envelope (the EventBridge transport puts it there), or any other
  event;
- an S3 invocation (``eventSource == "aws:s3"`` records) or a DynamoDB Streams batch
  (``eventSource == "aws:dynamodb"`` records, answered per sequence number).

:func:`records_of` turns any of them into :class:`Record` objects; :meth:`Record.contents`
unwraps and decodes them into envelopes, foreign events going through the
:class:`~messagebus.aws_lambda.EventRouter`. What cannot be read (a plain-text body, a
shape read nowhere here, a foreign event no rule matches) is an :class:`Unreadable` with
a :class:`~messagebus.DecodeError` saying what it is, so it becomes a dead letter with
that reason, never a silent drop. S3's ``s3:TestEvent`` (sent once when a notification is
configured) carries no event and is read as nothing. Field names are AWS's, from its
documented event formats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from messagebus._codec import WireCodec
from messagebus._envelope import Envelope
from messagebus._errors import DecodeError
from messagebus._messages import Message
from messagebus.aws_lambda._router import EventRouter
from messagebus.aws_lambda._views import (
    DynamoDBChange,
    EventBridgeEvent,
    S3Notification,
    table_of,
)

__all__ = ["TEXT_SOURCES", "Answer", "Record", "Source", "Unreadable", "records_of"]

Source = Literal["sqs", "sns", "eventbridge", "s3", "dynamodb", "unknown"]

Answer = Literal["sqs", "dynamodb", "none"]
"""How an invocation is answered: per SQS message id, per stream sequence number
(the first failure only: Lambda checkpoints there), or not at all (raise on failure)."""


TEXT_SOURCES = frozenset({"sqs", "sns"})
"""The sources whose records carry text: the envelope itself, usually (see ``_handler``)."""


@attrs.frozen
class Unreadable:
    """What a record holds that can never become an envelope: its text and the reason."""

    text: str
    error: DecodeError


@attrs.define
class Record:
    """One record of an invocation, before decoding (not to be changed once made).

    Not frozen: one is made per record, and a frozen class's ``__init__`` costs three
    times as much.

    Attributes:
        source: how it arrived: an SQS batch, an SNS, EventBridge or S3 invocation, a
            DynamoDB stream, or a shape this entry point does not read.
        item_id: the batch item identifier of a partial batch response: the SQS
            ``messageId`` or the stream record's ``SequenceNumber``; None for direct
            invocations, which have no such response.
        queue: where it came from, for dead letters: the queue's name (from its ARN),
            the topic's, the bucket's or the table's name, ``"eventbridge"``, or
            ``"lambda"``.
        group: the FIFO ``MessageGroupId`` (every stream record shares one, the
            stream's: they are handled in order, and stop at the first failure); None
            on standard queues.
        receive_count: the SQS ``ApproximateReceiveCount`` (1 for direct invocations).
        payload: what carries the envelope: the body text, or the decoded object.
    """

    source: Source
    item_id: str | None
    queue: str
    group: str | None
    receive_count: int
    payload: object

    def contents(
        self, codec: WireCodec, router: EventRouter
    ) -> list[Envelope[Message] | Unreadable]:
        """Return the envelopes this record carries, and what in it cannot be read.

        Usually one item. An S3 notification inside SQS may list several records (each
        its own item); S3's test event none.
        """
        payload = self.payload
        source = self.source
        try:
            if source == "unknown":
                return [Unreadable(self.text(), _unknown(payload))]
            if source == "dynamodb":
                return [_routed(router, DynamoDBChange.of, _mapping(payload))]
            if source == "s3":
                return [_routed(router, S3Notification.of, _mapping(payload))]
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError as exc:
                    raise DecodeError(f"message body is not JSON: {exc}") from exc
            inner = _unwrapped_sns(payload)
            if isinstance(inner, Mapping):
                if "detail-type" in inner and "detail" in inner:
                    if not _is_envelope(inner["detail"]):
                        return [_routed(router, EventBridgeEvent.of, inner)]
                    inner = inner["detail"]
                elif _s3_records(inner):
                    return [
                        _routed(router, S3Notification.of, record) for record in inner["Records"]
                    ]
                elif inner.get("Event") == "s3:TestEvent":
                    return []
            return [codec.from_dict(inner)]
        except DecodeError as error:
            return [Unreadable(self.text(), error)]

    def text(self) -> str:
        """Return the innermost payload reached as text, for a dead letter to keep.

        The envelope inside an SNS notification or EventBridge event when there is one
        (so the record keeps its id and type), else the payload as it came.
        """
        payload = self.payload
        try:
            inner = _unwrapped_sns(json.loads(payload) if isinstance(payload, str) else payload)
            if isinstance(inner, Mapping) and _is_envelope(inner.get("detail")):
                inner = inner["detail"]
        except (ValueError, DecodeError):
            inner = payload
        if isinstance(inner, str):
            return inner
        return json.dumps(inner, default=str)


def _routed(
    router: EventRouter, view: Any, record: Mapping[str, Any]
) -> Envelope[Message] | Unreadable:
    """Route one foreign record; what fails is kept as its own text and reason."""
    try:
        return router.envelope(view(record))
    except DecodeError as error:
        return Unreadable(json.dumps(record, default=str), error)


def _is_envelope(value: object) -> bool:
    """Whether ``value`` is a CloudEvents object (ours, or to be refused by the codec)."""
    return isinstance(value, Mapping) and "specversion" in value


def _s3_records(payload: Mapping[str, Any]) -> bool:
    records = payload.get("Records")
    return (
        isinstance(records, list)
        and bool(records)
        and all(
            isinstance(record, Mapping) and record.get("eventSource") == "aws:s3"
            for record in records
        )
    )


def _mapping(payload: object) -> Mapping[str, Any]:
    if not isinstance(payload, Mapping):
        raise DecodeError(f"a record is a JSON object, not {type(payload).__name__}")
    return payload


def _unwrapped_sns(payload: object) -> object:
    """Return what an SNS notification carries (its ``Message``, decoded), else ``payload``."""
    if (
        isinstance(payload, Mapping)
        and payload.get("Type") == "Notification"
        and "TopicArn" in payload
    ):
        message = payload.get("Message")
        if not isinstance(message, str):
            raise DecodeError("SNS notification without a text Message")
        try:
            return json.loads(message)
        except ValueError as exc:
            raise DecodeError(f"SNS Message is not JSON: {exc}") from exc
    return payload


def _unknown(payload: object) -> DecodeError:
    return DecodeError(f"not an SQS, SNS, EventBridge, S3 or DynamoDB record: {_keys(payload)}")


def _keys(payload: object) -> str:
    if isinstance(payload, Mapping):
        return "keys " + ", ".join(sorted(str(key) for key in payload)[:8])
    return type(payload).__name__


def _name_of(arn: object) -> str:
    """Return the last part of an ARN (a queue's or topic's name)."""
    return arn.rsplit(":", 1)[-1] if isinstance(arn, str) and arn else "lambda"


def _sqs(record: Mapping[str, Any]) -> Record:
    attributes = record.get("attributes") or _NO_ATTRIBUTES
    count = attributes.get("ApproximateReceiveCount")
    item_id = record["messageId"]
    arn = record.get("eventSourceARN")
    # A batch's records share their queue: its name is read from the ARN once.
    queue = _QUEUES.get(arn) if type(arn) is str else None
    if queue is None:
        queue = _name_of(arn)
        if type(arn) is str and len(_QUEUES) < _KNOWN_QUEUES:
            _QUEUES[arn] = queue
    return Record(  # positional: once per record, keywords cost a third more
        "sqs",
        item_id if type(item_id) is str else str(item_id),
        queue,
        attributes.get("MessageGroupId"),
        1 if count is None or count == "1" else int(count),
        record.get("body", ""),
    )


_QUEUES: dict[str, str] = {}
"""Queue names by ARN, of the queues this function has read from (a handful)."""

_KNOWN_QUEUES = 64


_NO_ATTRIBUTES: Mapping[str, Any] = {}


def _sns(record: Mapping[str, Any]) -> Record:
    sns = record.get("Sns") or {}
    return Record(
        source="sns",
        item_id=None,
        queue=_name_of(sns.get("TopicArn")),
        group=None,
        receive_count=1,
        payload=sns.get("Message", ""),
    )


def _stream(record: Mapping[str, Any]) -> Record:
    change = record.get("dynamodb")
    sequence = change.get("SequenceNumber") if isinstance(change, Mapping) else None
    return Record(
        source="dynamodb",
        item_id=None if sequence is None else str(sequence),
        queue=table_of(record.get("eventSourceARN")),
        group="stream",
        receive_count=1,
        payload=record,
    )


def _s3(record: Mapping[str, Any]) -> Record:
    bucket = (record.get("s3") or {}).get("bucket") or {}
    return Record("s3", None, str(bucket.get("name", "s3")), None, 1, record)


def _record(record: object) -> Record:
    # dict first: an isinstance of the Mapping ABC alone costs more, once a record.
    if isinstance(record, (dict, Mapping)):
        if record.get("eventSource") == "aws:sqs":
            return _sqs(record)
        if record.get("EventSource") == "aws:sns":
            return _sns(record)
        if record.get("eventSource") == "aws:dynamodb":
            return _stream(record)
        if record.get("eventSource") == "aws:s3":
            return _s3(record)
    return Record("unknown", None, "lambda", None, 1, record)


def records_of(event: object) -> tuple[Answer, list[Record]]:
    """Return how ``event`` is answered and its records."""
    if isinstance(event, Mapping) and isinstance(event.get("Records"), list):
        # SQS records told apart here: one call fewer for each, the usual kind.
        records = [
            _sqs(record)
            if type(record) is dict and record.get("eventSource") == "aws:sqs"
            else _record(record)
            for record in event["Records"]
        ]
        sources = {record.source for record in records}
        answer: Answer = (
            "sqs" if "sqs" in sources else "dynamodb" if "dynamodb" in sources else "none"
        )
        return answer, records
    if isinstance(event, Mapping) and "detail-type" in event and "detail" in event:
        return "none", [Record("eventbridge", None, "eventbridge", None, 1, dict(event))]
    return "none", [Record("unknown", None, "lambda", None, 1, event)]
