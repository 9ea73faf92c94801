"""AWS Lambda: the application's bus behind the function Lambda calls.

``handler = lambda_handler(bus)`` in the function's module gives Lambda a function of
``(event, context)`` that reads SQS batches (our envelope in the body, or inside an SNS
notification or an EventBridge event), SNS invocations and EventBridge invocations,
runs each record through the bus as a worker would, and answers SQS with a partial
batch response. The module :mod:`messagebus.aws_lambda._handler` states the contract:
what a failure means, FIFO groups, the deadline, and what is finished before returning.

The same application module runs in a :class:`~messagebus.Worker` and here, unchanged.
"""

from messagebus.aws_lambda._handler import (
    LambdaContext,
    LambdaFunction,
    lambda_handler,
)

__all__ = ["LambdaContext", "LambdaFunction", "lambda_handler"]
