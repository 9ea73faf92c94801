"""Lambda events as AWS delivers them, and a Lambda context with a clock the test turns.

The field names and layouts follow AWS's documented sample events (the Lambda developer
guide's SQS, SNS and EventBridge examples, the SNS notification JSON format that an
SQS subscription with raw message delivery off receives, and the SQS FIFO attributes
``MessageGroupId``, ``MessageDeduplicationId`` and ``SequenceNumber``); the values are
made up in the same style.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from typing import Any

import attrs

from messagebus.aws_lambda import LambdaFunction
from messagebus.aws_lambda import lambda_handler as make_function

ACCOUNT = "123456789012"
REGION = "us-east-2"
_sequence = itertools.count(18849496460467696128)


def sqs_record(
    body: str,
    *,
    queue: str = "blog",
    message_id: str | None = None,
    receive_count: int = 1,
    group: str | None = None,
    attributes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One record of an SQS batch; ``group`` makes it a FIFO queue's record."""
    record_attributes = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": "1545082649183",
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": "1545082649185",
    }
    if group is not None:
        queue = queue if queue.endswith(".fifo") else f"{queue}.fifo"
        record_attributes |= {
            "MessageGroupId": group,
            "MessageDeduplicationId": uuid.uuid4().hex,
            "SequenceNumber": str(next(_sequence)),
        }
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a...",
        "body": body,
        "attributes": record_attributes,
        "messageAttributes": attributes
        if attributes is not None
        else {
            "tenant": {
                "stringValue": "acme",
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def sqs_event(*records: dict[str, Any]) -> dict[str, Any]:
    """An SQS batch as the event source mapping hands it to the function."""
    return {"Records": list(records)}


def sns_notification(message: str, *, topic: str = "blogapp-post-published") -> str:
    """The body SQS receives from an SNS subscription with raw message delivery off."""
    import json

    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}",
            "Message": message,
            "Timestamp": "2019-01-02T12:45:07.000Z",
            "SignatureVersion": "1",
            "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
            "SigningCertURL": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-ac565b8b1a6c5d002d285f9598aa1d9b.pem",
            "UnsubscribeURL": "https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
            f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}:c9135db0-26c4-47ec-8998-413945fb5a96",
            "MessageAttributes": {"tenant": {"Type": "String", "Value": "acme"}},
        }
    )


def sns_event(message: str, *, topic: str = "blogapp-post-published") -> dict[str, Any]:
    """A direct SNS invocation (the function subscribed to the topic)."""
    arn = f"arn:aws:sns:{REGION}:{ACCOUNT}:{topic}"
    return {
        "Records": [
            {
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{arn}:8a2c5bb2-6a3f-4ad4-b0e7-0d2c4e8d6a21",
                "EventSource": "aws:sns",
                "Sns": {
                    "SignatureVersion": "1",
                    "Timestamp": "2019-01-02T12:45:07.000Z",
                    "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
                    "SigningCertUrl": "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-ac565b8b1a6c5d002d285f9598aa1d9b.pem",
                    "MessageId": str(uuid.uuid4()),
                    "Message": message,
                    "MessageAttributes": {"tenant": {"Type": "String", "Value": "acme"}},
                    "Type": "Notification",
                    "UnsubscribeUrl": f"https://sns.us-east-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={arn}",
                    "TopicArn": arn,
                    "Subject": None,
                },
            }
        ]
    }


def eventbridge_event(
    detail: object, *, detail_type: str = "blogapp.post.published", source: str = "/blog"
) -> dict[str, Any]:
    """An EventBridge event: the direct invocation's event, or an SQS target's body."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2017-12-22T18:43:48Z",
        "region": REGION,
        "resources": [],
        "detail": detail,
    }


@attrs.define
class FakeContext:
    """A Lambda context whose clock moves only when the test (or a handler) says so."""

    timeout_ms: int = 30_000
    elapsed_ms: int = 0
    function_name: str = "blog-consumer"
    function_version: str = "$LATEST"
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:blog-consumer"
    memory_limit_in_mb: int = 512
    aws_request_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/blog-consumer"
    log_stream_name: str = "2024/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - self.elapsed_ms)

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of the invocation pass."""
        self.elapsed_ms += int(seconds * 1000)


made: list[LambdaFunction] = []
"""The functions made by :func:`lambda_handler`; tests/conftest.py closes them after each test."""


def lambda_handler(bus: Any, **options: Any) -> LambdaFunction:
    """The entry point's lambda_handler, closed when the test ends (its loop stops)."""
    function = make_function(bus, **options)
    made.append(function)
    return function


def s3_record(
    key: str = "images/cat+photo.jpg",
    *,
    bucket: str = "blog-images",
    event_name: str = "ObjectCreated:Put",
    size: int | None = 1305107,
    sequencer: str = "0C0F6F405D6ED209E1",
) -> dict[str, Any]:
    """One S3 event notification record (the Lambda guide's sample; the key URL-encoded)."""
    obj: dict[str, Any] = {"key": key, "sequencer": sequencer}
    if size is not None:
        obj |= {"size": size, "eTag": "b21b84d653bb07b05b1e6b33684dc11b"}
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2019-09-03T19:37:27.192Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAINPONIXQXHT3IKHL2"},
        "requestParameters": {"sourceIPAddress": "205.255.255.255"},
        "responseElements": {
            "x-amz-request-id": "D82B88E5F771F645",
            "x-amz-id-2": "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBD=",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "828aa6fc-f7b5-4305-8584-487c791949c1",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3I5XTEXAMAI3E"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_event(*records: dict[str, Any]) -> dict[str, Any]:
    """S3 notifications: a direct invocation's event, or the body S3 sends to SQS or SNS."""
    return {"Records": list(records)}


def s3_test_event(bucket: str = "blog-images") -> dict[str, Any]:
    """The message S3 sends once to a queue when a notification is configured."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2019-09-03T19:30:00.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


_stream_sequence = itertools.count(111)


def dynamodb_record(
    event_name: str = "INSERT",
    *,
    keys: dict[str, Any] | None = None,
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    table: str = "posts",
) -> dict[str, Any]:
    """One DynamoDB Streams record (NEW_AND_OLD_IMAGES), values typed as AWS sends them."""
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": 1480642020,
        "Keys": keys if keys is not None else {"Id": {"N": "101"}},
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "SequenceNumber": str(next(_stream_sequence)),
        "SizeBytes": 26,
    }
    if new_image is not None:
        change["NewImage"] = new_image
    if old_image is not None:
        change["OldImage"] = old_image
    return {
        "eventID": uuid.uuid4().hex,
        "eventVersion": "1.1",
        "dynamodb": change,
        "awsRegion": REGION,
        "eventName": event_name,
        "eventSourceARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
        "/stream/2015-06-27T00:48:05.899",
        "eventSource": "aws:dynamodb",
    }


def post_image(post_id: int, title: str, *, tags: tuple[str, ...] = ("aws",)) -> dict[str, Any]:
    """A post item as a stream image: N, S, SS, BOOL, NULL, L and M values."""
    return {
        "Id": {"N": str(post_id)},
        "Title": {"S": title},
        "Tags": {"SS": list(tags)},
        "Published": {"BOOL": True},
        "Archived": {"NULL": True},
        "Scores": {"L": [{"N": "4.5"}, {"N": "3"}]},
        "Author": {"M": {"Name": {"S": "Ada"}, "Karma": {"N": "42"}}},
    }


def aws_event(
    source: str = "aws.ec2",
    detail_type: str = "EC2 Instance State-change Notification",
    detail: dict[str, Any] | None = None,
    *,
    event_id: str | None = None,
    replay_name: str | None = None,
) -> dict[str, Any]:
    """An EventBridge event from an AWS service (the EventBridge guide's EC2 sample)."""
    event = {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": "2015-11-11T21:29:54Z",
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-abcd1111"],
        "detail": detail
        if detail is not None
        else {"instance-id": "i-abcd1111", "state": "pending"},
    }
    if replay_name is not None:
        event["replay-name"] = replay_name
    return event


def dead_letter_queue_record(
    body: str, *, source: str = "blog", receive_count: int = 5
) -> dict[str, Any]:
    """A record of a function triggered by a dead-letter queue: it names the source queue."""
    record = sqs_record(body, queue=f"{source}-dlq", receive_count=receive_count)
    record["attributes"]["DeadLetterQueueSourceArn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{source}"
    return record
