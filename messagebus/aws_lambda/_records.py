"""The shapes of what Lambda hands a function, read into records of one kind.

A Lambda event is one of:

- an SQS batch (``{"Records": [...]}`` with ``eventSource == "aws:sqs"``), each record's
  ``body`` being our CloudEvents envelope, an SNS notification whose ``Message`` is the
  envelope (a subscription with raw message delivery off), or an EventBridge event whose
  ``detail`` is the envelope (a rule with an SQS target);
- an SNS invocation (``{"Records": [...]}`` with ``EventSource == "aws:sns"``; in practice
  one record), each ``Sns.Message`` being the envelope;
- an EventBridge invocation: the event itself (``detail-type``, ``detail``), its
  ``detail`` being the envelope (the EventBridge transport puts it there).

:func:`records_of` turns any of them into :class:`Record` objects; :meth:`Record.envelope`
unwraps and decodes. Anything else (an S3 notification, a DynamoDB Streams record, a
body that is plain text) decodes to a :class:`~messagebus.DecodeError` saying what it is,
so it becomes a dead letter with that reason, never a silent drop. Field names are AWS's,
from its documented event formats.
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

__all__ = ["Record", "Source", "records_of"]

Source = Literal["sqs", "sns", "eventbridge", "unknown"]


@attrs.frozen
class Record:
    """One record of an invocation, before decoding.

    Attributes:
        source: how it arrived: an SQS batch, an SNS or EventBridge invocation, or a
            shape this entry point does not read.
        item_id: the SQS ``messageId`` (the batch item identifier of a partial batch
            response); None for direct invocations, which have no such response.
        queue: where it came from, for dead letters: the queue's name (from its ARN),
            the topic's name, ``"eventbridge"``, or ``"lambda"``.
        group: the FIFO ``MessageGroupId``; None on standard queues.
        receive_count: the SQS ``ApproximateReceiveCount`` (1 for direct invocations).
        payload: what carries the envelope: the body text, or the decoded object.
    """

    source: Source
    item_id: str | None
    queue: str
    group: str | None
    receive_count: int
    payload: object

    def envelope(self, codec: WireCodec) -> Envelope[Message]:
        """Return the envelope this record carries, unwrapping SNS and EventBridge.

        Raises:
            DecodeError: not our envelope in any shape read here; the message says why.
        """
        if self.source == "unknown":
            raise DecodeError(f"not an SQS, SNS or EventBridge record: {_keys(self.payload)}")
        payload = self.payload
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError as exc:
                raise DecodeError(f"message body is not JSON: {exc}") from exc
        return codec.from_dict(_unwrapped(payload))

    def text(self) -> str:
        """Return the innermost payload reached as text, for a dead letter to keep.

        The envelope inside an SNS notification or EventBridge event when there is one
        (so the record keeps its id and type), else the payload as it came.
        """
        payload = self.payload
        try:
            inner = _unwrapped(json.loads(payload) if isinstance(payload, str) else payload)
        except (ValueError, DecodeError):
            inner = payload
        if isinstance(inner, str):
            return inner
        return json.dumps(inner, default=str)


def _unwrapped(payload: object) -> object:
    """Return the CloudEvents object inside an SNS notification or EventBridge event."""
    if not isinstance(payload, dict):
        return payload
    if payload.get("Type") == "Notification" and "TopicArn" in payload:
        message = payload.get("Message")
        if not isinstance(message, str):
            raise DecodeError("SNS notification without a text Message")
        try:
            return json.loads(message)
        except ValueError as exc:
            raise DecodeError(f"SNS Message is not JSON: {exc}") from exc
    if "detail-type" in payload and "detail" in payload:
        return payload["detail"]
    return payload


def _keys(payload: object) -> str:
    if isinstance(payload, Mapping):
        return "keys " + ", ".join(sorted(str(key) for key in payload)[:8])
    return type(payload).__name__


def _name_of(arn: object) -> str:
    """Return the last part of an ARN (a queue's or topic's name)."""
    return arn.rsplit(":", 1)[-1] if isinstance(arn, str) and arn else "lambda"


def _sqs(record: Mapping[str, Any]) -> Record:
    attributes = record.get("attributes") or {}
    return Record(
        source="sqs",
        item_id=str(record["messageId"]),
        queue=_name_of(record.get("eventSourceARN")),
        group=attributes.get("MessageGroupId"),
        receive_count=int(attributes.get("ApproximateReceiveCount", 1)),
        payload=record.get("body", ""),
    )


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


def records_of(event: object) -> tuple[bool, list[Record]]:
    """Return whether ``event`` is an SQS batch (answered per record) and its records."""
    if isinstance(event, Mapping) and isinstance(event.get("Records"), list):
        records = []
        for record in event["Records"]:
            if isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs":
                records.append(_sqs(record))
            elif isinstance(record, Mapping) and record.get("EventSource") == "aws:sns":
                records.append(_sns(record))
            else:
                records.append(Record("unknown", None, "lambda", None, 1, record))
        return any(record.source == "sqs" for record in records), records
    if isinstance(event, Mapping) and "detail-type" in event and "detail" in event:
        return False, [Record("eventbridge", None, "eventbridge", None, 1, dict(event))]
    return False, [Record("unknown", None, "lambda", None, 1, event)]
