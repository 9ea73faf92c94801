"""An in-memory EventBridge with AWS's semantics, for fast tests (any anyio backend).

:class:`MemoryEventBridge` answers the calls :class:`EventBridgeTransport` makes, with
the names and shapes of the AWS API (aiobotocore's ``events`` client): so the transport
runs on it unchanged, and so does a test written against the API. Its targets are
queues of a :class:`~messagebus.transports.memory.MemoryBroker`, named by SQS ARNs
(``arn:aws:sqs:<region>:<account>:<queue>``).

What it keeps of AWS:

- event buses (``default`` always exists; others by CreateEventBus), rules with event
  patterns on a bus (see :mod:`~messagebus.transports.eventbridge._patterns`), targets;
- PutEvents: at most 10 entries per call (more is a ``ValidationException``), each
  entry checked on its own, a refused one reported in the 200 reply
  (``FailedEntryCount``, ``ErrorCode``) while the others are delivered; an entry's size
  counted as AWS counts it (``Detail``, ``DetailType``, ``Source``, ``Resources`` in
  UTF-8, plus 14 bytes for ``Time``), at most ``max_entry_bytes``; ``Detail`` must be a
  JSON object (``MalformedDetail``); an ``aws.`` source is refused;
- each matching rule's each target gets its own copy, the body being the AWS event JSON
  (``version, id, detail-type, source, account, time, region, resources, detail``);
- an unknown bus or rule is a ``ResourceNotFoundException``;
- a FIFO queue's target needs ``SqsParameters.MessageGroupId`` (else ``FailedEntries``),
  and its events arrive in that group; DescribeRule and ListTargetsByRule read back
  what was made (rule ARNs ``rule/<name>``, ``rule/<bus>/<name>`` off the default bus).

For tests it adds :meth:`MemoryEventBridge.fail_entries` (the next entries fail with the
given codes, as AWS's ``InternalFailure`` or throttling do) and :attr:`put_events_calls`.
Not modelled: input paths and transformers, archives and replays, target retry policies
and dead-letter queues, other target kinds.
"""

from __future__ import annotations

import collections
import datetime
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import anyio.lowlevel
import attrs

from messagebus._errors import DestinationNotFoundError
from messagebus.transports._protocol import Outgoing
from messagebus.transports.eventbridge._patterns import check_pattern, matches
from messagebus.transports.memory import MemoryBroker

__all__ = ["EventBridgeClientError", "MemoryEventBridge"]

MAX_ENTRIES = 10
TIME_BYTES = 14


class EventBridgeClientError(Exception):
    """A call the double refuses, shaped like botocore's ``ClientError``.

    Attributes:
        response: ``{"Error": {"Code": ..., "Message": ...}}``, as botocore has it.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.response: dict[str, Any] = {"Error": {"Code": code, "Message": message}}


@attrs.frozen
class _Target:
    arn: str
    group: str | None  # SqsParameters.MessageGroupId, for a FIFO queue


@attrs.define
class _Rule:
    pattern: dict[str, Any]
    targets: dict[str, _Target] = attrs.field(factory=dict)  # by target id


class MemoryEventBridge:
    """Event buses, rules and targets in memory; see the module.

    Args:
        broker: where target queues live.
        region, account: what events and ARNs say.
        max_entry_bytes: the largest entry (AWS: 1 MB since 2026, 256 KiB before and
            on LocalStack).
    """

    def __init__(
        self,
        broker: MemoryBroker,
        *,
        region: str = "us-east-1",
        account: str = "000000000000",
        max_entry_bytes: int = 256 * 1024,
    ) -> None:
        self.broker = broker
        self.region = region
        self.account = account
        self.max_entry_bytes = max_entry_bytes
        self.put_events_calls = 0
        self._buses: dict[str, dict[str, _Rule]] = {"default": {}}
        self._failures: collections.deque[str | None] = collections.deque()

    def queue_arn(self, queue: str) -> str:
        """Return the SQS ARN naming ``queue`` of the broker as a target."""
        return f"arn:aws:sqs:{self.region}:{self.account}:{queue}"

    def fail_entries(self, *codes: str | None) -> None:
        """Make the next PutEvents entries fail with ``codes`` in turn (None: accept)."""
        self._failures.extend(codes)

    async def create_event_bus(self, *, Name: str, **_: object) -> dict[str, Any]:
        """Create a bus; an existing one is a ``ResourceAlreadyExistsException``."""
        await anyio.lowlevel.checkpoint()
        if Name in self._buses:
            raise EventBridgeClientError("ResourceAlreadyExistsException", f"{Name} exists")
        self._buses[Name] = {}
        return {"EventBusArn": self._bus_arn(Name)}

    async def describe_event_bus(self, *, Name: str = "default", **_: object) -> dict[str, Any]:
        """Return the bus's name and ARN; an unknown one is a ``ResourceNotFoundException``."""
        await anyio.lowlevel.checkpoint()
        self._bus(Name)
        return {"Name": Name, "Arn": self._bus_arn(Name)}

    async def put_rule(
        self,
        *,
        Name: str,
        EventPattern: str,
        EventBusName: str = "default",
        **_: object,
    ) -> dict[str, Any]:
        """Create or replace a rule's pattern (its targets stay)."""
        await anyio.lowlevel.checkpoint()
        rules = self._bus(EventBusName)
        try:
            pattern = json.loads(EventPattern)
            check_pattern(pattern)
        except ValueError as exc:
            raise EventBridgeClientError("InvalidEventPatternException", str(exc)) from None
        existing = rules.get(Name)
        rules[Name] = _Rule(pattern, existing.targets if existing else {})
        return {"RuleArn": self._rule_arn(EventBusName, Name)}

    async def describe_rule(
        self, *, Name: str, EventBusName: str = "default", **_: object
    ) -> dict[str, Any]:
        """Return a rule's name, ARN, bus and pattern (JSON), as AWS does."""
        await anyio.lowlevel.checkpoint()
        rule = self._rule(EventBusName, Name)
        return {
            "Name": Name,
            "Arn": self._rule_arn(EventBusName, Name),
            "EventBusName": EventBusName,
            "EventPattern": json.dumps(rule.pattern),
            "State": "ENABLED",
        }

    async def list_targets_by_rule(
        self, *, Rule: str, EventBusName: str = "default", **_: object
    ) -> dict[str, Any]:
        """Return a rule's targets (``Id``, ``Arn``, ``SqsParameters`` when given)."""
        await anyio.lowlevel.checkpoint()
        targets: list[dict[str, Any]] = []
        for target_id, target in self._rule(EventBusName, Rule).targets.items():
            shown: dict[str, Any] = {"Id": target_id, "Arn": target.arn}
            if target.group is not None:
                shown["SqsParameters"] = {"MessageGroupId": target.group}
            targets.append(shown)
        return {"Targets": targets}

    async def put_targets(
        self,
        *,
        Rule: str,
        Targets: Sequence[Mapping[str, Any]],
        EventBusName: str = "default",
        **_: object,
    ) -> dict[str, Any]:
        """Add or replace targets of a rule (SQS queues of the broker, by ARN).

        A FIFO queue's target without ``SqsParameters.MessageGroupId`` is refused in
        ``FailedEntries``, as AWS does.
        """
        await anyio.lowlevel.checkpoint()
        rule = self._rule(EventBusName, Rule)
        failed: list[dict[str, str]] = []
        for target in Targets:
            arn, group = str(target["Arn"]), target.get("SqsParameters", {}).get("MessageGroupId")
            if group is None and self._is_fifo(arn):
                failed.append(
                    {
                        "TargetId": str(target["Id"]),
                        "ErrorCode": "ValidationException",
                        "ErrorMessage": "a FIFO queue target needs SqsParameters.MessageGroupId",
                    }
                )
                continue
            rule.targets[str(target["Id"])] = _Target(arn, group)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    def _is_fifo(self, arn: str) -> bool:
        try:
            return arn.endswith(".fifo") or self.broker.queue(arn.rsplit(":", 1)[-1]).spec.fifo
        except DestinationNotFoundError:
            return False

    async def put_events(self, *, Entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Route each entry to the targets of every rule it matches; see the module."""
        await anyio.lowlevel.checkpoint()
        self.put_events_calls += 1
        if not 1 <= len(Entries) <= MAX_ENTRIES:
            raise EventBridgeClientError(
                "ValidationException", f"PutEvents takes 1 to {MAX_ENTRIES} entries"
            )
        results: list[dict[str, str]] = []
        for entry in Entries:
            failure = self._failures.popleft() if self._failures else None
            if failure is None:
                failure_message = self._refusal(entry)
                if failure_message is not None:
                    failure, message = failure_message
                    results.append({"ErrorCode": failure, "ErrorMessage": message})
                    continue
                results.append({"EventId": self._deliver(entry)})
            else:
                results.append({"ErrorCode": failure, "ErrorMessage": "injected by the test"})
        failed = sum("ErrorCode" in result for result in results)
        return {"FailedEntryCount": failed, "Entries": results}

    def _refusal(self, entry: Mapping[str, Any]) -> tuple[str, str] | None:
        bus = str(entry.get("EventBusName") or "default")
        if bus.rsplit("/", 1)[-1] not in self._buses:
            return "ResourceNotFoundException", f"Event bus {bus} does not exist."
        source, detail_type = entry.get("Source"), entry.get("DetailType")
        if not source or not detail_type or "Detail" not in entry:
            return "InvalidArgument", "Source, DetailType and Detail are required."
        if str(source).startswith("aws."):
            return "NotAuthorizedForSourceException", "Not authorized for the source."
        if entry_size(entry) > self.max_entry_bytes:
            return "InvalidArgument", "Entry is larger than the maximum size."
        try:
            detail = json.loads(entry["Detail"])
        except ValueError:
            return "MalformedDetail", "Detail is malformed."
        if not isinstance(detail, dict):
            return "MalformedDetail", "Detail is malformed."
        return None

    def _deliver(self, entry: Mapping[str, Any]) -> str:
        bus = str(entry.get("EventBusName") or "default").rsplit("/", 1)[-1]
        event_id = str(uuid.uuid4())
        event = {
            "version": "0",
            "id": event_id,
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": self.account,
            "time": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": list(entry.get("Resources", [])),
            "detail": json.loads(entry["Detail"]),
        }
        body = json.dumps(event).encode()
        now = self.broker.clock()
        for rule in self._buses[bus].values():
            if matches(rule.pattern, event):
                for target in rule.targets.values():
                    outgoing = Outgoing(body, event_id, group_key=target.group)
                    self._target(target.arn).put(outgoing, now)
        return event_id

    def _target(self, arn: str) -> Any:
        try:
            return self.broker.queue(arn.rsplit(":", 1)[-1])
        except DestinationNotFoundError:
            # AWS drops an event whose target is gone (after retrying, into the
            # target's dead-letter queue if it has one): so does the double, silently.
            return _Nowhere()

    def _bus(self, name: str) -> dict[str, _Rule]:
        rules = self._buses.get(name.rsplit("/", 1)[-1])
        if rules is None:
            raise EventBridgeClientError("ResourceNotFoundException", f"no event bus {name}")
        return rules

    def _rule(self, bus: str, name: str) -> _Rule:
        rule = self._bus(bus).get(name)
        if rule is None:
            raise EventBridgeClientError("ResourceNotFoundException", f"no rule {name}")
        return rule

    def _rule_arn(self, bus: str, name: str) -> str:
        # AWS: rule/<name> on the default bus, rule/<bus>/<name> on another.
        bus = bus.rsplit("/", 1)[-1]
        path = name if bus == "default" else f"{bus}/{name}"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{path}"

    def _bus_arn(self, name: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:event-bus/{name}"


class _Nowhere:
    def put(self, outgoing: Outgoing, now: float) -> None:
        """Drop it: the target does not exist."""


def entry_size(entry: Mapping[str, Any]) -> int:
    """Return a PutEvents entry's size as AWS counts it (its "Calculating PutEvents size")."""
    size = TIME_BYTES
    for key in ("Source", "DetailType", "Detail"):
        value = entry.get(key)
        if value:
            size += len(str(value).encode())
    for resource in entry.get("Resources", ()):
        size += len(str(resource).encode())
    return size
