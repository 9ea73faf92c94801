"""The AWS transport: SQS queues, SNS topics fanning out to them (asyncio only).

:class:`SQSTransport` implements :class:`~messagebus.extension.Transport` on
aiobotocore. It runs on asyncio only: aiobotocore needs an asyncio event loop, so
entering or calling it under trio raises :class:`~messagebus.UnsupportedBackendError`.

How the contract maps onto AWS:

- Names: see :mod:`messagebus.transports.sqs._names` (``<prefix><name>[.fifo]``). A
  queue's URL and a topic's ARN are looked up once and cached; a queue not provisioned
  by this transport is found as standard first, then as FIFO.
- :meth:`~SQSTransport.send` uses SendMessageBatch: at most 10 messages and 1 MiB per
  call, split by count and bytes. Sizes are checked before anything is sent.
  Concurrent sends to one queue share calls (``send_window``, 5 ms by default; see
  :mod:`messagebus.transports._coalesce`): 25 tasks sending one message each make
  3 calls, and each task gets its own messages' outcome. On a FIFO
  queue each message's MessageGroupId is its ``group_key`` (``"default"`` if None), its
  MessageDeduplicationId its ``deduplication_id`` or ``message_id``, and the calls go one
  after another, in the order the sends came, to keep group order; on a standard queue
  they go concurrently.
  Entries AWS fails on its side are retried; entries it refuses raise
  :class:`~messagebus.SendError` (after the others were sent).
- :meth:`~SQSTransport.publish` uses SNS PublishBatch: 10 entries per call, concurrent
  publishes to one topic sharing calls as sends do. SNS takes
  256 KiB (262,144 bytes) per message and per call by default, and up to 1 MiB on a topic
  whose ``MaximumMessageSize`` is raised, as :meth:`~SQSTransport.provision` does. So a
  message up to 1 MiB is accepted (``topic_max_bytes``), and calls are packed to 256 KiB,
  which every topic takes; a larger message goes in a call of its own. A topic left at
  256 KiB (made elsewhere; LocalStack 2026.3, which stores the attribute but keeps the
  old limit) refuses such a call: :class:`~messagebus.TransportError`, nothing dropped.
  SNS cannot delay a message: a delay raises :class:`~messagebus.InvalidArgumentError`.
- :meth:`~SQSTransport.receive` long-polls (WaitTimeSeconds up to 20, longer waits poll
  again) for up to 10 messages. A delivery's ack joins a DeleteMessageBatch with the
  acks of other tasks (a 5 ms window); nack and extend are ChangeMessageVisibility.
  SQS counts visibility in whole seconds: fractions are rounded up.
- Errors: see :mod:`messagebus.transports.sqs._errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from messagebus._errors import (
    DestinationNotFoundError,
    InvalidArgumentError,
    TransportError,
    UnsupportedBackendError,
)
from messagebus.transports._batch_calls import MAX_ENTRIES, Failures, call_batch
from messagebus.transports._coalesce import SendCollector
from messagebus.transports._protocol import Capabilities, Outgoing, Topology, Transport
from messagebus.transports.sqs._background import Background
from messagebus.transports.sqs._batching import (
    DeleteBatcher,
    delete_error,
    encode_texts,
    send_all,
)
from messagebus.transports.sqs._errors import translated
from messagebus.transports.sqs._names import Names, ResolvedQueue, ResolvedTopic
from messagebus.transports.sqs._provision import (
    MAX_VISIBILITY,
    allow_service,
    create_queue,
    create_topic,
    subscribe,
    visibility_seconds,
)

if TYPE_CHECKING:
    from botocore.awsrequest import AWSPreparedRequest
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sns.type_defs import PublishBatchRequestEntryTypeDef
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
        ReceiveMessageRequestTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

__all__ = ["SQSDelivery", "SQSTransport"]

E = TypeVar("E", bound=Mapping[str, object])

MAX_MESSAGE_BYTES = 1024 * 1024
SNS_BATCH_BYTES = 256 * 1024
MAX_DELAY = 900
MAX_WAIT = 20
SQS_CAPABILITIES = Capabilities(
    ordered_groups=True,
    fan_out=True,
    max_message_bytes=MAX_MESSAGE_BYTES,
    max_batch_size=MAX_ENTRIES,
    max_batch_bytes=MAX_MESSAGE_BYTES,
    max_delay=MAX_DELAY,
    max_visibility=MAX_VISIBILITY,
    fifo_delay=False,
    system="aws_sqs",
    topic_system="aws_sns",
)


def require_asyncio(what: str = "SQSTransport") -> None:
    """Raise :class:`UnsupportedBackendError` unless an asyncio event loop runs this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise UnsupportedBackendError(
            f"{what} runs on asyncio only (aiobotocore needs an asyncio event loop), but "
            "this code runs under another async library such as trio: start it with "
            "anyio.run(..., backend='asyncio'), or use a transport that supports it"
        ) from None


@attrs.frozen(eq=False)
class SQSDelivery:
    """One received SQS message; see :class:`~messagebus.extension.Delivery`.

    Attributes:
        body: the envelope bytes, as sent.
        queue: the logical queue name.
        receive_count: SQS's ApproximateReceiveCount (approximate, as AWS says).
        message_id: SQS's id for this message (not the envelope's id).
        receipt_handle: what settles this receive; stale once the visibility ends.
    """

    body: bytes
    queue: str
    receive_count: int
    message_id: str
    receipt_handle: str
    _transport: SQSTransport = attrs.field(repr=False, alias="transport")

    async def ack(self) -> None:
        """Delete the message (batched with other acks on this queue)."""
        await self._transport._ack(self)

    async def nack(self, delay: float = 0.0) -> None:
        """Make the message visible again after ``delay`` seconds (whole seconds, up)."""
        await self._transport._change_visibility(self, delay)

    async def extend(self, visibility: float) -> None:
        """Keep the message invisible ``visibility`` more seconds (at most 12 h in all)."""
        await self._transport._change_visibility(self, visibility)


class SQSTransport:
    """Queues on SQS, topics on SNS; see the module docstring for the mapping.

    Args:
        region: the AWS region (``"eu-west-1"``).
        endpoint_url: an SQS/SNS-compatible endpoint instead of AWS's (LocalStack).
        prefix: put before every queue and topic name (environments, test runs).
        aws_access_key_id, aws_secret_access_key, aws_session_token: credentials; by
            default botocore's standard chain (environment, profile, instance role).
        session: the aiobotocore session to make clients with (profiles, event hooks).
        config: the client config (aiobotocore's ``AioConfig``); by default bounded retries
            (``max_attempts`` attempts in all, standard mode), ``connect_timeout``, a
            read timeout above the 20 s long poll, and ``max_pool_connections``.
        ack_window: seconds an ack waits for others to share its DeleteMessageBatch.
        send_window: seconds a send or publish that does not fill a call waits for
            others to the same queue or topic to share it; 0 sends every call alone.
        topic_max_bytes: the largest message :meth:`publish` accepts (lower it to 256 KiB
            for topics whose MaximumMessageSize was left at SNS's default).
    """

    def address(self, name: str, *, fifo: bool | None = None, topic: bool = False) -> str:
        """Return the SQS or SNS name of queue or topic ``name``: ``<prefix><name>[.fifo]``.

        With ``fifo`` None, the queue or topic as this transport resolved it (standard
        until a call has looked it up); see :class:`~messagebus.extension.NamedTransport`.
        """
        if fifo is None:
            known = (self._topics if topic else self._queues).get(name)
            fifo = known is not None and known.fifo
        return self._names.physical(name, fifo=fifo)

    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        prefix: str = "",
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        session: AioSession | None = None,
        config: AioConfig | None = None,
        max_attempts: int = 3,
        connect_timeout: float = 5.0,
        max_pool_connections: int = 50,
        ack_window: float = 0.005,
        send_window: float = 0.005,
        topic_max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._names = Names(prefix)
        self._client_args: dict[str, Any] = {
            "region_name": region,
            "endpoint_url": endpoint_url,
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
            "config": config
            or AioConfig(
                retries={"total_max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=MAX_WAIT + 10,
                max_pool_connections=max_pool_connections,
            ),
        }
        self._session = session or get_session()
        self._ack_window = ack_window
        if send_window < 0:
            raise InvalidArgumentError("send_window must be at least 0")
        self._send_window = send_window
        self._topic_max_bytes = topic_max_bytes
        self._queues: dict[str, ResolvedQueue] = {}
        self._topics: dict[str, ResolvedTopic] = {}
        self._batchers: dict[str, DeleteBatcher] = {}
        self._senders: dict[str, SendCollector[SendMessageBatchRequestEntryTypeDef]] = {}
        self._publishers: dict[str, SendCollector[PublishBatchRequestEntryTypeDef]] = {}
        self._polls: set[anyio.CancelScope] = set()
        self._stack: contextlib.AsyncExitStack | None = None
        self._sqs: SQSClient | None = None
        self._sns: SNSClient | None = None
        self._background: Background | None = None

    @property
    def capabilities(self) -> Capabilities:
        """SQS's limits: 1 MiB messages and batches of 10, FIFO groups, SNS fan-out."""
        return SQS_CAPABILITIES

    async def __aenter__(self) -> Transport:
        require_asyncio()
        if self._stack is not None:
            raise TransportError("SQSTransport is already open")
        async with contextlib.AsyncExitStack() as stack:
            self._sqs = await stack.enter_async_context(
                self._session.create_client("sqs", **self._client_args)
            )
            self._sns = await stack.enter_async_context(
                self._session.create_client("sns", **self._client_args)
            )
            for client in (self._sqs, self._sns):
                client.meta.events.register("before-send", _stream_large_body)
            self._background = background = Background()
            stack.push_async_callback(background.wait)
            stack.callback(self._closing)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            try:
                await stack.aclose()
            finally:
                self._sqs = self._sns = self._background = None
                self._batchers.clear()
                self._senders.clear()
                self._publishers.clear()

    def _closing(self) -> None:
        # Runs first on close: the background then waits for these deletes and sends to
        # finish, but not for long polls nobody waits for any more.
        for batcher in self._batchers.values():
            batcher.close()
        for sender in self._senders.values():
            sender.close()
        for publisher in self._publishers.values():
            publisher.close()
        for poll in self._polls:
            poll.cancel()

    def _clients(self) -> tuple[SQSClient, SNSClient]:
        require_asyncio()
        if self._sqs is None or self._sns is None:
            raise TransportError("SQSTransport is not open: use it in 'async with'")
        return self._sqs, self._sns

    async def provision(self, topology: Topology) -> None:
        """Create what ``topology`` names and does not exist yet; see _provision."""
        sqs, sns = self._clients()
        for spec in topology.queues:
            self._queues[spec.name] = await create_queue(sqs, self._names, spec)
        for topic_spec in topology.topics:
            self._topics[topic_spec.name] = await create_topic(sns, self._names, topic_spec)
        for subscription in topology.subscriptions:
            topic = await self._topic(subscription.topic)
            queue = await self._queue(subscription.queue)
            await subscribe(sqs, sns, subscription, topic, queue)

    async def allow_service(self, queue: str, *, service: str, source_arn: str) -> str:
        """Let AWS ``service`` send to ``queue`` on behalf of ``source_arn``; return its ARN.

        Adds one statement to the queue's policy (``Principal.Service`` = ``service``,
        ``sqs:SendMessage``, condition ``aws:SourceArn`` = ``source_arn``), once; a FIFO
        queue also gets content-based deduplication. The EventBridge transport's
        provisioning calls it for each rule targeting a queue
        (``service="events.amazonaws.com"``, the rule's ARN).

        Raises:
            DestinationNotFoundError: there is no such queue.
        """
        sqs, _ = self._clients()
        return await allow_service(
            sqs, await self._queue(queue), service=service, source_arn=source_arn
        )

    async def _queue(self, logical: str) -> ResolvedQueue:
        if (known := self._queues.get(logical)) is not None:
            return known
        sqs, _ = self._clients()
        for fifo in (False, True):
            name = self._names.physical(logical, fifo=fifo)
            try:
                with translated(f"queue {logical!r}"):
                    url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
            except DestinationNotFoundError:
                continue
            self._queues[logical] = resolved = ResolvedQueue(logical, url, fifo)
            return resolved
        raise DestinationNotFoundError(f"queue {logical!r}: no SQS queue of that name")

    async def _topic(self, logical: str) -> ResolvedTopic:
        if (known := self._topics.get(logical)) is not None:
            return known
        _, sns = self._clients()
        wanted = {self._names.physical(logical, fifo=fifo): fifo for fifo in (False, True)}
        with translated(f"topic {logical!r}"):
            async for page in sns.get_paginator("list_topics").paginate():
                for topic in page.get("Topics", []):
                    arn = topic.get("TopicArn", "")
                    fifo = wanted.get(arn.rsplit(":", 1)[-1])
                    if fifo is not None:
                        self._topics[logical] = resolved = ResolvedTopic(logical, arn, fifo)
                        return resolved
        raise DestinationNotFoundError(f"topic {logical!r}: no SNS topic of that name")

    def _forget_queue(self, error: TransportError, logical: str) -> None:
        # A cached queue deleted behind our back: look it up afresh next time.
        if isinstance(error, DestinationNotFoundError):
            self._queues.pop(logical, None)

    async def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send ``messages`` to ``queue`` in SendMessageBatch calls; see the module."""
        sqs, _ = self._clients()
        if not messages:
            return
        texts, refused = encode_texts(messages, MAX_MESSAGE_BYTES)
        target = await self._queue(queue)
        for message in messages:
            if target.fifo:
                if message.delay:
                    raise InvalidArgumentError("SQS FIFO queues take no per-message delay")
            elif not 0 <= message.delay <= MAX_DELAY:
                raise InvalidArgumentError(f"delay {message.delay} is outside 0-{MAX_DELAY} s")

        def entry(index: int, entry_id: str) -> SendMessageBatchRequestEntryTypeDef:
            message = messages[index]
            made: SendMessageBatchRequestEntryTypeDef = {
                "Id": entry_id,
                "MessageBody": texts[index],
            }
            if target.fifo:
                made["MessageGroupId"] = message.group_key or "default"
                made["MessageDeduplicationId"] = message.deduplication_id or message.message_id
            elif message.delay:
                made["DelaySeconds"] = math.ceil(message.delay)
            return made

        async def call(batch: list[SendMessageBatchRequestEntryTypeDef]) -> Failures:
            try:
                with translated(f"queue {queue!r}"):
                    answer = await sqs.send_message_batch(QueueUrl=target.url, Entries=batch)
            except TransportError as error:
                self._forget_queue(error, queue)
                raise
            return answer.get("Failed", [])

        await self._batched(
            self._senders,
            target.url,
            messages,
            refused,
            entry=entry,
            call=call,
            max_bytes=MAX_MESSAGE_BYTES,
            fifo=target.fifo,
        )

    async def publish(self, topic: str, messages: Sequence[Outgoing]) -> None:
        """Publish ``messages`` to ``topic`` in SNS PublishBatch calls; see the module."""
        _, sns = self._clients()
        if not messages:
            return
        texts, refused = encode_texts(messages, self._topic_max_bytes)
        if any(message.delay for message in messages):
            raise InvalidArgumentError("SNS cannot delay a message: send it to a queue instead")
        target = await self._topic(topic)

        def entry(index: int, entry_id: str) -> PublishBatchRequestEntryTypeDef:
            message = messages[index]
            made: PublishBatchRequestEntryTypeDef = {"Id": entry_id, "Message": texts[index]}
            if target.fifo:
                made["MessageGroupId"] = message.group_key or "default"
                made["MessageDeduplicationId"] = message.deduplication_id or message.message_id
            return made

        async def call(batch: list[PublishBatchRequestEntryTypeDef]) -> Failures:
            with translated(f"topic {topic!r}"):
                answer = await sns.publish_batch(
                    TopicArn=target.arn, PublishBatchRequestEntries=batch
                )
            return answer.get("Failed", [])

        await self._batched(
            self._publishers,
            target.arn,
            messages,
            refused,
            entry=entry,
            call=call,
            max_bytes=SNS_BATCH_BYTES,
            fifo=target.fifo,
        )

    async def _batched(
        self,
        collectors: dict[str, SendCollector[E]],
        key: str,
        messages: Sequence[Outgoing],
        refused: Mapping[int, str],
        *,
        entry: Callable[[int, str], E],
        call: Callable[[list[E]], Awaitable[Failures]],
        max_bytes: int,
        fifo: bool,
    ) -> None:
        """Send in batch calls: through the destination's collector, or alone (no window)."""
        if self._send_window:
            collector = collectors.get(key)
            if collector is None:
                collector = collectors[key] = self._collector(call, max_bytes, fifo)
            await collector.send(messages, refused, entry)
            return
        await send_all(
            messages,
            refused,
            entries=[entry(index, str(index)) for index in range(len(messages))],
            call=call,
            max_bytes=max_bytes,
            in_order=fifo,
        )

    def _collector(
        self, call: Callable[[list[E]], Awaitable[Failures]], max_bytes: int, fifo: bool
    ) -> SendCollector[E]:
        assert self._background is not None  # set together with the clients
        return SendCollector(
            call, self._background, self._send_window, max_bytes=max_bytes, in_order=fifo
        )

    async def receive(
        self,
        queue: str,
        *,
        max_messages: int = 10,
        wait: float = 20.0,
        visibility_timeout: float | None = None,
    ) -> Sequence[SQSDelivery]:
        """Long-poll ``queue`` for up to ``max_messages`` (at most 10) messages."""
        self._clients()
        if max_messages < 1:
            raise InvalidArgumentError("max_messages must be at least 1")
        target = await self._queue(queue)
        request: ReceiveMessageRequestTypeDef = {
            "QueueUrl": target.url,
            "MaxNumberOfMessages": min(MAX_ENTRIES, max_messages),
            "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
        }
        if visibility_timeout is not None:
            request["VisibilityTimeout"] = visibility_seconds(visibility_timeout)
        deadline = anyio.current_time() + max(0.0, wait)
        while True:
            remaining = deadline - anyio.current_time()
            request["WaitTimeSeconds"] = min(MAX_WAIT, max(0, math.ceil(remaining)))
            try:
                messages = await self._poll(target, request)
            except TransportError as error:
                self._forget_queue(error, queue)
                raise
            if messages or anyio.current_time() >= deadline:
                break
        return [
            SQSDelivery(
                body=message.get("Body", "").encode(),
                queue=queue,
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                message_id=message.get("MessageId", ""),
                receipt_handle=message.get("ReceiptHandle", ""),
                transport=self,
            )
            for message in messages
        ]

    async def _poll(
        self, target: ResolvedQueue, request: ReceiveMessageRequestTypeDef
    ) -> list[MessageTypeDef]:
        """Make one ReceiveMessage call in a background task; wait for its answer.

        If the caller is cancelled while the long poll runs, the call goes on without it
        and makes whatever it brings visible again at once: SQS would otherwise keep
        those messages invisible for a whole visibility timeout, answered to nobody.
        """
        sqs, _ = self._clients()
        assert self._background is not None  # set together with the clients
        poll = _Poll()

        async def run() -> None:
            scope = anyio.CancelScope()
            self._polls.add(scope)
            try:
                with scope, translated(f"queue {target.logical!r}"):
                    answer = await sqs.receive_message(**request)
                    poll.messages = answer.get("Messages", [])
                if scope.cancelled_caught:
                    poll.error = TransportError("the transport closed while this receive waited")
                elif poll.abandoned and poll.messages:
                    await self._release(target, poll.messages)
            except Exception as error:  # noqa: BLE001 - handed to the waiting caller
                poll.error = error
            finally:
                self._polls.discard(scope)
                poll.done.set()

        self._background.start_soon(run)
        try:
            await poll.done.wait()
        except BaseException:
            poll.abandoned = True
            if poll.messages:  # answered, but the caller was cancelled before it woke
                self._background.start_soon(self._release, target, poll.messages)
            raise
        if poll.error is not None:
            raise poll.error
        return poll.messages

    async def _release(self, target: ResolvedQueue, messages: Sequence[MessageTypeDef]) -> None:
        sqs, _ = self._clients()
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
            {
                "Id": str(index),
                "ReceiptHandle": message.get("ReceiptHandle", ""),
                "VisibilityTimeout": 0,
            }
            for index, message in enumerate(messages)
        ]
        # Best effort: if this fails too, the messages come back after their timeout.
        with contextlib.suppress(TransportError), translated(f"queue {target.logical!r}"):
            await sqs.change_message_visibility_batch(QueueUrl=target.url, Entries=entries)

    async def _ack(self, delivery: SQSDelivery) -> None:
        self._clients()
        assert self._background is not None  # set together with the clients
        batcher = self._batchers.get(delivery.queue)
        if batcher is None:
            target = await self._queue(delivery.queue)

            async def delete(handles: Sequence[str]) -> Sequence[TransportError | None]:
                return await self._delete_batch(target, handles)

            batcher = DeleteBatcher(delete, self._background, self._ack_window, MAX_ENTRIES)
            self._batchers[delivery.queue] = batcher
        await batcher.ack(delivery.receipt_handle)

    async def _delete_batch(
        self, target: ResolvedQueue, handles: Sequence[str]
    ) -> Sequence[TransportError | None]:
        sqs, _ = self._clients()
        entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
            {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(handles)
        ]

        async def call(batch: list[DeleteMessageBatchRequestEntryTypeDef]) -> Failures:
            with translated(f"queue {target.logical!r}"):
                answer = await sqs.delete_message_batch(QueueUrl=target.url, Entries=batch)
            return answer.get("Failed", [])

        outcome = await call_batch(call, entries)
        return [delete_error(outcome, str(index), target.logical) for index in range(len(handles))]

    async def _change_visibility(self, delivery: SQSDelivery, seconds: float) -> None:
        sqs, _ = self._clients()
        target = await self._queue(delivery.queue)
        with translated(f"queue {delivery.queue!r}"):
            await sqs.change_message_visibility(
                QueueUrl=target.url,
                ReceiptHandle=delivery.receipt_handle,
                VisibilityTimeout=visibility_seconds(seconds),
            )


LARGE_BODY = 2**20


def _stream_large_body(request: AWSPreparedRequest, **_: object) -> None:
    """Hand aiohttp a body over 1 MiB as a stream, as it asks.

    A 1 MiB message is a little more than that as a JSON request, and aiohttp warns
    (ResourceWarning) when it is given so many bytes at once; a failure wherever
    warnings are errors. aiobotocore sends an ``io.IOBase`` body as it comes, and
    botocore rewinds it for a retry.
    """
    body = request.body
    if isinstance(body, bytes) and len(body) > LARGE_BODY:
        request.body = io.BytesIO(body)


@attrs.define(eq=False)
class _Poll:
    """One ReceiveMessage call handed from the task making it to the caller waiting."""

    messages: list[MessageTypeDef] = attrs.field(factory=list)
    error: Exception | None = None
    abandoned: bool = False
    done: anyio.Event = attrs.field(factory=anyio.Event)
