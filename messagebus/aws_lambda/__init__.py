"""AWS Lambda: the application's bus behind the function Lambda calls.

``handler = lambda_handler(bus)`` in the function's module gives Lambda a function of
``(event, context)`` that reads SQS batches (our envelope in the body, or inside an SNS
notification or an EventBridge event), SNS invocations and EventBridge invocations,
runs each record through the bus as a worker would, and answers SQS with a partial
batch response. The module :mod:`messagebus.aws_lambda._handler` states the contract:
what a failure means, FIFO groups, the deadline, and what is finished before returning.

Records that are not our envelope (S3 notifications, DynamoDB Streams records, EventBridge
events of ``aws.*`` and other sources) reach the application's subscribers through an
:class:`EventRouter`: declared rules that build registered event types from them
(:mod:`messagebus.aws_lambda._router` states its contract).

The same application module runs in a :class:`~messagebus.Worker` and here, unchanged.
"""

from messagebus.aws_lambda._handler import (
    LambdaContext,
    LambdaFunction,
    lambda_handler,
)
from messagebus.aws_lambda._router import EventRouter
from messagebus.aws_lambda._views import DynamoDBChange, EventBridgeEvent, S3Notification

__all__ = [
    "DynamoDBChange",
    "EventBridgeEvent",
    "EventRouter",
    "LambdaContext",
    "LambdaFunction",
    "S3Notification",
    "lambda_handler",
]
